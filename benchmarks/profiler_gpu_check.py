"""GPU check of the profiler (finishes in well under 3 minutes on an H100):

1. CUDA-event timing agrees with the host clock (synchronised) on known GPU work;
2. a known 1 GiB allocation in a measuring child shows in its peak allocated memory;
3. a hardware profile of the GPU (bandwidth, fp32/bf16/fp16 matmul);
4. a profile of ``lfm2-1.2b`` in bfloat16: prefill 512 tokens, decode at depth 1024, batch 1.

    python benchmarks/profiler_gpu_check.py --out-dir experiments/profiler/gpu

Prints one JSON object per check, then the summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lfm2_nas.profiler import Settings, load_or_measure_hardware, profile_layout
from lfm2_nas.profiler.runner import run_in_child

GIB = 2**30


def allocate(nbytes: int) -> dict:
    """Child target: peak allocated growth while a tensor of ``nbytes`` exists."""
    import torch

    from lfm2_nas.profiler.memory import MemoryProbe

    probe = MemoryProbe("cuda")
    _, growth, _ = probe.phase(lambda: torch.ones(nbytes // 4, device="cuda").sum().item())
    return {"growth_bytes": growth, "reserved_peak_bytes": probe.peak_reserved_bytes()}


def timing_check() -> dict:
    import torch

    from lfm2_nas.profiler.stats import summarize
    from lfm2_nas.profiler.timing import sample_ms, wall_ms_per_call

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)

    def work() -> None:
        for _ in range(10):
            a @ a

    work()
    host_ms = wall_ms_per_call(work, 10, device="cuda")
    events = summarize(sample_ms(work, Settings(warmup=2, min_count=10, min_duration_s=0.5), device="cuda"))
    return {"check": "cuda_timing", "host_ms": host_ms, "event_ms_median": events.median,
            "relative_difference": events.median / host_ms - 1, "ok": abs(events.median / host_ms - 1) <= 0.10}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("experiments/profiler/gpu"))
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    checks = []

    checks.append(timing_check())
    print(json.dumps(checks[-1]), flush=True)

    memory = run_in_child("profiler_gpu_check:allocate", {"nbytes": GIB}, threads=1)
    growth = memory.value["growth_bytes"] if memory.ok else None
    checks.append({"check": "gpu_memory", "allocated_bytes": GIB, "measured_growth_bytes": growth,
                   "reason": memory.reason, "ok": bool(memory.ok and abs(growth / GIB - 1) <= 0.01)})
    print(json.dumps(checks[-1]), flush=True)

    hardware = load_or_measure_hardware("cuda", remeasure=True, directory=args.out_dir)
    checks.append({"check": "hardware", **hardware.to_dict(), "ok": "bfloat16" in hardware.native_dtypes})
    print(json.dumps(checks[-1]), flush=True)

    settings = Settings(512, 1024, dtype="bfloat16", device="cuda", warmup=3, min_count=20, min_duration_s=1.0)
    result = profile_layout("lfm2-1.2b", settings, hardware, store=args.out_dir / "rows.jsonl", use_cache=False)
    row = {k: v for k, v in result.to_row().items() if not k.endswith("_samples")}
    checks.append({"check": "lfm2-1.2b-bf16", **row, "ok": result.ok})
    print(json.dumps(checks[-1]), flush=True)

    summary = {
        "benchmark": "profiler_gpu_check",
        "gpu": hardware.gpu_name,
        "all_ok": all(c["ok"] for c in checks),
        "cuda_timing_relative_difference": checks[0]["relative_difference"],
        "gpu_memory_growth_bytes": growth,
        "read_bandwidth_bytes_per_s": hardware.read_bandwidth_bytes_per_s,
        "matmul_flops_per_s": hardware.matmul_flops_per_s,
        "lfm2_1.2b_bf16_prefill512_ms": result.ttft_ms,
        "lfm2_1.2b_bf16_decode_ms_per_token_depth1024": result.decode_ms_per_token.median if result.ok else None,
        "lfm2_1.2b_bf16_peak_bytes": result.peak_bytes,
        "lfm2_1.2b_bf16_decode_bandwidth_fraction": row.get("decode_bandwidth_fraction"),
        "failure": result.reason,
        "wall_s": time.perf_counter() - started,
    }
    (args.out_dir / "summary.json").write_text(json.dumps({"summary": summary, "checks": checks}, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
