"""Profile one layout under one :class:`~lfm2_nas.profiler.settings.Settings`: the entry point the CLI,
sweeps and the search call."""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import warnings
from pathlib import Path
from typing import Any

from lfm2_nas.profiler.hardware import (
    HardwareProfile,
    applicable_kernel_choice,
    load_or_measure_hardware,
    profiles_dir,
)
from lfm2_nas.profiler.memory import MemoryReport, predicted_memory
from lfm2_nas.profiler.result import ProfileResult, result_key
from lfm2_nas.profiler.runner import run_in_child
from lfm2_nas.profiler.settings import Settings
from lfm2_nas.profiler.stats import summarize
from lfm2_nas.profiler.store import ProfileStore
from lfm2_nas.resolve import resolve_spec
from lfm2_nas.spec import ModelSpec

log = logging.getLogger(__name__)


class UnsupportedDtypeError(ValueError):
    """A dtype the device runs only emulated (e.g. bfloat16 on a CPU without bf16 instructions)."""


def default_store(hardware: HardwareProfile) -> ProfileStore:
    """The result cache used when none is given: ``profiles/cache/<slug>.jsonl``."""
    return ProfileStore(profiles_dir() / "cache" / f"{hardware.slug}.jsonl")


def check_dtype(settings: Settings, hardware: HardwareProfile, allow_emulated: bool = False) -> bool:
    """True when ``settings.dtype`` is native on ``hardware``; for an emulated dtype raise
    :class:`UnsupportedDtypeError`, or with ``allow_emulated`` warn loudly and return False."""
    if hardware.is_native(settings.dtype):
        return True
    ratio = hardware.peak_flops(settings.dtype) / hardware.matmul_flops_per_s["float32"]
    message = (
        f"{settings.dtype} is not native on {hardware.slug}: its measured matmul throughput is {ratio:.3g}x "
        "float32's, so timings would measure an emulation"
    )
    if not allow_emulated:
        raise UnsupportedDtypeError(f"{message}; use float32, or allow emulated dtypes explicitly")
    warnings.warn(f"MEASURING AN EMULATED DTYPE: {message}; rows are marked dtype_native=False", stacklevel=2)
    return False


def profile_layout(
    spec: ModelSpec | str,
    settings: Settings,
    hardware: HardwareProfile | None = None,
    *,
    store: ProfileStore | Path | str | None = None,
    use_cache: bool = True,
    retry_failed: bool = False,
    allow_emulated: bool = False,
    label: str | None = None,
) -> ProfileResult:
    """Measure prefill and decode latency and peak memory of ``spec`` under ``settings`` in fresh processes.

    ``spec``: a :class:`ModelSpec` or anything :func:`lfm2_nas.resolve.resolve_spec` accepts.
    ``hardware``: the device's profile (loaded or measured when None). Results are cached in
    ``store`` (default :func:`default_store`) by :func:`~lfm2_nas.profiler.result.result_key`; a cached
    row is returned without measuring (``result.cached``) unless ``use_cache`` is False, or it failed or
    was measured on a busy machine and ``retry_failed`` is set. Failures (out of memory, timeout, crash,
    a failed export) come back as ``ok=False`` with a ``reason`` and are cached too.

    With a deployment backend (``settings.backend`` executorch or llamacpp) the layout is first
    exported to that runtime's artifact (cached by :func:`lfm2_nas.profiler.artifacts.ensure_artifact`),
    and the measuring processes run the artifact. Raises :class:`UnsupportedDtypeError` for an emulated
    dtype unless ``allow_emulated``, :class:`~lfm2_nas.runtimes.base.RuntimeUnavailable` when the
    backend is not installed, :class:`~lfm2_nas.runtimes.base.ExportError` for a layout or scheme the
    runtime cannot represent: all before anything is measured or stored.
    """
    if isinstance(spec, str):
        label, spec = label or spec, resolve_spec(spec)
    label = label or spec.pattern
    settings = settings.resolved()
    hardware = hardware or load_or_measure_hardware(settings.device)
    if hardware.device.startswith("cuda") != settings.device.startswith("cuda"):
        raise ValueError(f"hardware profile {hardware.slug} is for {hardware.device}, not {settings.device}")
    native = check_dtype(settings, hardware, allow_emulated)
    version = None
    if settings.backend != "torch":
        from lfm2_nas.runtimes import get_runtime, installed_version

        version = installed_version(settings.backend)
        get_runtime(settings.backend).check(spec, settings.quant, settings.max_len)
    store = _store(store, hardware)
    key = result_key(spec, settings, hardware.slug, version)
    cached = store.get(key) if use_cache else None
    if cached is not None and ((cached["ok"] and not cached.get("busy")) or not retry_failed):
        return ProfileResult.from_row(cached)

    result = ProfileResult(
        key=key, label=label, spec=spec, settings=settings, ok=False, dtype_native=native, hardware=hardware.label,
        peak_bandwidth_bytes_per_s=hardware.read_bandwidth_bytes_per_s,
        peak_flops_per_s=hardware.peak_flops(settings.dtype),
    )
    result.environment = {
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python_version": platform.python_version(),
        "torch_version": hardware.torch_version,
        "cuda_version": hardware.cuda_version,
        "cpu_model": hardware.cpu_model,
        "gpu_name": hardware.gpu_name,
    }
    target, kwargs = "lfm2_nas.profiler.measure:measure_layout", {"spec": spec.to_dict(), "settings": settings.to_dict()}
    if settings.backend == "torch":
        table, result.environment["kernel_choice"] = applicable_kernel_choice(hardware)
        kwargs["kernel_table"] = table
    else:
        outcome = _artifact(spec, settings, result)
        if outcome is None:
            store.append(result.to_row())
            return result
        target, kwargs["artifact"] = "lfm2_nas.profiler.measure:measure_artifact", outcome
    outcomes = []
    for _ in range(settings.processes):
        outcomes.append(run_in_child(target, kwargs, settings.threads, settings.timeout_s, settings.memory_limit_bytes))
        if not outcomes[-1].ok:
            break
    result.environment.update(outcomes[0].threads)
    if outcomes[-1].ok:
        _pool(result, [o.value for o in outcomes])
        if result.busy:
            log.warning("machine busy while profiling %s: other processes used %.2f CPU cores; timings are "
                        "not trustworthy (use flock -x on shared machines)", label, result.environment["other_cpu_cores"])
    else:
        result.reason = outcomes[-1].reason
        log.warning("profile of %s (%s) failed: %s", label, settings.workload(), result.reason)
    store.append(result.to_row())
    return result


