"""Benchmark: one decode step's attention op alone, ExecuTorch's ``llama::custom_sdpa`` against the
SDPA call our torch model makes, over the same cached positions.

    flock -x /tmp/lfm2-cpu.lock python benchmarks/decode_attention_ops.py --depths 0 4096 16384

Why: at long contexts an ExecuTorch program of LFM2-350M decodes slower than PyTorch eager fp32 does
(``experiments/backends/``), with the same fp32 K/V cache. This times the attention op by itself for
one query token at ``depth`` cached positions (LFM2-350M's shape by default: 16 query heads, 8 KV
heads, head dim 64, fp32): ``torch.ops.llama.custom_sdpa`` (the op in our ``.pte`` programs, run
here through the kernel ``executorch.extension.llm.custom_ops`` registers for eager use) on a cache of
``depth + 3`` positions as our programs hold, and :func:`lfm2_nas.model._sdpa_gqa` on the
``depth + 1`` valid positions as a prefix view of a ``(1, kv_heads, depth + 3, d)`` buffer, as
:class:`lfm2_nas.cache.HybridCache` hands them over (the torch backend's path: one query per head,
each group's queries folded onto its KV head). Both ops take turns call by call: untimed warm-up turns on the same
tensors, then ``--calls`` calls of each timed one by one, their median and minimum
(:func:`lfm2_nas.profiler.summarize`); ``--threads`` intra-op threads.
Prints one JSON line per depth and op, then the summary (last line); ``--out`` keeps it as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lfm2_nas.io import atomic_write_text
from lfm2_nas.model import _sdpa_gqa
from lfm2_nas.profiler import load_or_measure_hardware, summarize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[0, 4096, 16384])
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("experiments") / "backends" / "decode-attention-ops.json")
    args = parser.parse_args()
    if args.heads % args.kv_heads:
        parser.error("--heads must be a multiple of --kv-heads")
    try:
        from executorch.extension.llm.custom_ops import custom_ops  # noqa: F401  registers llama::custom_sdpa
    except ImportError:
        raise SystemExit("error: ExecuTorch is not installed: pip install -e '.[executorch]'") from None
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, kvh, d = args.heads, args.kv_heads, args.head_dim
    rows = []
    for depth in args.depths:
        valid = depth + 1  # the cached positions plus the step's own token
        q = torch.randn(1, 1, h, d)
        k_cache, v_cache = torch.randn(1, depth + 3, kvh, d), torch.randn(1, depth + 3, kvh, d)  # ExecuTorch's layout
        k_buffer, v_buffer = k_cache.transpose(1, 2).contiguous(), v_cache.transpose(1, 2).contiguous()  # ours
        k, v = k_buffer[:, :, :valid], v_buffer[:, :, :valid]
        executorch_out = torch.ops.llama.custom_sdpa(q, k_cache, v_cache, depth, None, 0, True)
        torch_out = _sdpa_gqa(q.transpose(1, 2), k, v, None, False).transpose(1, 2)
        max_abs_diff = (executorch_out - torch_out).abs().max().item()
        ops = {
            "llama.custom_sdpa": lambda: torch.ops.llama.custom_sdpa(q, k_cache, v_cache, depth, None, 0, True),
            "torch_sdpa_gqa_folded": lambda: _sdpa_gqa(q.transpose(1, 2), k, v, None, False),
        }
        times = _call_ms(ops, args.calls)
        for name in ops:
            stats = summarize(times[name])
            row = {"depth": depth, "op": name, "threads": args.threads, "calls": args.calls,
                   "call_ms_median": stats.median, "call_ms_min": stats.min, "max_abs_diff_between_ops": max_abs_diff}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"benchmark": "decode_attention_ops", "hardware": load_or_measure_hardware("cpu").label, "heads": h, "kv_heads": kvh, "head_dim": d,
               "threads": args.threads, "torch": torch.__version__, "rows": rows,
               "custom_over_torch": {str(dp): _ratio(rows, dp) for dp in args.depths}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


def _call_ms(ops: dict[str, Callable[[], Any]], calls: int) -> dict[str, list[float]]:
    """Wall time in ms of each of ``calls`` calls of every op, the ops taking turns call by call (so a
    slow stretch of the machine hits both alike), after ``max(3, calls // 10)`` untimed turns."""
    times: dict[str, list[float]] = {name: [] for name in ops}
    with torch.inference_mode():
        for turn in range(max(3, calls // 10) + calls):
            for name, call in ops.items():
                start = time.perf_counter()
                call()
                if turn >= max(3, calls // 10):
                    times[name].append((time.perf_counter() - start) * 1e3)
    return times


def _ratio(rows: list[dict], depth: int) -> float:
    by_op = {r["op"]: r["call_ms_median"] for r in rows if r["depth"] == depth}
    return by_op["llama.custom_sdpa"] / by_op["torch_sdpa_gqa_folded"]


if __name__ == "__main__":
    main()
