"""Profile one layout on one workload: the entry point the CLI, sweeps and the search call."""

from __future__ import annotations

import datetime as dt
import logging
import platform
import warnings
from pathlib import Path

from lfm2_nas.profiler.hardware import HardwareProfile, load_or_measure_hardware, profiles_dir
from lfm2_nas.profiler.memory import MemoryReport, predicted_memory
from lfm2_nas.profiler.result import ProfileResult, result_key
from lfm2_nas.profiler.runner import run_in_child
from lfm2_nas.profiler.stats import summarize
from lfm2_nas.profiler.store import ResultStore
from lfm2_nas.profiler.timing import TimingConfig
from lfm2_nas.profiler.workload import CACHE_FILLS, Workload
from lfm2_nas.resolve import resolve_spec
from lfm2_nas.spec import ModelSpec

log = logging.getLogger(__name__)


class UnsupportedDtypeError(ValueError):
    """A dtype the device runs only emulated (e.g. bfloat16 on a CPU without bf16 instructions)."""


def default_store(hardware: HardwareProfile) -> ResultStore:
    """The result cache used when none is given: ``profiles/cache/<slug>.jsonl``."""
    return ResultStore(profiles_dir() / "cache" / f"{hardware.slug}.jsonl")


def check_dtype(workload: Workload, hardware: HardwareProfile, allow_emulated: bool = False) -> bool:
    """True when ``workload.dtype`` is native on ``hardware``; for an emulated dtype raise
    :class:`UnsupportedDtypeError`, or with ``allow_emulated`` warn loudly and return False."""
    if hardware.is_native(workload.dtype):
        return True
    ratio = hardware.peak_flops(workload.dtype) / hardware.matmul_flops_per_s["float32"]
    message = (
        f"{workload.dtype} is not native on {hardware.slug}: its measured matmul throughput is {ratio:.3g}x "
        "float32's, so timings would measure an emulation"
    )
    if not allow_emulated:
        raise UnsupportedDtypeError(f"{message}; use float32, or allow emulated dtypes explicitly")
    warnings.warn(f"MEASURING AN EMULATED DTYPE: {message}; rows are marked dtype_native=False", stacklevel=2)
    return False


def profile_layout(
    spec: ModelSpec | str,
    workload: Workload,
    hardware: HardwareProfile | None = None,
    *,
    timing: TimingConfig | None = None,
    cache_fill: str = "synthetic",
    store: ResultStore | Path | str | None = None,
    use_cache: bool = True,
    retry_failed: bool = False,
    allow_emulated: bool = False,
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = None,
    label: str | None = None,
) -> ProfileResult:
    """Measure prefill and decode latency and peak memory of ``spec`` on ``workload`` in a fresh process.

    ``spec``: a :class:`ModelSpec` or anything :func:`lfm2_nas.resolve.resolve_spec` accepts.
    ``hardware``: the device's profile (loaded or measured when None). Results are cached in
    ``store`` (default :func:`default_store`) by (spec, hardware, workload, timing, cache fill); a
    cached row is returned without measuring (``result.cached``) unless ``use_cache`` is False, or it
    failed and ``retry_failed`` is set. Failures (out of memory, timeout, crash) come back as
    ``ok=False`` with a ``reason`` and are cached too. ``memory_limit_bytes`` caps the measuring
    process's memory above its start-up size. Raises :class:`UnsupportedDtypeError` for an emulated
    dtype unless ``allow_emulated``.
    """
    if isinstance(spec, str):
        label, spec = label or spec, resolve_spec(spec)
    label = label or spec.pattern
    workload = workload.resolved()
    if cache_fill not in CACHE_FILLS:
        raise ValueError(f"unknown cache_fill {cache_fill!r}: use one of {', '.join(CACHE_FILLS)}")
    timing = timing or TimingConfig()
    hardware = hardware or load_or_measure_hardware(workload.device)
    if hardware.device.startswith("cuda") != workload.device.startswith("cuda"):
        raise ValueError(f"hardware profile {hardware.slug} is for {hardware.device}, not {workload.device}")
    native = check_dtype(workload, hardware, allow_emulated)
    if not isinstance(store, ResultStore):
        store = ResultStore(store) if store is not None else default_store(hardware)
    key = result_key(spec, workload, hardware.slug, timing, cache_fill, memory_limit_bytes)
    cached = store.get(key) if use_cache else None
    if cached is not None and (cached["ok"] or not retry_failed):
        return ProfileResult.from_row(cached)

    result = ProfileResult(
        key=key, label=label, spec=spec, workload=workload, timing=timing, cache_fill=cache_fill, ok=False,
        dtype_native=native, hardware=hardware.label,
        peak_bandwidth_bytes_per_s=hardware.read_bandwidth_bytes_per_s,
        peak_flops_per_s=hardware.peak_flops(workload.dtype),
    )
    kwargs = {"spec": spec.to_dict(), "workload": workload.to_dict(), "timing": timing.to_dict(), "cache_fill": cache_fill}
    outcome = run_in_child("lfm2_nas.profiler.measure:measure_layout", kwargs, workload.threads, timeout_s, memory_limit_bytes)
    result.environment = {
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python_version": platform.python_version(),
        "torch_version": hardware.torch_version,
        "cuda_version": hardware.cuda_version,
        "cpu_model": hardware.cpu_model,
        "gpu_name": hardware.gpu_name,
        **outcome.threads,
    }
    if outcome.ok:
        value = outcome.value
        result.ok = True
        result.prefill_ms = summarize(value["prefill_ms"])
        result.decode_ms_per_token = summarize(value["decode_ms"])
        prediction = predicted_memory(spec, workload.prompt_len, workload.batch, workload.max_len, workload.dtype)
        result.memory = MemoryReport(**value["memory"], **prediction)
        result.environment.update(value["environment"])
    else:
        result.reason = outcome.reason
        log.warning("profile of %s on %s failed: %s", label, workload, outcome.reason)
    store.append(result.to_row())
    return result
