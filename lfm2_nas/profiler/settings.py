"""THE measurement settings: what to measure, with which runtime, how long, and within which caps.

One validated type, :class:`Settings`, and one reader of it from a TOML table or CLI options,
:func:`read_settings`, used by ``lfm2-nas profile``, a sweep file's ``[workload]`` and a search
file's ``[target]``. Every key means the same everywhere:

=================  ==========================================================================
workload           ``prompt_len`` (tokens of the timed prompt), ``context_depth`` (cached tokens
                   before each timed decode step), ``batch``, ``threads`` (default: every CPU
                   this process may use), ``dtype`` (torch backend), ``device`` (cpu, cuda, cuda:N)
runtime            ``backend`` (torch, executorch, llamacpp) and its ``quant`` scheme
                   (:data:`lfm2_nas.runtimes.QUANTS`; default: the backend's first)
timing             ``warmup`` untimed calls, then samples until ``min_count`` samples AND
                   ``min_duration_s`` seconds; ``processes`` independent measuring processes
                   (samples pooled); ``cache_fill`` (synthetic or prefill; default synthetic for
                   torch, prefill for llamacpp; executorch: prefill only)
caps               ``memory_limit`` (``"300 MiB"`` or bytes) above the measuring process's start-up
                   size; ``timeout_s`` per measuring process
=================  ==========================================================================

In a sweep, each key may be a list (an axis; the sweep measures every combination; ``lengths =
"zip"`` pairs prompt lengths with depths instead of crossing them). Every problem in a table is
reported, one line each, not only the first. No torch here.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from lfm2_nas.cost import canonical_dtype
from lfm2_nas.runtimes import BACKENDS, QUANTS
from lfm2_nas.units import parse_bytes

#: How the decode phase's cache is filled to ``context_depth`` before its steps are timed.
CACHE_FILLS = ("synthetic", "prefill")
#: Pairing of ``prompt_len`` and ``context_depth`` lists in a sweep.
LENGTHS = ("cross", "zip")
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


class SettingsError(ValueError):
    """Settings that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def check_device(device: str) -> str:
    """``device`` if it names a device the profiler knows (``cpu``, ``cuda``, ``cuda:N``); else ValueError."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ValueError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    return device


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """How one measurement is made (see module docstring for each field)."""

    prompt_len: int = 128
    context_depth: int = 512
    batch: int = 1
    threads: int | None = None
    dtype: str = "float32"
    device: str = "cpu"
    backend: str = "torch"
    quant: str | None = None
    warmup: int = 2
    min_count: int = 10
    min_duration_s: float = 1.0
    processes: int = 1
    cache_fill: str | None = None
    memory_limit_bytes: int | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        problems = [f"{key}: {message}" for key, message in _value_problems(self)]
        if not problems:
            object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
            object.__setattr__(self, "min_duration_s", float(self.min_duration_s))
            problems = _combination_problems(self)
        if problems:
            raise SettingsError(problems)

    # ---- derived ---------------------------------------------------------------------------------
    @property
    def max_len(self) -> int:
        """Cache length a measurement allocates: the prompt, or ``context_depth`` plus the timed step
        and the two warm-up steps a CUDA-graph capture runs (the same on every device and backend,
        so memory compares)."""
        return max(self.prompt_len, self.context_depth + 3)

    @property
    def quant_scheme(self) -> str:
        """``quant``, or the backend's default scheme when it is None."""
        return self.quant or QUANTS[self.backend][0]

    @property
    def fill(self) -> str:
        """``cache_fill``, or the backend's default: ``synthetic`` for torch, ``prefill`` for the
        deployment runtimes (llamacpp can be asked for ``synthetic``; ExecuTorch's cache lives inside
        its program and is always filled by a real prefill)."""
        return self.cache_fill or ("synthetic" if self.backend == "torch" else "prefill")

    @property
    def weight_fraction(self) -> float:
        """Fraction of ``dtype``-sized weight bytes the backend's scheme stores at least (1 for torch):
        scales the cost model's weight bytes into a lower bound for screening."""
        if self.backend == "torch":
            return 1.0
        from lfm2_nas.runtimes import MIN_WEIGHT_BITS

        return MIN_WEIGHT_BITS[self.quant_scheme] / 32

    @property
    def cache_dtype(self) -> str:
        """The dtype the backend keeps its K/V cache and conv state in."""
        from lfm2_nas.runtimes import CACHE_DTYPES

        return CACHE_DTYPES.get(self.backend, self.dtype)

    def resolved(self) -> Settings:
        """The same settings with ``threads``, ``quant`` and ``cache_fill`` made explicit (what results
        are keyed and recorded by)."""
        threads = self.threads if self.threads is not None else available_cpus()
        return replace(self, threads=threads, quant=self.quant_scheme, cache_fill=self.fill)

    def workload(self) -> dict[str, Any]:
        """What is measured (the row columns a result is compared on): lengths, batch, dtype, device,
        threads, backend and quant."""
        s = self.resolved()
        return {k: getattr(s, k) for k in ("prompt_len", "context_depth", "batch", "dtype", "device", "threads",
                                           "backend", "quant")}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        """Settings from a dict holding (at least) their fields, e.g. a result row; a row measured before
        backends existed reads as the torch backend."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if values.get("quant") == QUANTS["torch"][0] and values.get("backend", "torch") == "torch":
            values["quant"] = None
        return cls(**{k: _plain(v) for k, v in values.items()})


def _plain(value: Any) -> Any:
    """numpy scalars (from pandas) as Python values; NaN (a missing cell) as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


