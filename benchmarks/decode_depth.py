"""Decode at depth: does a synthetic cache fill time like a real prefill to the same depth?

    flock -x /tmp/lfm2-cpu.lock python benchmarks/decode_depth.py --out experiments/decode_depth

For each depth (default 1024 and 8192, ``lfm2-350m``, fp32) the profiler (:func:`lfm2_nas.profiler.profile_layout`,
one fresh measuring process per call, this machine's hardware profile and kernel table) measures the
decode step with ``cache_fill = "synthetic"`` (random K/V written directly) and ``"prefill"`` (a real
prefill of ``depth`` random tokens), in the order synthetic, prefill, prefill, synthetic (``--rounds``
times) so drift hits both alike; samples of the same fill are pooled. The cache is rewound to the
depth before every timed step (the profiler's contract, tested in ``tests/test_decode_depth.py``).

Per depth the record gives both medians, their ratio and each one's spread (p10-p90 of the pooled
samples and the spread of the per-process medians); ``within_spread`` says whether the difference of
the medians is no larger than the larger per-process spread. JSON lines; the last is the summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's lfm2_nas

from lfm2_nas.io import atomic_write_text  # noqa: E402
from lfm2_nas.profiler import Settings, profile_layout  # noqa: E402
from lfm2_nas.profiler.hardware import load_or_measure_hardware  # noqa: E402

FILLS = ("synthetic", "prefill")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="lfm2-350m")
    parser.add_argument("--depths", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="synthetic, prefill, prefill, synthetic per round")
    parser.add_argument("--min-count", type=int, default=20)
    parser.add_argument("--min-duration-s", type=float, default=2.0)
    parser.add_argument("--out", default=None, help="folder for results.jsonl")
    return parser.parse_args(argv)


def compare_fills(samples: dict[str, list[float]], process_medians: dict[str, list[float]]) -> dict[str, Any]:
    """Medians of the pooled decode samples per fill, their ratio (prefill / synthetic), the spreads,
    and whether the two medians differ by no more than the larger spread of per-process medians."""
    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    median = {fill: statistics.median(samples[fill]) for fill in FILLS}
    spread = {fill: max(process_medians[fill]) - min(process_medians[fill]) for fill in FILLS}
    return {
        "decode_ms_median": median,
        "decode_ms_p10_p90": {fill: [pct(samples[fill], 0.1), pct(samples[fill], 0.9)] for fill in FILLS},
        "process_medians_ms": process_medians,
        "process_median_spread_ms": spread,
        "prefill_over_synthetic": median["prefill"] / median["synthetic"],
        "within_spread": abs(median["prefill"] - median["synthetic"]) <= max(spread.values()),
    }


def main(args: argparse.Namespace) -> None:
    hardware = load_or_measure_hardware("cpu", threads=args.threads)
    records = []

    def emit(record: dict[str, Any]) -> None:
        records.append(record)
        print(json.dumps(record), flush=True)

    summary: dict[str, Any] = {"kind": "summary", "variant": args.variant, "cpu_model": hardware.cpu_model,
                               "hardware": hardware.label, "threads": args.threads, "depths": {}}
    for depth in args.depths:
        samples: dict[str, list[float]] = {fill: [] for fill in FILLS}
        medians: dict[str, list[float]] = {fill: [] for fill in FILLS}
        for _ in range(args.rounds):
            for fill in ("synthetic", "prefill", "prefill", "synthetic"):
                settings = Settings(prompt_len=16, context_depth=depth, threads=args.threads, cache_fill=fill,
                                    warmup=3, min_count=args.min_count, min_duration_s=args.min_duration_s)
                result = profile_layout(args.variant, settings, hardware, use_cache=False,
                                        store=Path(args.out or "/tmp") / "decode_depth_rows.jsonl")
                if not result.ok:
                    sys.exit(f"error: {args.variant} at depth {depth} ({fill}) failed: {result.reason}")
                row = result.to_row()
                emit({"kind": "profile", "depth": depth, "fill": fill, "decode_ms_median": row["decode_ms_median"],
                      "decode_samples_ms": list(result.decode_ms_per_token.samples),
                      "other_cpu_cores": row["other_cpu_cores"], "linear_kernels": row.get("linear_kernels"),
                      "kernel_choice": row.get("kernel_choice")})
                samples[fill] += list(result.decode_ms_per_token.samples)
                medians[fill].append(row["decode_ms_median"])
        summary["depths"][str(depth)] = compare_fills(samples, medians)
    emit(summary)
    if args.out:
        atomic_write_text(Path(args.out) / "results.jsonl", "".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    main(parse_args())
