"""The search file: a TOML document declaring the space, the target, the budgets and the study.

Everything is validated up front; every problem found becomes one line of :class:`SearchConfigError`
(``[section] key: what is wrong and what to write instead``), so a user fixes a file in one pass.
No torch here: a search file is checked instantly.

Sections (see ``lfm2_nas/search/default.toml`` and ``experiments/*.toml`` for complete examples)::

    [study]      name, trials (study-wide target), sampler (tpe | nsga2 | random), seed,
                 mode (pareto | single), objectives, storage (URL; default: a journal file),
                 cpu_lock (a lock file: exclusive while profiling, shared while training)
    [space]      base (the LFM2 size seeded first), depth, attention, patterns (a family; the
                 base's pattern and its all-attention pattern are always added), hidden_size,
                 head_dim, kv_heads, ffn_rule, ffn_ratio, conv_kernel, vocab_size
    [target]     the profiler's settings, one value each (:mod:`lfm2_nas.profiler.settings`): prompt_len,
                 context_depth, batch, threads, dtype, device, backend, quant, warmup, min_count,
                 min_duration_s, processes, cache_fill, memory_limit, timeout_s (older files'
                 [target.profiler] keys still read as [target] keys)
    [budget]     params ("350M ± 10%"), peak_memory ("4 GiB"), decode_ms, prefill_ms, screen_margin
    [quality]    tier (analytic | synthetic | text, default text), budget, seed, [quality.options]
    [screening]  predictor (a saved latency-predictor JSON), min_rows (fit one from this study's
                 own measurements once it has that many)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lfm2_nas.profiler.settings import Settings, read_settings
from lfm2_nas.quality.result import TIERS
from lfm2_nas.registry import VARIANTS
from lfm2_nas.resolve import resolve_spec
from lfm2_nas.search.space import SearchSpace  # the space decides which seeds it can express
from lfm2_nas.spec import ModelSpec, parse_pattern
from lfm2_nas.units import parse_bytes

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SAMPLERS = ("tpe", "nsga2", "random")
MODES = ("pareto", "single")
#: Objective names of the pareto mode; ``quality`` is the quality tier's own metric.
OBJECTIVES = ("quality", "decode_ms", "prefill_ms", "peak_bytes")
FFN_RULES = ("lfm2", "width")
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SearchConfigError(ValueError):
    """A search file that cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class StudySection:
    name: str
    trials: int = 30
    sampler: str = "tpe"
    seed: int = 0
    mode: str = "pareto"
    objectives: tuple[str, ...] = ("quality", "decode_ms", "prefill_ms")
    storage: str | None = None
    cpu_lock: str | None = None
    startup_trials: int = 8


@dataclass(frozen=True)
class SpaceSection:
    base: str
    depth: tuple[int, int]
    attention: tuple[int, int]
    patterns: tuple[str, ...]
    hidden_size: tuple[int, ...]
    head_dim: tuple[int, ...]
    kv_heads: tuple[int, ...]
    ffn_rule: str
    ffn_ratio: tuple[float, ...]
    conv_kernel: tuple[int, ...]
    vocab_size: tuple[int, ...]


@dataclass(frozen=True)
class BudgetSection:
    params: tuple[int, int] | None = None
    peak_bytes: int | None = None
    decode_ms: float | None = None
    prefill_ms: float | None = None
    screen_margin: float = 0.25


@dataclass(frozen=True)
class QualitySection:
    tier: str = "text"
    budget: float = 1.0
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScreeningSection:
    predictor: str | None = None
    min_rows: int = 8


@dataclass(frozen=True)
class SearchConfig:
    """A validated search file. ``text`` is the TOML it came from (stored in the study)."""

    study: StudySection
    space: SpaceSection
    target: Settings
    budget: BudgetSection
    quality: QualitySection
    screening: ScreeningSection
    text: str
    source: str = "<search file>"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["text"], out["source"]
        return out

    def fingerprint(self) -> str:
        """Hash of everything that decides what a trial means (the space, target, budgets, quality,
        objectives); the trial target, sampler, storage and lock may change when a study resumes."""
        data = self.to_dict()
        for key in ("trials", "sampler", "seed", "storage", "cpu_lock", "startup_trials"):
            del data["study"][key]
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---- loading ----------------------------------------------------------------------------------


