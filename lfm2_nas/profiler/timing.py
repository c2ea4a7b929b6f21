"""Timing loop: warm up with the same shapes, then sample until BOTH a minimum count and a minimum
duration are reached.

On CPU each sample is ``time.perf_counter`` around the call. On CUDA each sample is a pair of CUDA
events around the call, with the device synchronised before the start event (so earlier queued work
is not billed to it) and after the end event (so the sample is complete before the next setup).
Setup work (rewinding a cache) runs before each sample and is never timed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class TimingConfig:
    """How long to measure each phase.

    ``warmup`` untimed calls with the same shapes first; then samples until at least ``min_count``
    samples were taken AND at least ``min_duration_s`` seconds passed, whichever comes last.
    """

    warmup: int = 2
    min_count: int = 10
    min_duration_s: float = 1.0

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        if self.min_duration_s < 0:
            raise ValueError(f"min_duration_s must be >= 0, got {self.min_duration_s}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_ms(
    fn: Callable[[], object],
    config: TimingConfig,
    setup: Callable[[], object] | None = None,
    device: str = "cpu",
) -> list[float]:
    """Milliseconds of each timed call of ``fn`` (``setup`` runs untimed before every call, warmup included)."""
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
