"""Named layout variants: the official LFM2 sizes, their all-attention baselines, a tiny debug model,
and the dense peer models LFM2 is compared with (:data:`PEERS`).

Sources: the ``config.json`` files of the LiquidAI/LFM2-{350M,700M,1.2B,2.6B} model cards on the
Hugging Face Hub (https://huggingface.co/LiquidAI); building each in transformers gives exactly the
official parameter count. ``tests/test_registry.py`` checks the counts through the cost model and
``tests/test_cost.py`` through the built model (on the meta device, so nothing is allocated).

The peers are not LFM2 variants: they are other models' published shapes, built with random weights
so that they can be timed in the same runtimes. Each is all attention; its source is cited where it is
defined, and ``tests/test_registry.py`` checks its parameter count against the published one.
Gemma 3 1B is not among them: 5 of its 6 layers use sliding-window attention (a 512-token window,
so their K/V stop growing), its FFN is GELU-gated (not SwiGLU), each block has norms after the
attention and the FFN as well as before them, its embedding output is scaled by sqrt(hidden) and
local and global layers use different RoPE bases (google/gemma-3-1b-pt ``config.json``;
transformers ``models/gemma3/modeling_gemma3.py``). This spec expresses none of these, and leaving
out the sliding window would misstate exactly what a speed and memory comparison measures.
"""

from __future__ import annotations

from typing import Any

from lfm2_nas.cost import param_count
from lfm2_nas.spec import ATTENTION, CONV, Llama3RopeScaling, ModelSpec