def load_config(path: str | Path) -> SearchConfig:
    """Read and validate a search file; :class:`SearchConfigError` lists every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SearchConfigError(str(path), ["no such search file"]) from None
    except UnicodeDecodeError:
        raise SearchConfigError(str(path), ["not UTF-8 text; a search file is TOML"]) from None
    return parse_config(text, source=str(path), default_name=path.stem)


def parse_config(text: str, source: str = "<search file>", default_name: str = "search") -> SearchConfig:
    """Validate TOML ``text``; ``default_name`` names the study when ``[study] name`` is absent."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SearchConfigError(source, [f"not valid TOML: {err}"]) from None
    reader = _Reader(data)
    study = _read_study(reader, default_name)
    base = _read_base(reader)
    space = _read_space(reader, base)
    target = _read_target(reader)
    budget = _read_budget(reader)
    quality = _read_quality(reader)
    screening = _read_screening(reader)
    reader.check_unknown()
    if reader.problems:
        raise SearchConfigError(source, reader.problems)
    config = SearchConfig(study, space, target, budget, quality, screening, text=text, source=source)
    _cross_check(config, reader)
    if reader.problems:
        raise SearchConfigError(source, reader.problems)
    return config


# ---- value parsers (also used by the CLI) -----------------------------------------------------

