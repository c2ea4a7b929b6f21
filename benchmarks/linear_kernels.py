"""Which CPU matmul the model should use: ``F.linear`` (MKL) against oneDNN's linear, plain or with
the weight pre-packed, at the shapes of a layout's projections and the row counts of decode (1)
and prefill (128, 512).

The model no longer follows a rule drawn from this script: its kernel table is measured per machine
by the hardware profile (``measure_kernel_choice`` in ``lfm2_nas/profiler/hardware.py``, one
representative shape per size bucket). This script is the detailed view, per real projection shape,
to check that table against.

    flock -x /tmp/lfm2-cpu.lock python benchmarks/linear_kernels.py [--variant lfm2-350m] [--out DIR]

At one row (decode) each weight shape is timed over a pool of distinct matrices totalling
``--pool-bytes`` (far more than the last-level cache), so every call reads its weight from memory
as in a real decode step; at more rows (prefill, compute-bound) two matrices suffice. The LM head
is timed at one row only: a prefill computes the last position's logits alone. The kernels are
interleaved within each repeat; the median over repeats is kept. Prints one JSON line per
(shape, rows) and a summary last: a whole forward's worth of projections per kernel.
"""

from __future__ import annotations

import argparse
import os
import sys

if __name__ == "__main__":
    ARGS = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ARGS.add_argument("--variant", default="lfm2-350m")
    ARGS.add_argument("--threads", type=int, default=2, help="intra-op threads (set before torch loads)")
    ARGS.add_argument("--rows", type=int, nargs="+", default=[1, 128, 512], help="activation rows (tokens)")
    ARGS.add_argument("--repeats", type=int, default=5)
    ARGS.add_argument("--pool-bytes", type=int, default=256 << 20)
    ARGS.add_argument("--out", default=None, help="folder for linear_kernels.jsonl")
    ARGS = ARGS.parse_args()
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)

import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's lfm2_nas

from lfm2_nas.io import atomic_write_text  # noqa: E402
from lfm2_nas.model import LFM2Model  # noqa: E402
from lfm2_nas.registry import get_spec  # noqa: E402


def onednn(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


KERNELS = {
    "F.linear": lambda x, w, packed: F.linear(x, w),
    "onednn": lambda x, w, packed: onednn(x, w),
    "onednn_packed": lambda x, w, packed: onednn(x, packed),
}


def projection_shapes(variant: str) -> Counter:
    """``(out, in)`` of every projection in one forward pass (LM head included), with counts."""
    model = LFM2Model(get_spec(variant), device="meta")
    shapes = Counter(tuple(p.shape) for name, p in model.named_parameters()
                     if p.dim() == 2 and "embed_tokens" not in name)
    shapes[tuple(model.head_weight.shape)] += int(model.lm_head is None)
    return shapes


def time_shape(shape: tuple[int, int], rows: list[int], repeats: int, pool_bytes: int) -> dict[int, dict[str, float]]:
    """Median seconds per call of each kernel, per row count, for weights of ``shape``."""
    pool = max(2, pool_bytes // (shape[0] * shape[1] * 4))
    weights = [torch.randn(shape) * 0.02 for _ in range(pool)]
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, 1) for w in weights]
    out: dict[int, dict[str, float]] = {}
    with torch.inference_mode():
        for m in rows:
            x = torch.randn(1, m, shape[1])
            count = pool if m == 1 else 2
            times: dict[str, list[float]] = {name: [] for name in KERNELS}
            for repeat in range(repeats + 1):  # repeat 0 warms up (primitive creation, first touch)
                for name, kernel in KERNELS.items():
                    start = time.perf_counter()
                    for w, p in zip(weights[:count], packed[:count]):
                        kernel(x, w, p)
                    if repeat:
                        times[name].append((time.perf_counter() - start) / count)
            out[m] = {name: statistics.median(t) for name, t in times.items()}
    return out


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    records = []
    totals = {m: dict.fromkeys(KERNELS, 0.0) for m in args.rows}
    head = (get_spec(args.variant).vocab_size, get_spec(args.variant).hidden_size)
    for shape, calls in projection_shapes(args.variant).items():
        rows = [1] if shape == head else args.rows
        for m, seconds in time_shape(shape, rows, args.repeats, args.pool_bytes).items():
            weight_bytes = shape[0] * shape[1] * 4
            record = {"kind": "shape", "out": shape[0], "in": shape[1], "rows": m, "calls_per_forward": calls,
                      **{f"{name}_ms": s * 1e3 for name, s in seconds.items()},
                      **{f"{name}_weight_GBps": weight_bytes / s / 1e9 for name, s in seconds.items()}}
            records.append(record)
            print(json.dumps(record), flush=True)
            for total_rows in args.rows if shape == head else [m]:  # the head runs on one row in all
                for name, s in seconds.items():
                    totals[total_rows][name] += calls * s
    summary = {"kind": "summary", "variant": args.variant, "threads": args.threads, "torch": torch.__version__,
               "projections_ms_per_forward": {str(m): {k: v * 1e3 for k, v in t.items()} for m, t in totals.items()},
               "fastest": {str(m): min(t, key=t.__getitem__) for m, t in totals.items()}}
    if args.out:
        lines = "".join(json.dumps(r) + "\n" for r in records + [summary])
        atomic_write_text(Path(args.out) / "linear_kernels.jsonl", lines)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(ARGS)
