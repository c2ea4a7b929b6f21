"""Named layout variants: the official LFM2 sizes, their all-attention baselines and a tiny debug model.

Sources: the ``config.json`` files of the LiquidAI/LFM2-{350M,700M,1.2B,2.6B} model cards on the
Hugging Face Hub (https://huggingface.co/LiquidAI); building each in transformers gives exactly the
official parameter count. ``tests/test_registry.py`` checks the counts through the cost model and
``tests/test_cost.py`` through the built model (on the meta device, so nothing is allocated).
"""

from __future__ import annotations

from typing import Any

from lfm2_nas.cost import param_count
from lfm2_nas.spec import ATTENTION, CONV, ModelSpec


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

#: Official parameter counts (tied embeddings), for tests and reports.
OFFICIAL_PARAMS: dict[str, int] = {
    "lfm2-350m": 354_483_968,
    "lfm2-700m": 742_489_344,
    "lfm2-1.2b": 1_170_340_608,
    "lfm2-2.6b": 2_569_272_320,
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