_COUNT_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}
def parse_count(text: str) -> int:
    """``"350M"`` -> 350_000_000, ``"1.2B"`` -> 1_200_000_000, ``"64k"`` -> 64_000."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmbg]?)\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a count; write e.g. 350M, 1.2B or 64k")
    return int(round(float(match.group(1)) * _COUNT_SUFFIX[match.group(2)]))


def parse_count_range(value: Any) -> tuple[int, int]:
    """``"350M ± 10%"`` / ``"350M +- 10%"`` / ``"300M..400M"`` / ``[300e6, 400e6]`` -> (low, high)."""
    if isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value):
        low, high = int(value[0]), int(value[1])
    elif isinstance(value, str) and re.search(r"±|\+-|\+/-", value):
        center, tol = re.split(r"±|\+/-|\+-", value)
        tol = tol.strip()
        base = parse_count(center)
        if tol.endswith("%"):
            delta = base * float(tol[:-1]) / 100
        else:
            delta = parse_count(tol)
        low, high = int(round(base - delta)), int(round(base + delta))
    elif isinstance(value, str) and ".." in value:
        left, right = value.split("..", 1)
        low, high = parse_count(left), parse_count(right)
    else:
        raise ValueError(f"{value!r} is not a range; write e.g. \"350M ± 10%\", \"300M..400M\" or [300e6, 400e6]")
    if not 0 < low <= high:
        raise ValueError(f"range {value!r} gives [{low}, {high}]; need 0 < low <= high")
    return low, high


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---- section readers --------------------------------------------------------------------------


class _Reader:
    """Pulls typed values out of the parsed TOML, collecting problems instead of raising."""

    _SECTIONS = ("study", "space", "target", "budget", "quality", "screening")

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []
        self.used: dict[str, set[str]] = {s: set() for s in self._SECTIONS}
        for name, value in data.items():
            if name not in self._SECTIONS:
                self.problems.append(f"unknown section [{name}]; known: {', '.join(f'[{s}]' for s in self._SECTIONS)}")
            elif not isinstance(value, dict):
                self.problems.append(f"{name} must be a [{name}] table")

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        return value if isinstance(value, dict) else {}

    def has(self, section: str, key: str) -> bool:
        return key in self.section(section)

    def get(self, section: str, key: str, default: Any = None) -> Any:
        self.used[section].add(key)
        return self.section(section).get(key, default)

    def problem(self, section: str, key: str, message: str) -> None:
        self.problems.append(f"[{section}] {key}: {message}")

    def check_unknown(self) -> None:
        for section, used in self.used.items():
            for key in self.section(section):
                if key not in used:
                    known = ", ".join(sorted(used))
                    self.problem(section, key, f"unknown key; known keys of [{section}]: {known}")

    # typed getters: on a problem they record it and return the default
    def integer(self, section: str, key: str, default: Any, minimum: int = 0) -> Any:
        value = self.get(section, key, default)
        if value is default:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(section, key, f"must be an integer, got {value!r}")
            return default
        if value < minimum:
            self.problem(section, key, f"must be >= {minimum}, got {value}")
            return default
        return value

    def number(self, section: str, key: str, default: Any, positive: bool = True) -> Any:
        value = self.get(section, key, default)
        if value is default:
            return default
        if not _is_number(value) or (positive and not value > 0):
            self.problem(section, key, f"must be a {'positive ' if positive else ''}number, got {value!r}")
            return default
        return float(value)

    def choice(self, section: str, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.get(section, key, default)
        if value not in choices:
            self.problem(section, key, f"unknown value {value!r}; choose one of {', '.join(choices)}")
            return default
        return value

    def string(self, section: str, key: str, default: str | None) -> str | None:
        value = self.get(section, key, default)
        if value is not default and (not isinstance(value, str) or not value):
            self.problem(section, key, f"must be a non-empty string, got {value!r}")
            return default
        return value

    def table(self, section: str, key: str) -> dict[str, Any]:
        value = self.get(section, key, {})
        if not isinstance(value, dict):
            self.problem(section, key, f"must be a table ([{section}.{key}]), got {value!r}")
            return {}
        return value

    def int_choices(self, section: str, key: str, default: tuple[int, ...], minimum: int = 1) -> tuple[int, ...]:
        value = self.get(section, key, list(default))
        value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if (
            not isinstance(value, list)
            or not value
            or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in value)
        ):
            self.problem(section, key, f"must be a list of integers >= {minimum} (the choices), got {value!r}")
            return default
        return tuple(sorted(set(value)))

    def int_range(self, section: str, key: str, default: tuple[int, int], minimum: int) -> tuple[int, int]:
        value = self.get(section, key, list(default))
        value = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
            or not minimum <= value[0] <= value[1]
        ):
            self.problem(section, key, f"must be [min, max] integers with {minimum} <= min <= max, got {value!r}")
            return default
        return value[0], value[1]


def _read_study(r: _Reader, default_name: str) -> StudySection:
    name = r.string("study", "name", default_name) or default_name
    if not _STUDY_NAME.match(name):
        r.problem("study", "name", f"{name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    mode = r.choice("study", "mode", "pareto", MODES)
    objectives = r.get("study", "objectives", ["quality", "decode_ms", "prefill_ms"])
    if (
        not isinstance(objectives, list)
        or not objectives
        or any(o not in OBJECTIVES for o in objectives)
        or len(set(objectives)) != len(objectives)
    ):
        r.problem("study", "objectives", f"must be a list of distinct names from {', '.join(OBJECTIVES)}, got {objectives!r}")
        objectives = ["quality", "decode_ms", "prefill_ms"]
    if mode == "pareto" and len(objectives) < 2:
        r.problem("study", "objectives", "pareto mode needs at least two objectives; or set mode = \"single\"")
    if mode == "single" and r.has("study", "objectives"):
        r.problem("study", "objectives", "single mode maximises quality alone: drop objectives, set limits in [budget]")
    return StudySection(
        name=name,
        trials=r.integer("study", "trials", 30, minimum=1),
        sampler=r.choice("study", "sampler", "tpe", SAMPLERS),
        seed=r.integer("study", "seed", 0),
        mode=mode,
        objectives=("quality",) if mode == "single" else tuple(objectives),
        storage=r.string("study", "storage", None),
        cpu_lock=r.string("study", "cpu_lock", None),
        startup_trials=r.integer("study", "startup_trials", 8, minimum=1),
    )


def _read_base(r: _Reader) -> ModelSpec | None:
    name = r.string("space", "base", None)
    if name is None:
        r.problem("space", "base", f"missing: name the LFM2 size to search around, one of {', '.join(VARIANTS)}")
        return None
    try:
        return resolve_spec(name)
    except (ValueError, OSError) as err:
        r.problem("space", "base", str(err))
        return None


def _read_space(r: _Reader, base: ModelSpec | None) -> SpaceSection:
    name = r.get("space", "base", "")
    b = base or VARIANTS["lfm2-tiny"]  # stand-in so the other keys still get checked
    patterns = r.get("space", "patterns", [])
    if not isinstance(patterns, list) or any(not isinstance(p, str) for p in patterns):
        r.problem("space", "patterns", f"must be a list of C/A pattern strings, got {patterns!r}")
        patterns = []
    canonical: list[str] = []
    for p in patterns:
        try:
            canonical.append("".join("C" if t == "conv" else "A" for t in parse_pattern(p)))
        except ValueError as err:
            r.problem("space", "patterns", str(err))
    if canonical and base is not None:  # the seeded layouts are always part of a family
        for seed in (base.pattern, "A" * base.num_layers):
            if seed not in canonical:
                canonical.append(seed)
    if canonical and (r.has("space", "depth") or r.has("space", "attention")):
        r.problem("space", "patterns", "give either patterns (a fixed family) or depth/attention (free placement), not both")
    depth = r.int_range("space", "depth", (b.num_layers, b.num_layers), minimum=1)
    attention = r.int_range("space", "attention", (0, depth[1]), minimum=0)
    if attention[0] > depth[1]:
        r.problem("space", "attention", f"at least {attention[0]} attention layers cannot fit in at most {depth[1]} layers")
    ffn_rule = r.choice("space", "ffn_rule", "lfm2", FFN_RULES)
    default_ratio = b.ff_dim / b.hidden_size if ffn_rule == "lfm2" else b.ffn_dim / b.hidden_size
    ratios = r.get("space", "ffn_ratio", [round(default_ratio, 4)])
    ratios = [ratios] if _is_number(ratios) else ratios
    if not isinstance(ratios, list) or not ratios or any(not _is_number(x) or x <= 0 for x in ratios):
        r.problem("space", "ffn_ratio", f"must be a list of positive numbers (FFN width / hidden size), got {ratios!r}")
        ratios = [round(default_ratio, 4)]
    return SpaceSection(
        base=name if isinstance(name, str) else "",
        depth=depth,
        attention=attention,
        patterns=tuple(canonical),
        hidden_size=r.int_choices("space", "hidden_size", (b.hidden_size,), minimum=2),
        head_dim=r.int_choices("space", "head_dim", (b.head_dim,), minimum=2),
        kv_heads=r.int_choices("space", "kv_heads", (b.num_kv_heads,)),
        ffn_rule=ffn_rule,
        ffn_ratio=tuple(sorted({float(x) for x in ratios})),
        conv_kernel=r.int_choices("space", "conv_kernel", (b.conv_kernel,), minimum=2),
        vocab_size=r.int_choices("space", "vocab_size", (b.vocab_size,), minimum=2),
    )


def _read_target(r: _Reader) -> Settings:
    table = dict(r.section("target"))
    r.used["target"].update(table)  # every key is checked by the settings reader
    legacy = table.pop("profiler", {})
    if not isinstance(legacy, dict):
        r.problem("target", "profiler", f"must be a table ([target.profiler]), got {legacy!r}")
        legacy = {}
    for key in sorted(set(legacy) & set(table)):
        r.problem("target", f"profiler.{key}", f"{key} is also set in [target]; keep one")
    settings, problems = read_settings({**legacy, **table}, "[target]", axes=False)
    r.problems.extend(problems)
    return settings[0] if settings else Settings()


def _read_budget(r: _Reader) -> BudgetSection:
    params = r.get("budget", "params", None)
    if params is not None:
        try:
            params = parse_count_range(params)
        except ValueError as err:
            r.problem("budget", "params", str(err))
            params = None
    peak = r.get("budget", "peak_memory", None)
    if peak is not None:
        try:
            peak = parse_bytes(peak)
        except ValueError as err:
            r.problem("budget", "peak_memory", str(err))
            peak = None
    margin = r.get("budget", "screen_margin", 0.25)
    if not _is_number(margin) or margin < 0:
        r.problem("budget", "screen_margin", f"must be a number >= 0 (0.25 = screen 25% above a limit), got {margin!r}")
        margin = 0.25
    return BudgetSection(
        params=params,
        peak_bytes=peak,
        decode_ms=r.number("budget", "decode_ms", None),
        prefill_ms=r.number("budget", "prefill_ms", None),
        screen_margin=float(margin),
    )


#: ``[quality.options]`` the quality tiers take from a file (the trained tiers; analytic: run options only).
QUALITY_OPTIONS = {"corpus": str, "tokenizer": str, "device": str, "cache_dir": str, "progress": bool}
_ANALYTIC_OPTIONS = ("device", "cache_dir", "progress")


def _read_quality(r: _Reader) -> QualitySection:
    tier = r.choice("quality", "tier", "text", TIERS)
    options = r.table("quality", "options")
    for key, value in options.items():
        if key not in QUALITY_OPTIONS:
            r.problem("quality", f"options.{key}", f"unknown quality option; known: {', '.join(QUALITY_OPTIONS)}")
        elif not isinstance(value, QUALITY_OPTIONS[key]):
            r.problem("quality", f"options.{key}", f"must be a {QUALITY_OPTIONS[key].__name__}, got {value!r}")
        elif tier == "analytic" and key not in _ANALYTIC_OPTIONS:
            r.problem("quality", f"options.{key}", "the analytic tier trains nothing; drop it or choose tier synthetic/text")
        elif key == "corpus" and not Path(value).exists():
            r.problem("quality", "options.corpus", f"no file or folder {value}")
    return QualitySection(
        tier=tier,
        budget=r.number("quality", "budget", 1.0),
        seed=r.integer("quality", "seed", 0),
        options=options,
    )


def _read_screening(r: _Reader) -> ScreeningSection:
    return ScreeningSection(
        predictor=r.string("screening", "predictor", None),
        min_rows=r.integer("screening", "min_rows", 8, minimum=2),
    )


def _cross_check(config: SearchConfig, r: _Reader) -> None:
    """Problems that involve several keys: impossible head splits, unseedable base, empty budgets."""
    space = config.space
    for hidden in space.hidden_size:
        for head_dim in space.head_dim:
            if hidden % head_dim or head_dim % 2:
                r.problem("space", "head_dim", f"{head_dim} must be even and divide every hidden_size ({hidden} does not work)")
                continue
            heads = hidden // head_dim
            if all(heads % kv for kv in space.kv_heads):
                # Some kv choices may not divide some head counts (those trials are screened as
                # invalid); but every width must have at least one buildable choice.
                r.problem("space", "kv_heads", f"none of {list(space.kv_heads)} divides {heads} heads (hidden_size {hidden} / head_dim {head_dim})")
    if config.study.mode == "single" and not any(
        (config.budget.decode_ms, config.budget.prefill_ms, config.budget.peak_bytes)
    ):
        r.problem("budget", "decode_ms", "single mode maximises quality under limits: set decode_ms, prefill_ms or peak_memory")
    if r.problems:
        return
    space_obj = SearchSpace(config.space)
    for seed_name, seed in space_obj.seed_specs().items():
        try:
            space_obj.params_for(seed)
        except ValueError as err:
            r.problem("space", "base", f"cannot seed {seed_name}: {err}")