# ---- validation: one table of what each key takes --------------------------------------------------

def _integer(minimum: int) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"must be an integer >= {minimum}, got {value!r}"
        return None
    return check


def _seconds(zero_ok: bool) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not zero_ok):
            return f"must be a number of seconds {'>=' if zero_ok else '>'} 0, got {value!r}"
        return None
    return check


def _one_of(choices: tuple[str, ...]) -> Any:
    def check(value: Any) -> str | None:
        return None if value in choices else f"unknown value {value!r}; choose one of {', '.join(choices)}"
    return check


def _dtype(value: Any) -> str | None:
    try:
        canonical_dtype(value)
    except ValueError as err:
        return str(err)
    return None


def _device(value: Any) -> str | None:
    try:
        check_device(value)
    except ValueError as err:
        return str(err)
    return None


def _optional(check: Any) -> Any:
    return lambda value: None if value is None else check(value)


_CHECKS = {
    "prompt_len": _integer(1),
    "context_depth": _integer(0),
    "batch": _integer(1),
    "threads": _optional(_integer(1)),
    "dtype": _dtype,
    "device": _device,
    "backend": _one_of(BACKENDS),
    "quant": _optional(lambda v: None if isinstance(v, str) and v else f"must be a scheme name, got {v!r}"),
    "warmup": _integer(0),
    "min_count": _integer(1),
    "min_duration_s": _seconds(zero_ok=True),
    "processes": _integer(1),
    "cache_fill": _optional(_one_of(CACHE_FILLS)),
    "memory_limit_bytes": _optional(_integer(1)),
    "timeout_s": _optional(_seconds(zero_ok=False)),
}


def _value_problems(settings: Settings) -> list[tuple[str, str]]:
    out = []
    for key, check in _CHECKS.items():
        message = check(getattr(settings, key))
        if message:
            out.append((key, message))
    return out


def _combination_problems(s: Settings) -> list[str]:
    """Problems that involve several keys: a scheme the backend lacks, what a deployment runtime runs."""
    schemes = QUANTS[s.backend]
    if s.quant is not None and s.quant not in schemes:
        if s.backend == "torch":
            return [f"quant: the torch backend runs the weights at dtype (set dtype instead); quant {s.quant!r} "
                    f"needs backend executorch ({', '.join(QUANTS['executorch'])}) or llamacpp "
                    f"({', '.join(QUANTS['llamacpp'])})"]
        return [f"quant: the {s.backend} backend has no scheme {s.quant!r}; choose one of {', '.join(schemes)}"]
    if s.backend == "torch":
        return []
    problems = []
    if s.device != "cpu":
        problems.append(f"device: the {s.backend} backend is measured on the CPU, not {s.device}")
    if s.batch != 1:
        problems.append(f"batch: the {s.backend} backend is measured at batch 1, not {s.batch}")
    if s.dtype != "float32":
        problems.append(f"dtype: the {s.backend} backend's weights are set by quant ({', '.join(schemes)}); "
                        "dtype applies to the torch backend only: leave it float32")
    if s.cache_fill == "synthetic" and s.backend == "executorch":
        problems.append(f"cache_fill: the {s.backend} backend's cache lives inside its program: it is filled by "
                        "a real prefill (cache_fill = \"prefill\")")
    return problems


