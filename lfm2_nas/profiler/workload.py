"""What to measure: prompt length, context depth, batch, dtype, device and threads."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from lfm2_nas.cost import canonical_dtype

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")

#: How the decode phase's cache is filled to ``context_depth`` before its steps are timed.
CACHE_FILLS = ("synthetic", "prefill")


def check_device(device: str) -> str:
    """``device`` if it names a device the profiler knows (``cpu``, ``cuda``, ``cuda:N``); else ValueError."""
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ValueError(f"unknown device {device!r}: use cpu, cuda or cuda:N")
    return device


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Workload:
    """One measurement setup.

    * prefill: a prompt of ``prompt_len`` tokens per sequence, last-position logits only;
    * decode: one step per sequence with ``context_depth`` tokens already in the cache;
    * ``batch`` sequences at once, weights and cache at ``dtype`` on ``device``;
    * ``threads``: CPU threads of the measuring process (None: every CPU this process may use).
    """

    prompt_len: int
    context_depth: int
    batch: int = 1
    dtype: str = "float32"
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        for name, minimum in (("prompt_len", 1), ("context_depth", 0), ("batch", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {self.threads!r}")
        object.__setattr__(self, "dtype", canonical_dtype(self.dtype))
        check_device(self.device)

    @property
    def max_len(self) -> int:
        """Cache length that holds both the prompt and a decode step at ``context_depth``."""
        return max(self.prompt_len, self.context_depth + 1)

    def resolved(self) -> Workload:
        """The same workload with ``threads`` made explicit (what results are keyed and recorded by)."""
        return self if self.threads is not None else replace(self, threads=available_cpus())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Workload:
        return cls(**{k: data[k] for k in ("prompt_len", "context_depth", "batch", "dtype", "device", "threads")})
