"""Sweep files: layouts x prompt lengths x context depths x batch x threads x dtype x device.

A sweep file is TOML (see ``experiments/sweeps/example.toml``)::

    name = "example"                  # results in experiments/results/<name>/ unless out = "..."
    variants = ["lfm2-tiny", "lfm2-350m:CCCCCCCCCCCCCCCC"]   # anything resolve_spec accepts

    [[layouts]]                       # more layouts: a registered base plus spec field overrides
    name = "w768"
    base = "lfm2-350m"
    hidden_size = 768
    num_heads = 12

    [workload]                        # each entry a value or a list of values
    prompt_len = [128, 512]
    context_depth = [512]
    lengths = "cross"                 # "cross": every prompt_len with every depth; "zip": pairwise
    batch = 1
    threads = 2
    dtype = "float32"
    device = "cpu"

    [timing]                          # optional
    warmup = 2
    min_count = 10
    min_duration_s = 1.0
    cache_fill = "synthetic"

    [run]                             # optional
    timeout_s = 900
    memory_limit_bytes = 0            # 0: no limit
    allow_emulated = false

Results: ``rows.jsonl`` in the output folder is the append-only store (the cache a re-run resumes
from); ``rows.csv`` (and ``rows.parquet`` with pyarrow) hold this plan's rows in plan order,
rewritten atomically after every row.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lfm2_nas.profiler.hardware import HardwareProfile, load_or_measure_hardware
from lfm2_nas.profiler.layout import UnsupportedDtypeError, profile_layout
from lfm2_nas.profiler.result import ProfileResult, result_key
from lfm2_nas.profiler.store import ResultStore, write_tables
from lfm2_nas.profiler.timing import TimingConfig
from lfm2_nas.profiler.workload import CACHE_FILLS, Workload, check_device
from lfm2_nas.registry import get_spec
from lfm2_nas.resolve import resolve_spec
from lfm2_nas.spec import ModelSpec, spec_field_names

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

_TOP = {"name", "out", "variants", "layouts", "workload", "timing", "run"}
_WORKLOAD = {"prompt_len", "context_depth", "lengths", "batch", "threads", "dtype", "device"}
_TIMING = {f.name for f in fields(TimingConfig)} | {"cache_fill"}
_RUN = {"timeout_s", "memory_limit_bytes", "allow_emulated"}


class SweepFileError(ValueError):
    """A sweep file that cannot be read or planned; the message names the file and the key."""


@dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep will measure, in order: every layout with every workload."""

    name: str
    out_dir: Path
    layouts: tuple[tuple[str, ModelSpec], ...]
    workloads: tuple[Workload, ...]
    timing: TimingConfig = TimingConfig()
    cache_fill: str = "synthetic"
    timeout_s: float | None = None
    memory_limit_bytes: int | None = None
    allow_emulated: bool = False

    def items(self) -> list[tuple[str, ModelSpec, Workload]]:
        return [(label, spec, wl) for label, spec in self.layouts for wl in self.workloads]


@dataclass
class SweepOutcome:
    """What a sweep did: its rows (plan order) and how many were measured, cached, failed or refused."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    measured: int = 0
    cached: int = 0
    failed: int = 0
    refused: int = 0
    paths: list[Path] = field(default_factory=list)

    def frame(self) -> Any:
        """The rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)