# ---- reading a TOML table or CLI options ------------------------------------------------------------

#: Keys of a settings table: the fields, with ``memory_limit`` (a size) for ``memory_limit_bytes``.
TABLE_KEYS = tuple("memory_limit" if f.name == "memory_limit_bytes" else f.name for f in fields(Settings))
#: Older spellings that still read, and what they mean now.
_ALIASES = {"memory_limit_bytes": "memory_limit"}


def read_settings(
    table: dict[str, Any], where: str, *, axes: bool, defaults: Settings | None = None,
    names: dict[str, str] | None = None,
) -> tuple[list[Settings], list[str]]:
    """Every :class:`Settings` a table asks for, and every problem found (``"{where} key: ..."``).

    ``axes``: values may be lists, and the result is every combination (a sweep); otherwise each key
    takes one value (a search target, where the result is one setting). ``defaults`` fill keys the
    table leaves out. ``names``: how to call a key in messages when not ``"{where} key"`` (the CLI
    names its options). Nothing is raised for a problem in the table: the caller reports the list.
    """
    defaults = defaults or Settings()
    label = (lambda key: names.get(key, key)) if names else (lambda key: f"{where} {key}")
    problems: list[str] = []
    values: dict[str, list[Any]] = {}
    lengths = "cross"
    for key, raw in table.items():
        name = _ALIASES.get(key, key)
        if axes and name == "lengths":
            if raw not in LENGTHS:
                problems.append(f"{label('lengths')}: must be \"cross\" or \"zip\", got {raw!r}")
            else:
                lengths = raw
            continue
        if name not in TABLE_KEYS:
            known = ", ".join(TABLE_KEYS + (("lengths",) if axes else ()))
            problems.append(f"{label(key)}: unknown key; known: {known}")
            continue
        items = raw if axes and isinstance(raw, list) else [raw]
        if not items:
            problems.append(f"{label(key)}: is empty")
            continue
        if not axes and isinstance(raw, list):
            problems.append(f"{label(key)}: takes one value here, got the list {raw!r}")
            continue
        parsed = []
        for item in items:
            value, message = _read_value(name, item)
            if message:
                problems.append(f"{label(key)}: {message}")
            parsed.append(value)
        values["memory_limit_bytes" if name == "memory_limit" else name] = parsed
    if problems:
        return [], problems

    prompts = values.pop("prompt_len", [defaults.prompt_len])
    depths = values.pop("context_depth", [defaults.context_depth])
    if lengths == "zip":
        if len(prompts) != len(depths):
            return [], [f"{label('lengths')}: \"zip\" needs as many prompt_len as context_depth values"]
        pairs = list(zip(prompts, depths))
    else:
        pairs = list(itertools.product(prompts, depths))
    axis_keys = list(values)
    out: list[Settings] = []
    for (prompt, depth), combo in itertools.product(pairs, itertools.product(*values.values())):
        try:
            out.append(replace(defaults, prompt_len=prompt, context_depth=depth, **dict(zip(axis_keys, combo))))
        except SettingsError as err:
            for problem in err.problems:
                key, _, message = problem.partition(": ")
                line = f"{label(key)}: {message}"
                problems += [] if line in problems else [line]
    return (out, []) if not problems else ([], problems)


def _read_value(name: str, value: Any) -> tuple[Any, str | None]:
    """One value of key ``name`` as the field takes it, or the problem with it."""
    if name == "memory_limit":
        if value == 0:  # older sweep files wrote 0 for "no limit"
            return None, None
        try:
            return parse_bytes(value), None
        except ValueError as err:
            return None, str(err)
    message = _CHECKS[name](value)
    return value, message
