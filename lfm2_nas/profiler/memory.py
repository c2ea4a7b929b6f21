"""Peak memory of a measuring process, split into weights / cache / activations, next to a prediction.

CPU: the OS's resident-set high-water mark ``VmHWM`` from ``/proc/self/status``. Writing ``5`` to
``/proc/self/clear_refs`` resets it, so each phase gets its own peak. Before each reading freed heap
memory is handed back to the OS (``malloc_trim``), otherwise memory that glibc keeps after one phase
would hide the next phase's growth. Where ``/proc`` is missing, ``ru_maxrss`` gives one peak for the
whole process (phases then have no separate activation figure).

GPU: ``torch.cuda.max_memory_allocated`` (tensors) and ``max_memory_reserved`` (the caching
allocator's pool), reset per phase with ``torch.cuda.reset_peak_memory_stats``.

Predictions: weights and cache from :mod:`lfm2_nas.cost`; activations from the first-order estimate
:func:`activation_bytes_estimate` (the cost model has none). Every row reports the error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, TypeVar

from lfm2_nas import cost
from lfm2_nas.spec import ModelSpec

T = TypeVar("T")

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def read_status_bytes(key: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` ... of this process in bytes (None without ``/proc``)."""
    try:
        with open(_STATUS) as f:
            match = re.search(rf"^{key}:\s+(\d+) kB", f.read(), flags=re.M)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


class MemoryProbe:
    """Current and peak memory of THIS process on ``device`` (used inside a measuring child)."""

    def __init__(self, device: str = "cpu") -> None:
        self.cuda = device.startswith("cuda")
        self._libc = None if self.cuda else _libc()
        self.resettable = self.cuda or self._try_reset()

    @property
    def method(self) -> str:
        """How peaks are read (recorded in every row)."""
        if self.cuda:
            return "torch.cuda.max_memory_allocated"
        return "VmHWM reset per phase" if self.resettable else "ru_maxrss (whole process)"

    def current_bytes(self) -> int:
        """Bytes in use now: resident set on CPU, allocated tensors on GPU."""
        if self.cuda:
            import torch

            return int(torch.cuda.memory_allocated())
        rss = read_status_bytes("VmRSS")
        return rss if rss is not None else self.peak_bytes()

    def settle(self) -> int:
        """Free what can be freed (garbage, glibc's retained heap, queued GPU work); return :meth:`current_bytes`."""
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        elif self._libc is not None:
            self._libc.malloc_trim(0)
        return self.current_bytes()

    def reset_peak(self) -> None:
        """Start a new high-water mark (a no-op where the OS offers no reset)."""
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        elif self.resettable:
            self._try_reset()

    def peak_bytes(self) -> int:
        """High-water mark since the last :meth:`reset_peak` (CPU without reset: since start)."""
        if self.cuda:
            import torch

            return int(torch.cuda.max_memory_allocated())
        hwm = read_status_bytes("VmHWM")
        if hwm is not None:
            return hwm
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    def peak_reserved_bytes(self) -> int | None:
        """GPU only: peak of the caching allocator's reserved pool."""
        if not self.cuda:
            return None
        import torch

        return int(torch.cuda.max_memory_reserved())

    def phase(self, run: Callable[[], T]) -> tuple[T, int, int]:
        """Run ``run`` as one phase: ``(its result, peak growth above the settled level, absolute peak)``."""
        level = self.settle()
        self.reset_peak()
        out = run()
        peak = self.peak_bytes()
        return out, max(peak - level, 0), peak

    @staticmethod
    def _try_reset() -> bool:
        try:
            with open(_CLEAR_REFS, "w") as f:
                f.write("5")
        except OSError:
            return False
        return True


def activation_bytes_estimate(spec: ModelSpec, tokens: int, batch: int, dtype: object) -> int:
    """First-order estimate of the transient memory of one forward over ``tokens`` tokens per sequence.

    The widest block's working set per token: the SwiGLU FFN holds ``w1 x``, ``w3 x`` and their
    product (``3F``); the conv block holds ``in_proj``'s ``3h`` output and ~5 more ``h``-wide
    temporaries (``8h``); about ``4h`` more for the residual stream, norm and RoPE temporaries; plus
    one row of logits per sequence. Ignores allocator slack and library scratch space (whose size the
    measured-vs-predicted error in every row shows).
    """
    b = cost.dtype_bytes(dtype)
    h, f = spec.hidden_size, spec.ffn_dim
    return batch * tokens * b * (max(3 * f, 8 * h) + 4 * h) + batch * spec.vocab_size * b


@dataclass(frozen=True)
class MemoryReport:
    """Measured memory of one profile (bytes) and its prediction.

    ``baseline_bytes``: the process after start-up, before the model was built. ``weights_bytes`` and
    ``cache_bytes``: growth when the model, then the cache, were allocated. ``*_activation_bytes``:
    peak growth during each phase above the memory held before it. ``peak_bytes``: the process's
    highest mark above the baseline; ``process_peak_bytes``: the absolute high-water mark.
    """

    method: str
    baseline_bytes: int
    weights_bytes: int
    cache_bytes: int
    prefill_activation_bytes: int | None
    decode_activation_bytes: int | None
    peak_bytes: int
    process_peak_bytes: int
    reserved_peak_bytes: int | None
    weights_bytes_pred: int
    cache_bytes_pred: int
    prefill_activation_bytes_pred: int
    decode_activation_bytes_pred: int

    @property
    def peak_bytes_pred(self) -> int:
        """Predicted peak above baseline: weights + cache + the larger phase's activations."""
        activations = max(self.prefill_activation_bytes_pred, self.decode_activation_bytes_pred)
        return self.weights_bytes_pred + self.cache_bytes_pred + activations

    @property
    def peak_bytes_error(self) -> float:
        """Relative prediction error ``(predicted - measured) / measured``."""
        return (self.peak_bytes_pred - self.peak_bytes) / self.peak_bytes if self.peak_bytes else float("nan")

    def to_flat(self) -> dict[str, Any]:
        out = asdict(self)
        out["memory_method"] = out.pop("method")
        out["peak_bytes_pred"] = self.peak_bytes_pred
        out["peak_bytes_error"] = self.peak_bytes_error
        return out

    @classmethod
    def from_flat(cls, row: dict[str, Any]) -> MemoryReport | None:
        if row.get("memory_method") is None:
            return None
        values = {f.name: row.get(f.name) for f in fields(cls) if f.name != "method"}
        return cls(method=row["memory_method"], **{k: _int_or_none(v) for k, v in values.items()})


def _int_or_none(value: Any) -> int | None:
    if value is None or value != value:  # None or NaN (pandas writes missing integers as NaN)
        return None
    return int(value)


def predicted_memory(spec: ModelSpec, prompt_len: int, batch: int, max_len: int, dtype: str,
                     cache_dtype: str | None = None, weights_bytes: int | None = None) -> dict[str, int]:
    """The ``*_pred`` fields of :class:`MemoryReport` for one workload: weights and cache from the cost
    model at ``dtype`` (the cache at ``cache_dtype`` when the runtime keeps it in another), or
    ``weights_bytes`` when given (a deployment runtime's artifact size: its weights as stored)."""
    return {
        "weights_bytes_pred": weights_bytes if weights_bytes is not None else cost.weight_bytes(spec, dtype),
        "cache_bytes_pred": cost.cache_bytes(spec, max_len, batch, cache_dtype or dtype),
        "prefill_activation_bytes_pred": activation_bytes_estimate(spec, prompt_len, batch, dtype),
        "decode_activation_bytes_pred": activation_bytes_estimate(spec, 1, batch, dtype),
    }