def _layout(num_layers: int, attention: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(ATTENTION if i in attention else CONV for i in range(num_layers))


def _all_attention(spec: ModelSpec) -> ModelSpec:
    """Same widths, heads and FFN, every layer attention: the speed baseline for a size."""
    return spec.replace(layer_types=(ATTENTION,) * spec.num_layers)


def _parameter_matched_dense(spec: ModelSpec) -> ModelSpec:
    """Every layer attention, same depth, widths and heads, with the FFN widened (in steps of
    ``multiple_of``) to the width whose total parameter count is closest to ``spec``'s.

    A conv block has more parameters than a GQA block (4h^2 vs ~2.5-3h^2), so the plain all-attention
    baseline is 3-5% smaller than the LFM2 size it comes from; this one is within ~1% of it (checked in
    ``tests/test_registry.py``): the "similar-size dense transformer" of the speed comparison.
    """
    attn = _all_attention(spec)
    target = param_count(spec)
    widths = range(spec.multiple_of, 4 * spec.ffn_dim + 1, spec.multiple_of)
    width = min(widths, key=lambda w: abs(param_count(attn.with_ffn_dim(w)) - target))
    return attn.with_ffn_dim(width)


_LFM2_SHARED: dict[str, Any] = dict(vocab_size=65536, num_kv_heads=8, conv_kernel=3, multiple_of=256)
_LFM2_16_LAYERS = _layout(16, (2, 5, 8, 10, 12, 14))

VARIANTS: dict[str, ModelSpec] = {
    # Debug: a few thousand parameters' worth of everything (both block types, GQA, tied head).
    "lfm2-tiny": ModelSpec.from_pattern(
        "CCAC", vocab_size=256, hidden_size=64, num_heads=4, num_kv_heads=2, ff_dim=256, multiple_of=32
    ),
    # LiquidAI/LFM2-350M: 354,483,968 parameters.
    "lfm2-350m": ModelSpec(
        hidden_size=1024, layer_types=_LFM2_16_LAYERS, num_heads=16, ff_dim=6656, **_LFM2_SHARED
    ),
    # LiquidAI/LFM2-700M: 742,489,344 parameters.
    "lfm2-700m": ModelSpec(
        hidden_size=1536, layer_types=_LFM2_16_LAYERS, num_heads=24, ff_dim=10240, **_LFM2_SHARED
    ),
    # LiquidAI/LFM2-1.2B: 1,170,340,608 parameters.
    "lfm2-1.2b": ModelSpec(
        hidden_size=2048, layer_types=_LFM2_16_LAYERS, num_heads=32, ff_dim=12288, **_LFM2_SHARED
    ),
    # LiquidAI/LFM2-2.6B: 2,569,272,320 parameters; its FFN width is used as given (no auto-adjust).
    "lfm2-2.6b": ModelSpec(
        hidden_size=2048,
        layer_types=_layout(30, (2, 5, 9, 13, 17, 21, 24, 27)),
        num_heads=32,
        ff_dim=10752,
        auto_adjust_ff_dim=False,
        **_LFM2_SHARED,
    ),
}
for _name in ("lfm2-tiny", "lfm2-350m", "lfm2-700m", "lfm2-1.2b", "lfm2-2.6b"):
    VARIANTS[f"{_name}-all-attn"] = _all_attention(VARIANTS[_name])
for _name in ("lfm2-350m", "lfm2-700m", "lfm2-1.2b", "lfm2-2.6b"):
    VARIANTS[f"{_name}-dense"] = _parameter_matched_dense(VARIANTS[_name])

# ---- peers: other models' published shapes (random weights) -----------------------------------
# Qwen3 (Qwen/Qwen3-0.6B and Qwen/Qwen3-1.7B config.json and model cards, https://huggingface.co/Qwen):
# head_dim 128 whatever the width, QK-norm (RMSNorm over head_dim on q and k before RoPE), SwiGLU of
# exactly intermediate_size, rms_norm_eps 1e-6, rope_theta 1e6, plain RoPE, tied embeddings,
# max_position_embeddings 40960, vocab 151936; both have 28 layers, 16 query and 8 KV heads.
_QWEN3_SHARED: dict[str, Any] = dict(
    vocab_size=151936, layer_types=(ATTENTION,) * 28, num_heads=16, num_kv_heads=8, attn_head_dim=128,
    auto_adjust_ff_dim=False, norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=40960,
)
VARIANTS.update({
    # Qwen/Qwen3-0.6B: hidden 1024, intermediate 3072. 596,049,920 parameters, 440,467,456 non-embedding
    # (its config.json built in transformers; the model card rounds them to 0.6B and 0.44B).
    "qwen3-0.6b": ModelSpec(hidden_size=1024, ff_dim=3072, **_QWEN3_SHARED),
    # Qwen/Qwen3-1.7B: hidden 2048, intermediate 6144. 1,720,574,976 parameters, 1,409,410,048 non-embedding
    # (config.json built in transformers; model card: 1.7B and 1.4B).
    "qwen3-1.7b": ModelSpec(hidden_size=2048, ff_dim=6144, **_QWEN3_SHARED),
    # meta-llama/Llama-3.2-1B (config.json and model card, https://huggingface.co/meta-llama/Llama-3.2-1B):
    # hidden 2048, 16 layers, 32 query / 8 KV heads (head_dim 64), intermediate 8192, vocab 128256,
    # tied embeddings, no QK-norm, rms_norm_eps 1e-5, rope_theta 500000 with rope_type "llama3"
    # (factor 32, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192),
    # max_position_embeddings 131072. 1,235,814,400 parameters (config.json built in transformers; the
    # model card: 1.23B), 973,146,112 non-embedding.
    "llama-3.2-1b": ModelSpec(
        vocab_size=128256,
        hidden_size=2048,
        layer_types=(ATTENTION,) * 16,
        num_heads=32,
        num_kv_heads=8,
        ff_dim=8192,
        auto_adjust_ff_dim=False,
        qk_norm=False,
        norm_eps=1e-5,
        rope_theta=500_000.0,
        rope_scaling=Llama3RopeScaling(
            factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192
        ),
        max_position_embeddings=131072,
    ),
})
#: Peer name -> the published checkpoint whose shapes it has (the peers are not LFM2 variants).
PEERS: dict[str, str] = {
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
}

#: Published parameter counts (tied embeddings, exact as their config.json builds in transformers) of
#: the LFM2 sizes and the peers, for tests and reports.
OFFICIAL_PARAMS: dict[str, int] = {
    "lfm2-350m": 354_483_968,
    "lfm2-700m": 742_489_344,
    "lfm2-1.2b": 1_170_340_608,
    "lfm2-2.6b": 2_569_272_320,
    "qwen3-0.6b": 596_049_920,
    "qwen3-1.7b": 1_720_574_976,
    "llama-3.2-1b": 1_235_814_400,
}


class UnknownVariantError(KeyError):
    """A variant name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def variant_names() -> list[str]:
    """Registered names, in registry order."""
    return list(VARIANTS)


def get_spec(name: str, **overrides: Any) -> ModelSpec:
    """The registered spec ``name``, with fields overridden (``pattern="CCA"`` sets the layers).

    Raises :class:`UnknownVariantError` (a ``KeyError``) listing the known names when ``name`` is not registered (exact match only).
    """
    if name not in VARIANTS:
        raise UnknownVariantError(f"unknown variant {name!r}; known variants: {', '.join(VARIANTS)}")
    spec = VARIANTS[name]
    return spec.replace(**overrides) if overrides else spec
