"""The scale-down rule: from a full-size layout to the small proxy whose quality is measured.

Quality is measured on a proxy of each candidate; latency and memory on the candidate itself.
The rule keeps what distinguishes one layout from another and shrinks what only sets its size:

* kept: the layer pattern (so depth and the position of every attention layer), the GQA group
  (query heads per kv head), the FFN ratio (effective FFN width / hidden width), the conv kernel,
  biases, norm eps, RoPE theta and scaling, QK-norm on or off and embedding tying;
* shrunk: the hidden width to ``ScaleRule.hidden_size`` (default 128; a layout already narrower keeps
  its width: the rule never scales up) and the vocabulary to whatever the data needs (257 for bytes,
  the BPE size, a synthetic task's vocabulary);
* heads, by ``ScaleRule.head_dim``: with a number (default 16) the proxy has ``width / head_dim``
  query heads and ``heads / group`` kv heads; with ``None`` it keeps the head counts and shrinks the
  head dimension to ``width / heads`` (an explicit head dim, as Qwen3's 128, is dropped: the
  proxy's head dim is always ``width / heads``);
* the FFN width is ``ratio * width`` rounded to a multiple of ``ffn_multiple`` (8), set explicitly.

Example: LFM2-350M (1024 wide, 16/8 heads of 64, FFN 4608 = 4.5x) becomes 128 wide, 8/4 heads of
16, FFN 576, the same 16-layer pattern ``CCACCACCACACACAC``. When the rule cannot be applied (the
heads no longer divide the width, a group that does not divide the proxy's heads) it raises
``ValueError`` saying which proxy widths would work.
"""

from __future__ import annotations

from dataclasses import dataclass

from lfm2_nas.spec import ModelSpec


@dataclass(frozen=True)
class ScaleRule:
    """How a full-size spec is shrunk to its proxy (see the module docstring)."""

    hidden_size: int = 128
    head_dim: int | None = 16
    ffn_multiple: int = 8

    def __post_init__(self) -> None:
        if self.hidden_size < 2:
            raise ValueError(f"proxy width must be >= 2, got {self.hidden_size}")
        if self.head_dim is not None and (self.head_dim < 2 or self.head_dim % 2):
            raise ValueError(f"proxy head_dim must be even and >= 2 (RoPE rotates pairs), got {self.head_dim}")
        if self.ffn_multiple < 1:
            raise ValueError(f"ffn_multiple must be >= 1, got {self.ffn_multiple}")


DEFAULT_RULE = ScaleRule()


def proxy_spec(spec: ModelSpec, vocab_size: int, rule: ScaleRule = DEFAULT_RULE) -> ModelSpec:
    """The proxy of ``spec`` under ``rule``, with ``vocab_size`` tokens.

    Raises ``ValueError`` naming the proxy widths (or head policy) that would work when the rule
    cannot keep ``spec``'s head ratios at the requested width.
    """
    width = min(rule.hidden_size, spec.hidden_size)
    heads, kv_heads = _proxy_heads(spec, width, rule)
    ratio = spec.ffn_dim / spec.hidden_size
    ffn = max(rule.ffn_multiple, rule.ffn_multiple * round(ratio * width / rule.ffn_multiple))
    return spec.replace(
        vocab_size=vocab_size,
        hidden_size=width,
        num_heads=heads,
        num_kv_heads=kv_heads,
        attn_head_dim=None,
        ff_dim=ffn,
        auto_adjust_ff_dim=False,
    )


def _proxy_heads(spec: ModelSpec, width: int, rule: ScaleRule) -> tuple[int, int]:
    group = spec.num_heads // spec.num_kv_heads
    where = (
        f"cannot scale {spec.pattern} ({spec.num_heads} heads / {spec.num_kv_heads} kv heads, "
        f"width {spec.hidden_size}) down to width {width}"
    )
    if rule.head_dim is None:  # keep the head counts, shrink head_dim
        step = 2 * spec.num_heads  # head_dim must be even for RoPE
        if width % step:
            raise ValueError(
                f"{where} keeping its {spec.num_heads} heads: the head dim {width}/{spec.num_heads} is not an even "
                f"integer; use a proxy width that is a multiple of {step} ({_near(width, step)}) or a fixed proxy head_dim"
            )
        return spec.num_heads, spec.num_kv_heads
    if width % rule.head_dim:
        raise ValueError(
            f"{where}: width {width} is not a multiple of the proxy head_dim {rule.head_dim}; "
            f"use a proxy width of {_near(width, rule.head_dim)}"
        )
    heads = width // rule.head_dim
    if heads % group:
        step = rule.head_dim * group
        raise ValueError(
            f"{where}: {heads} proxy heads (width {width} / head_dim {rule.head_dim}) cannot keep the group of "
            f"{group} query heads per kv head; use a proxy width that is a multiple of {step} ({_near(width, step)}) "
            f"or a proxy head_dim that leaves a multiple of {group} heads"
        )
    return heads, heads // group


def _near(width: int, step: int) -> str:
    """The multiples of ``step`` nearest ``width``, as text for an error message."""
    below = (width // step) * step
    options = [w for w in (below, below + step) if w >= step]
    return " or ".join(str(w) for w in options)
