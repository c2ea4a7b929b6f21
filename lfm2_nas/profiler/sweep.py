"""Sweep files: layouts x measurement settings (every combination).

A sweep file is TOML (see ``experiments/sweeps/example.toml``)::

    name = "example"                  # results in <experiments>/results/<name>/ unless out = "..."
    variants = ["lfm2-tiny", "lfm2-350m:CCCCCCCCCCCCCCCC"]   # anything resolve_spec accepts
    allow_emulated = false            # measure a dtype the device only emulates (rows are marked)

    [[layouts]]                       # more layouts: a registered base plus spec field overrides
    name = "w768"
    base = "lfm2-350m"
    hidden_size = 768
    num_heads = 12

    [workload]                        # the profiler's settings; each a value or a list (an axis)
    prompt_len = [128, 512]
    context_depth = [512]
    lengths = "cross"                 # "cross": every prompt_len with every depth; "zip": pairwise
    threads = 2
    backend = ["torch", "executorch"] # and quant = [...]: a scheme list is crossed with backends,
    warmup = 2                        # so give quant only with one backend
    min_count = 10
    timeout_s = 900
    memory_limit = "4 GiB"

Every key of ``[workload]`` is one of :data:`lfm2_nas.profiler.settings.TABLE_KEYS` and means what it
means everywhere (:mod:`lfm2_nas.profiler.settings`). Files written before the settings were one
table still read: their ``[timing]`` and ``[run]`` keys count as ``[workload]`` keys.

Results: ``rows.jsonl`` in the output folder is the append-only store (the cache a re-run resumes
from); ``rows.csv`` (and ``rows.parquet`` with pyarrow) hold this plan's rows in plan order,
rewritten atomically after every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfm2_nas.paths import experiments_root
from lfm2_nas.profiler.hardware import HardwareProfile, load_or_measure_hardware
from lfm2_nas.profiler.profile import UnsupportedDtypeError, profile_layout
from lfm2_nas.profiler.result import ProfileResult, result_key
from lfm2_nas.profiler.settings import Settings, read_settings
from lfm2_nas.profiler.store import ProfileStore, write_tables
from lfm2_nas.runtimes.base import ExportError
from lfm2_nas.registry import get_spec
from lfm2_nas.resolve import resolve_spec
from lfm2_nas.spec import ModelSpec, spec_field_names

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

_TOP = {"name", "out", "variants", "layouts", "workload", "allow_emulated", "timing", "run"}
#: Tables of older sweep files whose keys are now ``[workload]`` keys.
_LEGACY_TABLES = ("timing", "run")


class SweepFileError(ValueError):
    """A sweep file that cannot be read or planned; the message names the file and every problem."""


@dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep will measure, in order: every layout with every setting."""

    name: str
    out_dir: Path
    layouts: tuple[tuple[str, ModelSpec], ...]
    settings: tuple[Settings, ...]
    allow_emulated: bool = False

    def items(self) -> list[tuple[str, ModelSpec, Settings]]:
        return [(label, spec, s) for label, spec in self.layouts for s in self.settings]


@dataclass
class SweepOutcome:
    """What a sweep did: its rows (plan order) and how many were measured, cached, failed, refused, or
    measured while other processes kept the machine busy."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    measured: int = 0
    cached: int = 0
    failed: int = 0
    refused: int = 0
    busy: int = 0
    paths: list[Path] = field(default_factory=list)

    def frame(self) -> Any:
        """The rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)