def is_measured(spec: ModelSpec, settings: Settings, hardware: HardwareProfile,
                store: ProfileStore | Path | str | None = None) -> bool:
    """Whether :func:`profile_layout` would answer from ``store`` without measuring (then the caller
    need not take a CPU lock)."""
    settings = settings.resolved()
    version = None
    if settings.backend != "torch":
        from lfm2_nas.runtimes import installed_version

        version = installed_version(settings.backend)
    return _store(store, hardware).get(result_key(spec, settings, hardware.slug, version)) is not None


def _store(store: ProfileStore | Path | str | None, hardware: HardwareProfile) -> ProfileStore:
    if isinstance(store, ProfileStore):
        return store
    return ProfileStore(store) if store is not None else default_store(hardware)


def _artifact(spec: ModelSpec, settings: Settings, result: ProfileResult) -> dict[str, Any] | None:
    """The deployment runtime's artifact for this measurement (exported now or found in the artifact
    cache), its facts recorded in ``result``; None with ``result.reason`` set when the export failed."""
    from lfm2_nas.profiler.artifacts import ArtifactFailed, ensure_artifact

    try:
        artifact = ensure_artifact(settings.backend, spec, settings.quant, settings.max_len, artifacts_dir())
    except ArtifactFailed as err:
        result.reason = f"export failed: {err}"
        log.warning("export of %s to %s %s failed: %s", result.label, settings.backend, settings.quant, err)
        return None
    result.environment.update(
        runtime_version=artifact.runtime_version, artifact_bytes=artifact.size_bytes, export_s=artifact.export_s,
        export_peak_bytes=artifact.export_peak_rss_bytes, artifact_details=json.dumps(artifact.details, sort_keys=True),
    )
    return artifact.to_dict()


def artifacts_dir() -> Path:
    """Where exported artifacts are cached: ``profiles/cache/artifacts`` (machine-independent files,
    kept beside the per-machine result cache)."""
    return profiles_dir() / "cache" / "artifacts"


def _pool(result: ProfileResult, values: list[dict]) -> None:
    """Fill ``result`` from one or more measuring processes: samples pooled, memory from the first
    process, the busiest process's contention figure, and each process's medians kept."""
    result.ok = True
    result.prefill_ms = summarize([ms for v in values for ms in v["prefill_ms"]])
    result.decode_ms_per_token = summarize([ms for v in values for ms in v["decode_ms"]])
    s = result.settings
    if s.backend == "torch":
        prediction = predicted_memory(result.spec, s.prompt_len, s.batch, s.max_len, s.dtype)
    else:
        from lfm2_nas.runtimes import CACHE_DTYPES

        prediction = predicted_memory(result.spec, s.prompt_len, s.batch, s.max_len, "float32",
                                      cache_dtype=CACHE_DTYPES[s.backend],
                                      weights_bytes=result.environment.get("artifact_bytes"))
    result.memory = MemoryReport(**values[0]["memory"], **prediction)
    result.environment.update(values[0]["environment"])
    result.environment["other_cpu_cores"] = max(v["environment"]["other_cpu_cores"] for v in values)
    if len(values) > 1:
        result.environment["prefill_ms_process_medians"] = [summarize(v["prefill_ms"]).median for v in values]
        result.environment["decode_ms_process_medians"] = [summarize(v["decode_ms"]).median for v in values]
