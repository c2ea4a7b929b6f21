"""Layout spec: one frozen dataclass that fully describes an LFM2-style hybrid model.

No torch here: search-space enumeration, validation and the cost model run anywhere, instantly.

A layout is a stack of pre-norm blocks; each block's operator is either a gated short convolution
("conv") or grouped-query attention ("full_attention"), followed by a SwiGLU FFN. The compact
pattern form writes one letter per layer: ``C`` for conv, ``A`` for attention (``CCACCACCACACACAC``).

Three fields describe attention blocks of the dense peer models (Qwen3, Llama 3.2) where they differ
from LFM2's: an explicit head dim (Qwen3: 128 with width 1024 and 16 heads), attention without
QK-norm (Llama) and Llama 3's RoPE frequency scaling (:class:`Llama3RopeScaling`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

CONV = "conv"
ATTENTION = "full_attention"
LAYER_TYPES = (CONV, ATTENTION)
_LETTER_OF = {CONV: "C", ATTENTION: "A"}
_TYPE_OF = {"C": CONV, "A": ATTENTION}


def parse_pattern(pattern: str) -> tuple[str, ...]:
    """``"CCA"`` -> ``("conv", "conv", "full_attention")``. Case-insensitive; spaces, ``-`` and ``_`` ignored."""
    letters = [c for c in pattern.upper() if c not in " -_"]
    bad = sorted({c for c in letters if c not in _TYPE_OF})
    if bad:
        raise ValueError(
            f"layer pattern {pattern!r} has unknown letters {bad}: use C for conv and A for attention"
        )
    if not letters:
        raise ValueError("layer pattern is empty: give at least one layer, e.g. 'CCA'")
    return tuple(_TYPE_OF[c] for c in letters)


def format_pattern(layer_types: tuple[str, ...] | list[str]) -> str:
    """``("conv", "full_attention")`` -> ``"CA"``."""
    return "".join(_LETTER_OF[t] for t in layer_types)


def ffn_width(ff_dim: int, auto_adjust: bool, multiplier: float, multiple_of: int) -> int:
    """Effective SwiGLU width, the reference ``Lfm2MLP`` rule.

    With auto-adjust: ``F = int(2*ff/3)``, ``F = int(multiplier*F)``, then F rounded UP to a multiple
    of ``multiple_of`` (6656 -> 4608, 10240 -> 6912, 12288 -> 8192). Without it: ``F = ff``.
    """
    if not auto_adjust:
        return ff_dim
    width = int(multiplier * int(2 * ff_dim / 3))
    return multiple_of * ((width + multiple_of - 1) // multiple_of)


@dataclass(frozen=True, kw_only=True)
class Llama3RopeScaling:
    """Llama 3's RoPE frequency scaling (``rope_type: "llama3"`` in a ``config.json``).

    Rotary frequencies whose wavelength exceeds ``original_max_position_embeddings / low_freq_factor``
    are divided by ``factor``, those under ``original_max_position_embeddings / high_freq_factor``
    are kept, and those between are interpolated; the rule of transformers'
    ``modeling_rope_utils._compute_llama3_parameters``, implemented by :func:`lfm2_nas.model.rope_inv_freq`.
    """

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int

    def __post_init__(self) -> None:
        _check_int("rope_scaling original_max_position_embeddings", self.original_max_position_embeddings, 1)
        if not self.factor > 0:
            raise ValueError(f"rope_scaling factor must be > 0, got {self.factor}")
        if not 0 < self.low_freq_factor < self.high_freq_factor:
            raise ValueError(
                f"rope_scaling needs 0 < low_freq_factor < high_freq_factor, got "
                f"{self.low_freq_factor} and {self.high_freq_factor}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Llama3RopeScaling:
        """From the four keys of :func:`dataclasses.asdict` (a spec's JSON form)."""
        names = [f.name for f in dataclasses.fields(cls)]
        if sorted(data) != sorted(names):
            raise ValueError(f"rope_scaling needs exactly the keys {', '.join(names)}, got {', '.join(sorted(data)) or 'none'}")
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """An LFM2-style layout. Field names follow the HF ``Lfm2Config`` meaning where one exists.

    ``ff_dim`` is the config value (``block_ff_dim`` / ``intermediate_size``, before adjustment);
    the width actually built is :attr:`ffn_dim`. For an explicit width set ``auto_adjust_ff_dim=False``
    (see :meth:`with_ffn_dim`).

    ``attn_head_dim`` is the per-head width of q, k and v (HF ``head_dim``); ``None`` means
    ``hidden_size / num_heads`` (LFM2). ``qk_norm`` is the per-head RMSNorm on q and k before RoPE
    (LFM2 and Qwen3 have it, Llama does not). ``rope_scaling`` is ``None`` (plain RoPE) or Llama 3's.
    """

    vocab_size: int
    hidden_size: int
    layer_types: tuple[str, ...]
    num_heads: int
    num_kv_heads: int
    ff_dim: int
    auto_adjust_ff_dim: bool = True
    ffn_dim_multiplier: float = 1.0
    multiple_of: int = 256
    conv_kernel: int = 3
    conv_bias: bool = False
    norm_eps: float = 1e-5
    rope_theta: float = 1_000_000.0
    max_position_embeddings: int = 128_000
    tie_embeddings: bool = True
    # Fields added for the peer models: see _ADDED_FIELDS before adding more.
    attn_head_dim: int | None = None
    qk_norm: bool = True
    rope_scaling: Llama3RopeScaling | None = None

    def __post_init__(self) -> None:
        if isinstance(self.rope_scaling, dict):
            object.__setattr__(self, "rope_scaling", Llama3RopeScaling.from_dict(self.rope_scaling))
        if isinstance(self.layer_types, str):
            object.__setattr__(self, "layer_types", parse_pattern(self.layer_types))
        else:
            object.__setattr__(self, "layer_types", tuple(self.layer_types))
        _validate(self)

    # ---- derived values (never stored) -------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layer_types)

    @property
    def pattern(self) -> str:
        """Compact layer pattern, e.g. ``"CCACCACCACACACAC"``."""
        return format_pattern(self.layer_types)

    @property
    def head_dim(self) -> int:
        """Per-head width of q, k and v: ``attn_head_dim``, else ``hidden_size / num_heads``."""
        return self.hidden_size // self.num_heads if self.attn_head_dim is None else self.attn_head_dim

    @property
    def ffn_dim(self) -> int:
        """SwiGLU width actually built (see :func:`ffn_width`)."""
        return ffn_width(self.ff_dim, self.auto_adjust_ff_dim, self.ffn_dim_multiplier, self.multiple_of)

    @property
    def attention_indices(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.layer_types) if t == ATTENTION)

    @property
    def conv_indices(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.layer_types) if t == CONV)

    @property
    def num_attention_layers(self) -> int:
        return len(self.attention_indices)

    @property
    def num_conv_layers(self) -> int:
        return len(self.conv_indices)

    # ---- constructors and conversions ---------------------------------------------------
    @classmethod
    def from_pattern(cls, pattern: str, **fields: Any) -> ModelSpec:
        """Build a spec from a compact pattern such as ``"CCACCA"`` plus the other fields."""
        return cls(layer_types=parse_pattern(pattern), **fields)

    def with_ffn_dim(self, width: int) -> ModelSpec:
        """The same layout with an explicit FFN width (auto-adjust off)."""
        return dataclasses.replace(self, ff_dim=width, auto_adjust_ff_dim=False)

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with fields changed and validated; ``pattern="CCA"`` sets ``layer_types``."""
        if "pattern" in changes:
            changes["layer_types"] = parse_pattern(changes.pop("pattern"))
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})  # pattern popped above
        if unknown:
            raise ValueError(f"unknown spec field(s) {unknown}; known: {', '.join(spec_field_names())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``layer_types`` written as the compact ``pattern``; the fields of
        ``_ADDED_FIELDS`` only when they differ from their default (see there)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in _ADDED_FIELDS and value == f.default:
                continue
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        out["pattern"] = self.pattern
        del out["layer_types"]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; accepts ``pattern`` or ``layer_types``."""
        data = dict(data)
        if "pattern" in data:
            if "layer_types" in data:
                raise ValueError("give either 'pattern' or 'layer_types', not both")
            data["layer_types"] = parse_pattern(data.pop("pattern"))
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown spec field(s) {unknown}; known: {', '.join(spec_field_names())}")
        return cls(**data)

    def spec_hash(self) -> str:
        """Stable 16-hex-digit content hash, used to cache results by layout."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Fields added after layouts were first cached by :meth:`ModelSpec.spec_hash`. :meth:`ModelSpec.to_dict`
#: (and so the hash) leaves each out while it has its default, so every layout that does not use them
#: keeps the hash it had before they existed (``tests/test_spec.py`` pins one).
_ADDED_FIELDS = frozenset({"attn_head_dim", "qk_norm", "rope_scaling"})


def spec_field_names() -> list[str]:
    """Field names accepted by :meth:`ModelSpec.from_dict` (``pattern`` stands for ``layer_types``)."""
    return ["pattern" if f.name == "layer_types" else f.name for f in dataclasses.fields(ModelSpec)]


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _validate(s: ModelSpec) -> None:
    """Raise ValueError naming what to change for any combination that cannot be built."""
    if not s.layer_types:
        raise ValueError("layout is empty: give at least one layer (e.g. pattern 'CCA')")
    bad = sorted({t for t in s.layer_types if t not in LAYER_TYPES})
    if bad:
        raise ValueError(f"unknown layer type(s) {bad}: use 'conv' or 'full_attention'")
    for name, minimum in (
        ("vocab_size", 2),
        ("hidden_size", 2),
        ("num_heads", 1),
        ("num_kv_heads", 1),
        ("ff_dim", 1),
        ("multiple_of", 1),
        ("conv_kernel", 2),
        ("max_position_embeddings", 1),
    ):
        _check_int(name, getattr(s, name), minimum)
    if s.attn_head_dim is not None:
        _check_int("attn_head_dim", s.attn_head_dim, 2)
    if not isinstance(s.qk_norm, bool):
        raise ValueError(f"qk_norm must be true or false, got {s.qk_norm!r}")
    if s.rope_scaling is not None and not isinstance(s.rope_scaling, Llama3RopeScaling):
        raise ValueError(f"rope_scaling must be null or Llama 3's four values, got {s.rope_scaling!r}")
    if s.attn_head_dim is None and s.hidden_size % s.num_heads:
        raise ValueError(
            f"hidden_size {s.hidden_size} is not divisible by num_heads {s.num_heads}: "
            "pick heads that divide the width"
        )
    if s.num_heads % s.num_kv_heads:
        raise ValueError(
            f"num_heads {s.num_heads} is not divisible by num_kv_heads {s.num_kv_heads}: "
            "kv heads must divide the query heads"
        )
    if s.head_dim % 2:
        where = "attn_head_dim" if s.attn_head_dim is not None else "head_dim = hidden_size/num_heads"
        raise ValueError(f"{where} = {s.head_dim} is odd: RoPE needs an even head_dim")
    if not s.ffn_dim_multiplier > 0:
        raise ValueError(f"ffn_dim_multiplier must be > 0, got {s.ffn_dim_multiplier}")
    if not s.norm_eps > 0:
        raise ValueError(f"norm_eps must be > 0, got {s.norm_eps}")
    if not s.rope_theta > 0:
        raise ValueError(f"rope_theta must be > 0, got {s.rope_theta}")
    if s.ffn_dim < 1:
        raise ValueError(f"ff_dim {s.ff_dim} gives an FFN width of {s.ffn_dim}: raise ff_dim")
