"""How much CPU OTHER processes used while we measured: the shared-machine check behind ``busy`` rows.

Machine-wide busy CPU time (``/proc/stat`` via psutil; hypervisor steal counted as busy, guest time
not counted twice) minus this process's own CPU time (every thread), per second of wall time.
0 on a quiet machine; 1 means another process kept a whole core busy the whole time.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


def _machine_busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _own_cpu_s(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    if children:  # finished (waited-for) child processes: the measuring child of a parent-side meter
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += usage.ru_utime + usage.ru_stime
    return total


class OtherCpuMeter:
    """Started on creation; :meth:`other_cores` reads the average since then. With ``children``, the
    CPU time of this process's finished children counts as its own (read it after they exit)."""

    def __init__(self, children: bool = False) -> None:
        self._children = children
        self._start = (time.perf_counter(), _machine_busy_s(), _own_cpu_s(children))

    def other_cores(self) -> float:
        now = (time.perf_counter(), _machine_busy_s(), _own_cpu_s(self._children))
        wall, busy, own = (a - b for a, b in zip(now, self._start))
        return max(busy - own, 0.0) / wall if wall > 0 else 0.0


#: Longest :func:`wait_for_quiet` waits for other processes to calm down before measuring anyway
#: (a busy result is then flagged, and the search retries or fails it with the reason).
QUIET_WAIT_S = 60.0
#: Length of each look at the machine while waiting.
QUIET_WINDOW_S = 1.0


@dataclass(frozen=True)
class QuietWait:
    """What :func:`wait_for_quiet` saw: whether the machine became quiet, after how long, and the
    other processes' CPU use (cores) in the last window looked at."""

    quiet: bool
    waited_s: float
    other_cores: float


def wait_for_quiet(
    threshold_cores: float,
    max_wait_s: float | None = None,
    window_s: float = QUIET_WINDOW_S,
    sample: Callable[[float], float] | None = None,
) -> QuietWait:
    """Wait (at most ``max_wait_s``, default :data:`QUIET_WAIT_S`) until other processes use at most
    ``threshold_cores`` CPU cores over a ``window_s`` window. ``sample(window_s)`` measures one window
    (default: sleep it out under an :class:`OtherCpuMeter`). An infinite threshold returns at once."""
    max_wait_s = QUIET_WAIT_S if max_wait_s is None else max_wait_s
    if math.isinf(threshold_cores):
        return QuietWait(True, 0.0, 0.0)
    sample = sample or _sample_window
    start = time.perf_counter()
    other = sample(window_s)
    warned = False
    while other > threshold_cores:
        waited = time.perf_counter() - start
        if waited >= max_wait_s:
            return QuietWait(False, round(waited, 1), other)
        if not warned:
            warned = True
            log.warning("machine busy (other processes use %.2f CPU cores); waiting up to %.0f s for quiet",
                        other, max_wait_s)
        other = sample(window_s)
    return QuietWait(True, round(time.perf_counter() - start, 1), other)


def _sample_window(window_s: float) -> float:
    meter = OtherCpuMeter()
    time.sleep(window_s)
    return meter.other_cores()