def load_sweep(path: Path | str) -> SweepPlan:
    """Read and validate a sweep file; :class:`SweepFileError` names every problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SweepFileError(f"sweep file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SweepFileError(f"sweep file {path} is not valid TOML: {err}") from None
    try:
        return _plan(data, path)
    except SweepFileError:
        raise
    except (ValueError, LookupError, TypeError) as err:
        raise SweepFileError(f"sweep file {path}: {err}") from None


def _plan(data: dict[str, Any], path: Path) -> SweepPlan:
    _no_unknown(data, _TOP, "the top level", path)
    name = str(data.get("name", path.stem))
    layouts = [(str(text), resolve_spec(str(text))) for text in _list(data.get("variants", []), "variants", path, True)]
    for table in _list(data.get("layouts", []), "layouts", path, True):
        if not isinstance(table, dict) or "name" not in table:
            raise SweepFileError(f"sweep file {path}: each [[layouts]] entry needs a name")
        overrides = {k: v for k, v in table.items() if k not in ("name", "base")}
        _no_unknown(overrides, set(spec_field_names()), f"[[layouts]] {table['name']!r}", path)
        layouts.append((str(table["name"]), get_spec(table.get("base", "lfm2-350m"), **overrides)))
    if not layouts:
        raise SweepFileError(f"sweep file {path}: no layouts; give variants = [...] or [[layouts]] tables")

    workload = dict(data.get("workload", {}))
    _no_unknown(workload, set(workload), "[workload]", path)
    allow_emulated = data.get("allow_emulated", False)
    for legacy in _LEGACY_TABLES:
        table = dict(data.get(legacy, {}))
        _no_unknown(table, set(table), f"[{legacy}]", path)
        allow_emulated = table.pop("allow_emulated", allow_emulated)
        for key in sorted(set(table) & set(workload)):
            raise SweepFileError(f"sweep file {path}: {key} is set in both [workload] and [{legacy}]; keep one")
        workload.update(table)
    if "prompt_len" not in workload or "context_depth" not in workload:
        raise SweepFileError(f"sweep file {path}: [workload] needs prompt_len and context_depth")
    settings, problems = read_settings(workload, "[workload]", axes=True)
    if problems:
        raise SweepFileError(f"sweep file {path}: " + "; ".join(problems))
    out = Path(data["out"]) if "out" in data else experiments_root() / "results" / name
    return SweepPlan(name=name, out_dir=out, layouts=tuple(layouts), settings=tuple(settings),
                     allow_emulated=bool(allow_emulated))


def _no_unknown(table: Any, known: set[str], where: str, path: Path) -> None:
    if not isinstance(table, dict):
        raise SweepFileError(f"sweep file {path}: {where} must be a table")
    unknown = sorted(set(table) - known)
    if unknown:
        raise SweepFileError(f"sweep file {path}: unknown key(s) {unknown} in {where}; known: {', '.join(sorted(known))}")


def _list(value: Any, where: str, path: Path, may_be_empty: bool = False) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values and not may_be_empty:
        raise SweepFileError(f"sweep file {path}: {where} is empty")
    return values


def run_sweep(plan: SweepPlan, progress: bool = True, retry_failed: bool = False) -> SweepOutcome:
    """Measure every (layout, workload) of ``plan`` not already in its store; resumable at any point.

    Rows already in ``<out_dir>/rows.jsonl`` are reused; failed ones and those measured on a busy
    machine are measured again with ``retry_failed``. A dtype the device does not run natively gives a
    refused row (``ok`` False) unless the plan allows emulation; so does a layout a deployment runtime
    cannot export. Unknown or missing devices and runtimes raise before anything is measured.
    """
    from tqdm.auto import tqdm

    from lfm2_nas.runtimes import installed_version

    for backend in sorted({s.backend for s in plan.settings} - {"torch"}):
        installed_version(backend)  # a missing runtime stops the sweep before anything is measured
    hardware = {s.device: load_or_measure_hardware(s.device) for s in plan.settings}
    store = ProfileStore(plan.out_dir / "rows.jsonl")
    outcome = SweepOutcome()
    items = plan.items()
    with tqdm(total=len(items), desc=plan.name, unit="row", disable=not progress) as bar:
        for label, spec, settings in items:
            bar.set_postfix_str(f"{label} {settings.backend} p{settings.prompt_len} d{settings.context_depth} "
                                f"b{settings.batch}")
            result = _profile(plan, label, spec, settings, hardware[settings.device], store, retry_failed)
            outcome.rows.append(result.to_row())
            if result.reason and result.reason.startswith("refused"):
                outcome.refused += 1
            elif result.cached:
                outcome.cached += 1
            else:
                outcome.measured += 1
            outcome.failed += not result.ok
            outcome.busy += result.busy
            outcome.paths = write_tables(outcome.rows, plan.out_dir)
            bar.update()
    return outcome


def _profile(plan: SweepPlan, label: str, spec: ModelSpec, settings: Settings, hardware: HardwareProfile,
             store: ProfileStore, retry_failed: bool) -> ProfileResult:
    """One row of the sweep: measured (or cached), or refused with the reason (an emulated dtype, a
    layout the backend cannot export)."""
    try:
        return profile_layout(spec, settings, hardware, store=store, retry_failed=retry_failed,
                              allow_emulated=plan.allow_emulated, label=label)
    except (UnsupportedDtypeError, ExportError) as err:
        settings = settings.resolved()
        return ProfileResult(key=result_key(spec, settings, hardware.slug), label=label, spec=spec, settings=settings,
                             ok=False, reason=f"refused: {err}", dtype_native=hardware.is_native(settings.dtype),
                             hardware=hardware.label)
