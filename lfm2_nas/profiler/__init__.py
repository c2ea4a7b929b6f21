"""Hardware profiler: what a layout really costs on this CPU or GPU.

Public API (the search codes against these names)::

    from lfm2_nas.profiler import Workload, load_or_measure_hardware, profile_layout, LatencyPredictor

    hardware = load_or_measure_hardware("cpu")            # profiles/<slug>-<date>.json, reused
    result = profile_layout("lfm2-350m", Workload(prompt_len=128, context_depth=512, threads=2))
    result.ok, result.prefill_ms.median, result.decode_ms_per_token.median, result.peak_bytes
    row = result.to_row()                                 # tidy dict: spec, workload, environment, stats

Every measurement runs in a freshly spawned process (thread count set before torch starts); the
calling process does no torch work. Names are loaded on first use.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "Stats": "lfm2_nas.profiler.stats",
    "summarize": "lfm2_nas.profiler.stats",
    "TimingConfig": "lfm2_nas.profiler.timing",
    "Workload": "lfm2_nas.profiler.workload",
    "HardwareProfile": "lfm2_nas.profiler.hardware",
    "DeviceError": "lfm2_nas.profiler.hardware",
    "load_or_measure_hardware": "lfm2_nas.profiler.hardware",
    "MemoryReport": "lfm2_nas.profiler.memory",
    "ProfileResult": "lfm2_nas.profiler.result",
    "ResultStore": "lfm2_nas.profiler.store",
    "UnsupportedDtypeError": "lfm2_nas.profiler.layout",
    "profile_layout": "lfm2_nas.profiler.layout",
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
