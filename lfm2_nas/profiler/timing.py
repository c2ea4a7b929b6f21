"""Timing loop: warm up with the same shapes, then sample until BOTH a minimum count and a minimum
duration are reached (the counts come from :class:`lfm2_nas.profiler.settings.Settings`).

Several independent measuring processes (``Settings.processes``) have their samples pooled, as
pyperf does: each process gets its own memory placement and its own stretch of time; on a shared VM
whose memory-bound speed drifts by 10-20% over seconds, spreading a figure over several processes is
what makes it repeatable.

On CPU each sample is ``time.perf_counter`` around the call. On CUDA each sample is a pair of CUDA
events around the call, with the device synchronised before the start event (so earlier queued work
is not billed to it) and after the end event (so the sample is complete before the next setup).
Setup work (rewinding a cache) runs before each sample and is never timed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from lfm2_nas.profiler.settings import Settings


def sample_ms(
    fn: Callable[[], object],
    config: Settings,
    setup: Callable[[], object] | None = None,
    device: str = "cpu",
) -> list[float]:
    """Milliseconds of each timed call of ``fn`` (``setup`` runs untimed before every call, warmup
    included): ``config.warmup`` untimed calls with the same shapes, then samples until at least
    ``config.min_count`` samples were taken AND at least ``config.min_duration_s`` seconds passed."""
    timed = _cuda_timed if device.startswith("cuda") else _cpu_timed
    for _ in range(config.warmup):
        if setup is not None:
            setup()
        timed(fn)
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < config.min_count or time.perf_counter() - start < config.min_duration_s:
        if setup is not None:
            setup()
        samples.append(timed(fn))
    return samples


def wall_ms_per_call(fn: Callable[[], object], calls: int, device: str = "cpu") -> float:
    """Host-clock milliseconds per call over ``calls`` back-to-back calls, the device synchronised
    before and after: the independent reference that CUDA-event samples are checked against."""
    sync = _synchronize(device)
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - t0) * 1e3 / calls


def _synchronize(device: str) -> Callable[[], None]:
    if not device.startswith("cuda"):
        return lambda: None
    import torch

    return torch.cuda.synchronize


def _cpu_timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _cuda_timed(fn: Callable[[], object]) -> float:
    import torch

    begin = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    begin.record()
    fn()
    end.record()
    end.synchronize()
    return float(begin.elapsed_time(end))
