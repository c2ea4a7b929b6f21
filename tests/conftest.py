"""Shared test helpers: seeded random layouts, weights with O(1) activations, the transformers twin."""

from __future__ import annotations

import logging
import random

import pytest
import torch

from lfm2_nas.spec import ATTENTION, CONV, ModelSpec

# Tiny models gain nothing from intra-op threads, and on a loaded 2-core machine threaded tiny ops
# wait on each other for milliseconds; one thread keeps the suite fast and its timing stable.
torch.set_num_threads(1)

# Small enough that a model builds and runs in milliseconds, varied enough to catch layout bugs.
_HEAD_DIMS = (2, 4, 6, 8, 10, 16)
_HEADS = (1, 2, 3, 4, 6)


def random_spec(seed: int) -> ModelSpec:
    """A valid random layout; ``seed`` fixes it. Seeds cycle through the shapes a bug hides in:
    ``seed % 4`` picks mixed / all-conv / all-attention / alternating layers, ``seed // 4 % 4`` the
    conv kernel (2..5), ``seed % 3`` the kv heads (1, = heads, a random divisor)."""
    rng = random.Random(seed)
    layers = rng.randint(1, 5)
    kind = seed % 4
    if kind == 0:
        types = [rng.choice((CONV, ATTENTION)) for _ in range(layers)]
    elif kind == 1:
        types = [CONV] * layers
    elif kind == 2:
        types = [ATTENTION] * layers
    else:
        types = [(CONV, ATTENTION)[i % 2] for i in range(max(layers, 2))]
    heads = rng.choice(_HEADS)
    kv_heads = (1, heads, rng.choice([d for d in range(1, heads + 1) if heads % d == 0]))[seed % 3]
    hidden = heads * rng.choice(_HEAD_DIMS)
    if rng.random() < 0.5:  # explicit FFN width (odd widths allowed)
        ffn = dict(ff_dim=rng.randint(5, 97), auto_adjust_ff_dim=False)
    else:  # the reference's adjust rule, with unusual rounding and multipliers
        ffn = dict(
            ff_dim=rng.randint(8, 160),
            multiple_of=rng.choice((1, 8, 16, 32, 256)),
            ffn_dim_multiplier=rng.choice((1.0, 1.5, 0.75)),
        )
    return ModelSpec(
        vocab_size=rng.randint(17, 300),
        hidden_size=hidden,
        layer_types=tuple(types),
        num_heads=heads,
        num_kv_heads=kv_heads,
        conv_kernel=2 + seed // 4 % 4,
        conv_bias=rng.random() < 0.5,
        norm_eps=rng.choice((1e-5, 1e-6)),
        rope_theta=rng.choice((10_000.0, 500_000.0, 1_000_000.0, 123.0)),
        max_position_embeddings=rng.choice((64, 4096)),
        tie_embeddings=rng.random() < 0.5,
        **ffn,
    )


def randomize_(model, seed: int = 0):
    """Overwrite every weight with values that keep activations and logits of order one.

    The reference's N(0, 0.02) init makes tiny models' logits ~1e-3, where a 1e-4 tolerance would
    let real bugs through. Here projections get std 1/sqrt(fan_in), norms weights in [0.5, 1.5],
    the embedding std 1, conv kernels std 0.5 and biases std 0.1.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                values = 0.5 + torch.rand(param.shape, generator=generator)
            elif name.endswith("bias"):
                values = 0.1 * torch.randn(param.shape, generator=generator)
            elif name.endswith("conv.conv.weight"):
                values = 0.5 * torch.randn(param.shape, generator=generator)
            elif name.endswith("embed_tokens.weight"):
                values = torch.randn(param.shape, generator=generator)
            else:
                values = torch.randn(param.shape, generator=generator) / param.shape[-1] ** 0.5
            param.copy_(values)
    return model


def reference_of(model):
    """``transformers.Lfm2ForCausalLM`` with ``model``'s config and weights (fp32, CPU, SDPA)."""
    from transformers import Lfm2Config, Lfm2ForCausalLM

    from lfm2_nas.hf_config import hf_config_from_spec

    logging.getLogger("transformers").setLevel(logging.ERROR)
    config = Lfm2Config(**hf_config_from_spec(model.spec))
    reference = Lfm2ForCausalLM(config).to(torch.float32).eval()
    state = dict(model.state_dict())
    if model.spec.tie_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    reference.load_state_dict(state, strict=True)
    return reference


def max_diff(a, b) -> float:
    return (a.float() - b.float()).abs().max().item()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
