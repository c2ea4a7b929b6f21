"""The analytic cost model against the built model: parameters, bytes and matmul FLOPs, exactly."""

import pytest
import torch
from conftest import random_spec
from torch.utils.flop_counter import FlopCounterMode

from lfm2_nas import cost
from lfm2_nas.generation import decode_step, prefill
from lfm2_nas.model import LFM2Model, build_model
from lfm2_nas.registry import OFFICIAL_PARAMS, VARIANTS, get_spec


def _counts(model: LFM2Model) -> tuple[int, int]:
    """(total, non-embedding) parameters of a built model; a tied head is one tensor, counted once."""
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for n, p in model.named_parameters() if n in ("model.embed_tokens.weight", "lm_head.weight"))
    return total, total - embedding


@pytest.mark.parametrize("seed", range(16))
def test_parameter_counts_equal_the_built_model(seed):
    spec = random_spec(seed)
    for tied in (True, False):
        layout = spec.replace(tie_embeddings=tied)
        model = build_model(layout)
        assert _counts(model) == (cost.param_count(layout), cost.non_embedding_params(layout))
        assert cost.weight_bytes(layout, "float32") == sum(p.nbytes for p in model.parameters())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_registered_variants_counted_without_allocating(name):
    """Every registered size, built on the meta device (no memory), against the formula."""
    spec = get_spec(name)
    model = LFM2Model(spec, dtype=torch.bfloat16, device="meta")
    assert _counts(model) == (cost.param_count(spec), cost.non_embedding_params(spec))
    assert cost.weight_bytes(spec, "bf16") == sum(p.nbytes for p in model.parameters())
    if name in OFFICIAL_PARAMS:
        assert cost.param_count(spec) == OFFICIAL_PARAMS[name]


def test_untied_official_size_adds_one_embedding_table():
    spec = get_spec("lfm2-350m")
    untied = spec.replace(tie_embeddings=False)
    assert cost.param_count(untied) - cost.param_count(spec) == 65536 * 1024
    assert cost.non_embedding_params(untied) == cost.non_embedding_params(spec)
    assert _counts(LFM2Model(untied, device="meta"))[0] == cost.param_count(untied)


def _flops(fn) -> dict[str, int]:
    with FlopCounterMode(display=False) as counter:
        fn()
    return {str(op).removeprefix("aten."): n for op, n in counter.get_flop_counts()["Global"].items()}


def _dense_matmul_flops(spec, tokens: int, logit_tokens: int) -> int:
    """What the cost model says the dense projections cost, without the depthwise conv
    (torch counts that as a convolution, padding included)."""
    depthwise = 2 * spec.num_conv_layers * spec.hidden_size * spec.conv_kernel
    return tokens * (cost.matmul_flops_per_token(spec) - depthwise) + logit_tokens * cost.lm_head_flops_per_token(spec)


@pytest.mark.parametrize("name", ["lfm2-350m", "lfm2-2.6b", "lfm2-1.2b-all-attn"])
def test_prefill_and_decode_flops_match_the_model_ops(name):
    spec = get_spec(name)
    model = LFM2Model(spec, device="meta")
    tokens, context = 48, 40
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")

    full = _flops(lambda: model(ids))
    assert full["mm"] == _dense_matmul_flops(spec, tokens, tokens)
    # torch counts the full T x T score matrix; the cost model counts the causal T(T+1)/2 pairs.
    assert full.get("bmm", 0) == tokens * tokens * cost.attention_flops_per_position(spec)
    causal_attention = tokens * (tokens + 1) // 2 * cost.attention_flops_per_position(spec)
    depthwise = tokens * 2 * spec.num_conv_layers * spec.hidden_size * spec.conv_kernel
    assert cost.prefill_flops(spec, tokens, last_logits_only=False) == (
        _dense_matmul_flops(spec, tokens, tokens) + depthwise + causal_attention
    )

    cache = model.new_cache(1, context + 1)
    last = _flops(lambda: prefill(model, ids[:, :context], cache))
    assert last["mm"] == _dense_matmul_flops(spec, context, 1)  # logits of the last position only

    step = _flops(lambda: decode_step(model, ids[:, :1], cache))
    assert step["mm"] == _dense_matmul_flops(spec, 1, 1)
    # The new token attends to the `context` cached keys and itself.
    attention = sum(n for op, n in step.items() if op != "mm")  # SDPA, counted as bmm on this device
    assert attention == (context + 1) * cost.attention_flops_per_position(spec)
    assert cost.decode_flops(spec, context) == _dense_matmul_flops(spec, 1, 1) + attention + (
        2 * spec.num_conv_layers * spec.hidden_size * spec.conv_kernel
    )


def test_decode_read_bytes_counts_weights_cache_and_state():
    spec = get_spec("lfm2-350m")
    assert cost.decode_read_bytes(spec, 128) == (
        cost.weight_bytes(spec) + cost.kv_cache_bytes(spec, 128) + cost.conv_state_bytes(spec)
    )
    untied = spec.replace(tie_embeddings=False)
    # An untied input embedding only reads the batch's rows.
    assert cost.decode_read_bytes(untied, 0, batch=2) == cost.weight_bytes(untied) - (65536 - 2) * 1024 * 4 + (
        cost.conv_state_bytes(untied, 2)
    )


@pytest.mark.parametrize("dtype, size", [("fp32", 4), (torch.bfloat16, 2), ("float16", 2), (torch.float32, 4)])
def test_dtype_names(dtype, size):
    assert cost.dtype_bytes(dtype) == size


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown dtype"):
        cost.dtype_bytes("int4")


def test_attention_flops_share_is_zero_without_attention_and_grows_with_length():
    conv, hybrid = get_spec("lfm2-350m").replace(pattern="C" * 16), get_spec("lfm2-350m")
    assert cost.attention_flops_share(conv, 4096, decode=True) == 0 == cost.attention_flops_share(conv, 4096, decode=False)
    for decode in (True, False):
        shares = [cost.attention_flops_share(hybrid, n, decode) for n in (128, 4096, 65536)]
        assert 0 < shares[0] < shares[1] < shares[2] < 1
    # a prefill of n tokens averages n/2 keys per query, a decode step at depth n attends to n + 1
    assert cost.attention_flops_share(hybrid, 4096, decode=False) < cost.attention_flops_share(hybrid, 4096, decode=True)
