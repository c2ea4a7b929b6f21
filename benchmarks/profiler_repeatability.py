"""Repeatability of the profiler: coefficient of variation of decode ms/token over repeated profiles.

Each repeat is a full, uncached ``profile_layout`` in its own fresh process (model built again,
cache filled again), so the spread covers everything that differs between two runs of the tool.
Target on a quiet machine: CV <= 3% (run under ``flock -x /tmp/lfm2-cpu.lock`` on the shared box).

    flock -x /tmp/lfm2-cpu.lock python benchmarks/profiler_repeatability.py --out experiments/profiler/repeatability.json

Prints one JSON object per repeat, then the summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from lfm2_nas.profiler import Settings, load_or_measure_hardware, profile_layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="lfm2-350m")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--depth", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--min-count", type=int, default=30)
    parser.add_argument("--min-duration-s", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=1, help="measuring processes pooled per profile")
    parser.add_argument("--target-cv", type=float, default=0.03)
    parser.add_argument("--out", type=Path, default=None, help="also write the whole report as JSON here")
    args = parser.parse_args()

    hardware = load_or_measure_hardware(args.device)
    settings = Settings(args.prompt_len, args.depth, dtype=args.dtype, device=args.device, threads=args.threads,
                        warmup=3, min_count=args.min_count, min_duration_s=args.min_duration_s,
                        processes=args.processes)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            result = profile_layout(args.spec, settings, hardware, store=Path(tmp) / "rows.jsonl",
                                    use_cache=False)
            if not result.ok:
                raise SystemExit(f"repeat {i} failed: {result.reason}")
            run = {
                "repeat": i,
                "decode_ms_median": result.decode_ms_per_token.median,
                "decode_ms_count": result.decode_ms_per_token.count,
                "decode_iqr_over_median": result.decode_ms_per_token.iqr_over_median,
                "prefill_ms_median": result.prefill_ms.median,
                "decode_bandwidth_fraction": result.roofline()["decode_bandwidth_fraction"],
                "peak_bytes": result.peak_bytes,
                "threads": result.environment.get("torch_num_threads"),
                "other_cpu_cores": result.environment.get("other_cpu_cores"),
                "busy": result.busy,
            }
            runs.append(run)
            print(json.dumps(run), flush=True)
    decode = [r["decode_ms_median"] for r in runs]
    prefill = [r["prefill_ms_median"] for r in runs]
    cv = statistics.stdev(decode) / statistics.mean(decode)
    summary = {
        "benchmark": "profiler_repeatability",
        "spec": args.spec,
        "settings": settings.resolved().to_dict(),
        "hardware": hardware.label,
        "repeats": args.repeats,
        "decode_ms_per_token_mean": statistics.mean(decode),
        "decode_ms_per_token_cv": cv,
        "prefill_ms_cv": statistics.stdev(prefill) / statistics.mean(prefill),
        "target_cv": args.target_cv,
        "target_met": cv <= args.target_cv,
        "busy_repeats": sum(r["busy"] for r in runs),  # repeats during which other processes used > 0.25 cores
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
