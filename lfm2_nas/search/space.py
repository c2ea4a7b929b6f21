"""Define a layout from a trial: the search space as Optuna parameters -> :class:`ModelSpec`.

Parameters (each suggested only when the search file gives it more than one choice):

* free placement: ``depth`` (int) and ``layer_00``, ``layer_01``, ... (``"C"`` / ``"A"``) for the
  layers below the sampled depth; or, with ``patterns``, one categorical ``pattern``;
* ``hidden_size``, ``head_dim`` (heads = hidden / head_dim), ``kv_heads``, ``ffn_ratio``,
  ``conv_kernel``, ``vocab_size``.

FFN rules: ``lfm2`` sets the config value ``ff_dim = round(ratio * hidden)`` and keeps the base's
adjustment (LFM2's 2/3 rule rounded up to ``multiple_of``: ratio 6.5 at width 1024 builds 4608);
``width`` sets the built width itself, ``ratio * hidden`` rounded up to ``multiple_of`` (through the
base's own config value when that builds the same width, so the seeded layouts stay exact).

Every other field (norm eps, RoPE theta, tied embeddings, ...) is the base's. :meth:`params_for`
inverts the mapping, so the official layout and its all-attention baseline are enqueued as plain
parameter sets and the sampler learns from them like from any trial.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from lfm2_nas.registry import VARIANTS
from lfm2_nas.resolve import resolve_spec
from lfm2_nas.spec import ATTENTION, ModelSpec, parse_pattern

if TYPE_CHECKING:  # the space reads [space]; the search file's reader builds the space, never the reverse
    from lfm2_nas.search.config import SpaceSection

_LETTERS = ("C", "A")


class TrialLike(Protocol):
    """What :meth:`SearchSpace.suggest` needs from an ``optuna.Trial``."""

    def suggest_int(self, name: str, low: int, high: int) -> int: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


def layer_param(index: int) -> str:
    """Name of the parameter choosing layer ``index``'s operator: ``layer_07``."""
    return f"layer_{index:02d}"


class SearchSpace:
    """The layouts a search file allows; pure Python (no torch), so specs come out instantly."""

    def __init__(self, space: SpaceSection) -> None:
        self.config = space
        self.base = resolve_spec(space.base)  # a registry name, NAME:PATTERN or a config path

    # ---- trial -> spec --------------------------------------------------------------------------
    def suggest(self, trial: TrialLike) -> ModelSpec:
        """The layout ``trial`` proposes (raises ValueError only for a spec the space cannot build)."""

        def choose(name: str, choices: Sequence[Any]) -> Any:
            return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, list(choices))

        def choose_int(name: str, low: int, high: int) -> int:
            return low if low == high else trial.suggest_int(name, low, high)

        return self._build(choose, choose_int)

    def spec_from_params(self, params: dict[str, Any]) -> ModelSpec:
        """The layout a finished trial's ``params`` describe (parameters absent were fixed choices)."""

        def choose(name: str, choices: Sequence[Any]) -> Any:
            return params[name] if len(choices) > 1 else choices[0]

        def choose_int(name: str, low: int, high: int) -> int:
            return params[name] if low != high else low

        return self._build(choose, choose_int)

    def _build(
        self, choose: Callable[[str, Sequence[Any]], Any], choose_int: Callable[[str, int, int], int]
    ) -> ModelSpec:
        c = self.config
        if c.patterns:
            layer_types = parse_pattern(choose("pattern", c.patterns))
        else:
            depth = choose_int("depth", *c.depth)
            letters = [choose(layer_param(i), _LETTERS) for i in range(depth)]
            layer_types = parse_pattern("".join(letters))
        hidden = choose("hidden_size", c.hidden_size)
        head_dim = choose("head_dim", c.head_dim)
        ratio = choose("ffn_ratio", c.ffn_ratio)
        spec = self.base.replace(
            vocab_size=choose("vocab_size", c.vocab_size),
            hidden_size=hidden,
            layer_types=layer_types,
            num_heads=hidden // head_dim,
            num_kv_heads=choose("kv_heads", c.kv_heads),
            conv_kernel=choose("conv_kernel", c.conv_kernel),
            ff_dim=round(ratio * hidden),
        )
        if c.ffn_rule == "width":
            multiple = spec.multiple_of
            width = multiple * -(-round(ratio * hidden) // multiple)
            # The base's own config value when it builds this width: the seeds stay exact.
            own = spec.replace(ff_dim=self.base.ff_dim)
            spec = own if own.ffn_dim == width else spec.with_ffn_dim(width)
        return spec

    # ---- spec -> params (seeding) ---------------------------------------------------------------
    def params_for(self, spec: ModelSpec) -> dict[str, Any]:
        """Parameters that make :meth:`spec_from_params` return exactly ``spec``.

        Raises ValueError naming the key to widen when the space cannot express ``spec``.
        """
        c = self.config
        params: dict[str, Any] = {}

        def pick(name: str, value: Any, choices: Sequence[Any]) -> None:
            if value not in choices:
                raise ValueError(f"its {name} {value} is not among the {name} choices {list(choices)}")
            if len(choices) > 1:
                params[name] = value

        if c.patterns:
            pick("pattern", spec.pattern, c.patterns)
        else:
            if not c.depth[0] <= spec.num_layers <= c.depth[1]:
                raise ValueError(f"its depth {spec.num_layers} is outside depth {list(c.depth)}")
            if c.depth[0] != c.depth[1]:
                params["depth"] = spec.num_layers
            params.update({layer_param(i): letter for i, letter in enumerate(spec.pattern)})
        pick("hidden_size", spec.hidden_size, c.hidden_size)
        pick("head_dim", spec.head_dim, c.head_dim)
        pick("kv_heads", spec.num_kv_heads, c.kv_heads)
        pick("conv_kernel", spec.conv_kernel, c.conv_kernel)
        pick("vocab_size", spec.vocab_size, c.vocab_size)
        for ratio in c.ffn_ratio:
            candidate = dict(params, **({"ffn_ratio": ratio} if len(c.ffn_ratio) > 1 else {}))
            if self.spec_from_params(candidate) == spec:
                return candidate
        raise ValueError(
            f"no ffn_ratio choice {list(c.ffn_ratio)} with ffn_rule {c.ffn_rule!r} rebuilds its FFN "
            f"(ff_dim {spec.ff_dim}, width {spec.ffn_dim}) and other fields"
        )

    def seed_specs(self) -> dict[str, ModelSpec]:
        """The layouts enqueued first: the base (official LFM2 layout) and its all-attention baseline."""
        name = self.config.base if self.config.base in VARIANTS else "base"
        baseline = self.base.replace(layer_types=(ATTENTION,) * self.base.num_layers)
        return {name: self.base, f"{name}-all-attn": baseline}

    def attention_violation(self, spec: ModelSpec) -> int:
        """How far ``spec``'s attention-layer count lies outside ``[space] attention`` (0 inside)."""
        low, high = self.config.attention
        n = spec.num_attention_layers
        return max(low - n, n - high, 0)
