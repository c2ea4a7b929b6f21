"""How much CPU OTHER processes used while we measured: the shared-machine check behind ``busy`` rows.

Machine-wide busy CPU time (``/proc/stat`` via psutil; hypervisor steal counted as busy, guest time
not counted twice) minus this process's own CPU time (every thread), per second of wall time.
0 on a quiet machine; 1 means another process kept a whole core busy the whole time.
"""

from __future__ import annotations

import resource
import time


def _machine_busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class OtherCpuMeter:
    """Started on creation; :meth:`other_cores` reads the average since then."""

    def __init__(self) -> None:
        self._start = (time.perf_counter(), _machine_busy_s(), _own_cpu_s())

    def other_cores(self) -> float:
        wall, busy, own = (now - then for now, then in zip((time.perf_counter(), _machine_busy_s(), _own_cpu_s()), self._start))
        return max(busy - own, 0.0) / wall if wall > 0 else 0.0
