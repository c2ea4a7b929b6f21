"""Benchmark: one decode step's attention op alone, ExecuTorch's ``llama::custom_sdpa`` against the
SDPA call our torch model makes, over the same cached positions.

    flock -x /tmp/lfm2-cpu.lock python benchmarks/decode_attention_ops.py --depths 0 4096 16384

Why: at long contexts an ExecuTorch program of LFM2-350M decodes slower than PyTorch eager fp32 does
(``experiments/backends/``), with the same fp32 K/V cache. This times the attention op by itself for
one query token at ``depth`` cached positions (LFM2-350M's shape by default: 16 query heads, 8 KV
heads, head dim 64, fp32): ``torch.ops.llama.custom_sdpa`` (the op in our ``.pte`` programs, run
here through the kernel ``executorch.extension.llm.custom_ops`` registers for eager use) on a cache of
``depth + 3`` positions as our programs hold, and :func:`lfm2_nas.model._sdpa_gqa` on the
``depth + 1`` valid positions (the torch backend's path: one query per head, each group's queries
folded onto its KV head). Median of ``--calls`` calls after warm-up, ``--threads`` intra-op threads.
Prints one JSON line per depth and op, then the summary (last line); ``--out`` keeps it as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from lfm2_nas.io import atomic_write_text
from lfm2_nas.model import _sdpa_gqa


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
        k_cache, v_cache = torch.randn(1, depth + 3, kvh, d), torch.randn(1, depth + 3, kvh, d)
        k, v = k_cache[:, :valid].transpose(1, 2).contiguous(), v_cache[:, :valid].transpose(1, 2).contiguous()
        ours = torch.ops.llama.custom_sdpa(q, k_cache, v_cache, depth, None, 0, True)
        eager = _sdpa_gqa(q.transpose(1, 2), k, v, None, False).transpose(1, 2)
        max_abs_diff = (ours - eager).abs().max().item()
        ops = {
            "llama.custom_sdpa": lambda: torch.ops.llama.custom_sdpa(q, k_cache, v_cache, depth, None, 0, True),
            "torch_sdpa_gqa_folded": lambda: _sdpa_gqa(q.transpose(1, 2), k, v, None, False),
        }
        for name, call in ops.items():
            row = {"depth": depth, "op": name, "threads": args.threads, "calls": args.calls,
                   "call_ms_median": _median_ms(call, args.calls), "max_abs_diff_between_ops": max_abs_diff}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"benchmark": "decode_attention_ops", "heads": h, "kv_heads": kvh, "head_dim": d,
               "threads": args.threads, "torch": torch.__version__, "rows": rows,
               "custom_over_torch": {str(dp): _ratio(rows, dp) for dp in args.depths}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


def _median_ms(call, calls: int) -> float:
    """Median wall time of ``call`` in ms over ``calls`` calls, after ``max(3, calls // 10)`` untimed ones."""
    with torch.inference_mode():
        for _ in range(max(3, calls // 10)):
            call()
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _ratio(rows: list[dict], depth: int) -> float:
    by_op = {r["op"]: r["call_ms_median"] for r in rows if r["depth"] == depth}
    return by_op["llama.custom_sdpa"] / by_op["torch_sdpa_gqa_folded"]


if __name__ == "__main__":
    main()
