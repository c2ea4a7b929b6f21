"""Which kernel computes ``x W^T``: candidates by name, and the active choice, made by measurement.

Two CPU kernels compute the model's projections: ``F.linear`` (MKL's GEMM, or oneDNN for bf16 where
torch routes it there) and oneDNN's inner product ``torch.ops.mkldnn._linear_pointwise`` (the op
inductor emits for CPU linears). Which is faster depends on the CPU, the dtype, the weight size and
whether the call is a matrix-vector product (decode, one row) or a GEMM (prefill, many rows): on an
AMD EPYC (Zen 4) VM oneDNN streamed decode weights markedly faster, on an Intel Sapphire Rapids VM
``F.linear`` was faster (issue 15). So no rule is hard-coded here: the choice is a table

    (phase, dtype, size bucket) -> kernel name      phase: "decode" (1 row) / "prefill" (> 1 row)

(a batched decode step, a few rows, counts as "prefill": the table's prefill entries are timed at 128
rows, so batch > 1 decode follows a GEMM's measurement, not its own.)

filled by timing every candidate on the machine itself (:func:`lfm2_nas.profiler.hardware.measure_kernel_choice`,
stored in the machine's hardware profile) and installed with :func:`set_choice` before a model runs
(the profiler's measuring child and ``benchmarks/decode_speed.py`` do this). Keys missing from the
table, and everything when no table is installed (tests, plain library use, a machine without a
saved profile), use ``F.linear``: the safe default, correct everywhere. Training (a gradient
needed), other devices and non-contiguous weights always use ``F.linear``.

This module imports only torch (no profiler): the model depends on it, the profiler fills it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

DEFAULT = "F.linear"
PHASES = ("decode", "prefill")


def _onednn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


#: Candidate kernels by name: ``(x, weight, bias) -> x W^T (+ b)``.
KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]] = {
    "F.linear": F.linear,
}
if torch.backends.mkldnn.is_available():
    KERNELS["onednn"] = _onednn

#: Upper bounds (weight elements, exclusive) of the size buckets; the last bucket is unbounded.
#: In fp32: < 1 MiB (proxy models), < 8 MiB (attention / conv projections), < 64 MiB (FFN), LM heads.
BUCKET_EDGES = (1 << 18, 1 << 21, 1 << 24)
BUCKETS = ("small", "medium", "large", "huge")
#: One ``(out, in)`` weight shape per bucket: what the measurement times as its representative.
BUCKET_SHAPES = {"small": (256, 512), "medium": (1024, 1024), "large": (4608, 1024), "huge": (16384, 1024)}

_choice: dict[tuple[str, str, str], str] = {}
_used: dict[tuple[str, str, str], str] = {}


def bucket(numel: int) -> str:
    """Size bucket of a weight with ``numel`` elements."""
    for edge, name in zip(BUCKET_EDGES, BUCKETS):
        if numel < edge:
            return name
    return BUCKETS[-1]


def phase(rows: int) -> str:
    """``"decode"`` for one activation row (a matrix-vector product), ``"prefill"`` for more (a GEMM)."""
    return "decode" if rows == 1 else "prefill"


def key_name(key: tuple[str, str, str]) -> str:
    """``"decode/float32/large"``: how a table key is written in JSON and in result rows."""
    return "/".join(key)


def parse_key(name: str) -> tuple[str, str, str]:
    """Inverse of :func:`key_name`; ValueError for a malformed key."""
    parts = tuple(name.split("/"))
    if len(parts) != 3 or parts[0] not in PHASES or parts[2] not in BUCKETS:
        raise ValueError(f"malformed kernel table key {name!r}: expected phase/dtype/bucket, e.g. decode/float32/large")
    return parts  # type: ignore[return-value]


#: Another kernel replaces :data:`DEFAULT` only when it is faster by more than this fraction: a
#: difference within timing noise keeps the safe default.
MARGIN = 0.03


def choose(timings: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """The table from measured times: for each key (``"phase/dtype/bucket"``) the kernel with the least
    seconds per call, except that :data:`DEFAULT` is kept unless the fastest beats it by more than
    :data:`MARGIN`. Kernels that did not run are absent from a key's timings; a key with none is left
    out (it falls back to :data:`DEFAULT`)."""
    table = {}
    for name, per_kernel in timings.items():
        parse_key(name)
        if not per_kernel:
            continue
        fastest = min(sorted(per_kernel), key=lambda k: (per_kernel[k], k != DEFAULT))
        if DEFAULT in per_kernel and per_kernel[fastest] >= per_kernel[DEFAULT] * (1 - MARGIN):
            fastest = DEFAULT
        table[name] = fastest
    return table


def set_choice(table: Mapping[str, str] | None) -> None:
    """Install a choice table (``{"phase/dtype/bucket": kernel}``); None or ``{}`` restores the default
    (``F.linear`` everywhere). Unknown kernel names raise ValueError (a table from a torch build without
    oneDNN, say): nothing is installed then."""
    parsed = {}
    for name, kernel in (table or {}).items():
        if kernel not in KERNELS:
            raise ValueError(f"kernel table names {kernel!r} for {name}, which this torch does not offer "
                             f"(known: {', '.join(KERNELS)})")
        parsed[parse_key(name)] = kernel
    _choice.clear()
    _choice.update(parsed)
    _used.clear()


def current_choice() -> dict[str, str]:
    """The installed table (``{}`` when the default is in force)."""
    return {key_name(k): v for k, v in _choice.items()}


def used() -> dict[str, str]:
    """Which kernel each ``phase/dtype/bucket`` that :func:`linear` met since the last :func:`set_choice`
    (or :func:`reset_used`) went to, default included: what a result row records."""
    return {key_name(k): v for k, v in sorted(_used.items())}


def reset_used() -> None:
    _used.clear()


def kernel_name(x: torch.Tensor, weight: torch.Tensor, track: bool = True) -> str:
    """The kernel :func:`linear` uses for these operands (without calling it); ``track=False`` leaves
    :func:`used` alone (an instrument's own products, not the model's)."""
    if x.device.type != "cpu" or not weight.is_contiguous() or x.dtype != weight.dtype or (
        torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    ):
        return DEFAULT
    rows = x.numel() // x.shape[-1] if x.dim() else 1
    key = (phase(rows), str(weight.dtype).removeprefix("torch."), bucket(weight.numel()))
    name = _choice.get(key, DEFAULT)
    if track:
        _used[key] = name
    return name


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x W^T (+ b)`` by the kernel the installed table names for these operands (``F.linear`` when none)."""
    return KERNELS[kernel_name(x, weight)](x, weight, bias)


def runs(fn: Callable[[], Any]) -> bool:
    """Whether a kernel runs at all here (oneDNN has no bf16 inner product on CPUs without AVX-512)."""
    try:
        fn()
    except RuntimeError:
        return False
    return True


def describe(table: Mapping[str, str]) -> str:
    """One line for a table: ``"decode/float32/large=onednn; ..."`` (``"default"`` when empty)."""
    return "; ".join(f"{k}={v}" for k, v in sorted(table.items())) or "default"


def keys_for(dtypes: Iterable[str]) -> list[str]:
    """Every table key for ``dtypes``, decode keys first."""
    return [key_name((p, d, b)) for p in PHASES for d in dtypes for b in BUCKETS]
