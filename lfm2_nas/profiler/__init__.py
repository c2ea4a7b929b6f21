"""Hardware profiler: what a layout really costs on this CPU or GPU.

Public API (the search codes against these names)::

    from lfm2_nas.profiler import Settings, load_or_measure_hardware, profile_layout, LatencyPredictor

    hardware = load_or_measure_hardware("cpu")            # profiles/<slug>-<date>.json, reused
    result = profile_layout("lfm2-350m", Settings(prompt_len=128, context_depth=512, threads=2))
    result = profile_layout("lfm2-350m", Settings(threads=2, backend="llamacpp", quant="q4_0"))
    result.ok, result.prefill_ms.median, result.decode_ms_per_token.median, result.peak_bytes
    row = result.to_row()                                 # tidy dict: spec, workload, environment, stats

Every measurement runs in a freshly spawned process (thread count set before torch starts); the
calling process does no torch work. ``Settings.backend`` picks the runtime: ``torch`` (eager, the
default), ``executorch`` or ``llamacpp`` (an exported artifact, see :mod:`lfm2_nas.runtimes`). Names are loaded on first use.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "Stats": "lfm2_nas.profiler.stats",
    "summarize": "lfm2_nas.profiler.stats",
    "Settings": "lfm2_nas.profiler.settings",
    "SettingsError": "lfm2_nas.profiler.settings",
    "read_settings": "lfm2_nas.profiler.settings",
    "HardwareProfile": "lfm2_nas.profiler.hardware",
    "DeviceError": "lfm2_nas.profiler.hardware",
    "load_or_measure_hardware": "lfm2_nas.profiler.hardware",
    "MemoryReport": "lfm2_nas.profiler.memory",
    "ProfileResult": "lfm2_nas.profiler.result",
    "ProfileStore": "lfm2_nas.profiler.store",
    "UnsupportedDtypeError": "lfm2_nas.profiler.profile",
    "profile_layout": "lfm2_nas.profiler.profile",
    "SweepPlan": "lfm2_nas.profiler.sweep",
    "load_sweep": "lfm2_nas.profiler.sweep",
    "run_sweep": "lfm2_nas.profiler.sweep",
    "LatencyPredictor": "lfm2_nas.profiler.predictor",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lfm2_nas.profiler' has no attribute {name!r}")