def load_sweep(path: Path | str) -> SweepPlan:
    """Read and validate a sweep file; :class:`SweepFileError` names the first problem."""
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

    workload = data.get("workload", {})
    _no_unknown(workload, _WORKLOAD, "[workload]", path)
    if "prompt_len" not in workload or "context_depth" not in workload:
        raise SweepFileError(f"sweep file {path}: [workload] needs prompt_len and context_depth")
    prompts = _list(workload["prompt_len"], "workload.prompt_len", path)
    depths = _list(workload["context_depth"], "workload.context_depth", path)
    lengths = workload.get("lengths", "cross")
    if lengths == "zip":
        if len(prompts) != len(depths):
            raise SweepFileError(f"sweep file {path}: lengths = \"zip\" needs as many prompt_len as context_depth values")
        pairs = list(zip(prompts, depths))
    elif lengths == "cross":
        pairs = list(itertools.product(prompts, depths))
    else:
        raise SweepFileError(f"sweep file {path}: workload.lengths must be \"cross\" or \"zip\", got {lengths!r}")
    axes = [_list(workload.get(k, default), f"workload.{k}", path)
            for k, default in (("batch", 1), ("threads", None), ("dtype", "float32"), ("device", "cpu"))]
    for device in axes[3]:
        check_device(device)
    workloads = tuple(
        Workload(p, d, batch=b, threads=t, dtype=dt, device=dev)
        for (p, d), b, t, dt, dev in itertools.product(pairs, *axes)
    )

    timing_table = dict(data.get("timing", {}))
    _no_unknown(timing_table, _TIMING, "[timing]", path)
    cache_fill = timing_table.pop("cache_fill", "synthetic")
    if cache_fill not in CACHE_FILLS:
        raise SweepFileError(f"sweep file {path}: timing.cache_fill must be one of {', '.join(CACHE_FILLS)}")
    run = data.get("run", {})
    _no_unknown(run, _RUN, "[run]", path)
    out = Path(data["out"]) if "out" in data else Path("experiments") / "results" / name
    return SweepPlan(
        name=name,
        out_dir=out,
        layouts=tuple(layouts),
        workloads=workloads,
        timing=TimingConfig(**timing_table),
        cache_fill=cache_fill,
        timeout_s=run.get("timeout_s"),
        memory_limit_bytes=run.get("memory_limit_bytes") or None,
        allow_emulated=bool(run.get("allow_emulated", False)),
    )


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

    Rows already in ``<out_dir>/rows.jsonl`` are reused; failed ones are measured again with
    ``retry_failed``. A dtype the device does not run natively gives a refused row (``ok`` False)
    unless the plan allows emulation. Unknown or missing devices raise before anything is measured.
    """
    from tqdm.auto import tqdm

    hardware = {wl.device: load_or_measure_hardware(wl.device) for wl in plan.workloads}
    store = ResultStore(plan.out_dir / "rows.jsonl")
    outcome = SweepOutcome()
    items = plan.items()
    with tqdm(total=len(items), desc=plan.name, unit="row", disable=not progress) as bar:
        for label, spec, workload in items:
            bar.set_postfix_str(f"{label} p{workload.prompt_len} d{workload.context_depth} b{workload.batch}")
            result = _profile(plan, label, spec, workload, hardware[workload.device], store, retry_failed)
            outcome.rows.append(result.to_row())
            if result.reason and result.reason.startswith("refused"):
                outcome.refused += 1
            elif result.cached:
                outcome.cached += 1
            else:
                outcome.measured += 1
            outcome.failed += not result.ok
            outcome.paths = write_tables(outcome.rows, plan.out_dir)
            bar.update()
    return outcome


def _profile(plan: SweepPlan, label: str, spec: ModelSpec, workload: Workload, hardware: HardwareProfile,
             store: ResultStore, retry_failed: bool) -> ProfileResult:
    try:
        return profile_layout(
            spec, workload, hardware, timing=plan.timing, cache_fill=plan.cache_fill, store=store,
            retry_failed=retry_failed, allow_emulated=plan.allow_emulated, timeout_s=plan.timeout_s,
            memory_limit_bytes=plan.memory_limit_bytes, label=label,
        )
    except UnsupportedDtypeError as err:
        workload = workload.resolved()
        key = result_key(spec, workload, hardware.slug, plan.timing, plan.cache_fill, plan.memory_limit_bytes)
        return ProfileResult(key=key, label=label, spec=spec, workload=workload, timing=plan.timing,
                             cache_fill=plan.cache_fill, ok=False, reason=f"refused: {err}", dtype_native=False,
                             hardware=hardware.label)
