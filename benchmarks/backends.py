"""Benchmark: one layout in every runtime, side by side, in alternating rounds.

    flock -x /tmp/lfm2-cpu.lock python benchmarks/backends.py --out experiments/backends

For each layout (default: LFM2-350M and its all-attention baseline) and each backend/scheme (torch
fp32, ExecuTorch fp32 and 8da4w, llama.cpp f32, q8_0 and q4_0), the profiler measures prefill of a
``--prompt-len`` prompt and decode at each ``--depths`` value, with ``--threads`` threads, through the
same code path a sweep or search uses (:func:`lfm2_nas.profiler.profile_layout`: export cached, every
measurement in a fresh process). Round ``r`` runs the rows in order, round ``r+1`` in reverse, so a
slow stretch of a shared machine does not fall on one backend only. Each round's rows are stored in
``<out>/round-<r>.jsonl`` (a re-run resumes, and a run with other layouts, backends or depths adds to
the same rounds); every row is printed as one JSON line, then the summary over every stored row:
per layout, backend and depth the median over rounds of the decode and prefill medians, the spread
across rounds, the speedup over torch fp32 on the same layout, and the runtime's own timing where it
reports one (llama.cpp's perf counters, recorded in the same measuring process). ``<out>/summary.json``,
``<out>/rows.csv`` and ``<out>/backends.png`` are written at the end. The last line is the summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from lfm2_nas.io import atomic_write_text
from lfm2_nas.profiler import HardwareProfile, Settings, load_or_measure_hardware, profile_layout
from lfm2_nas.profiler.store import ProfileStore, write_tables
from lfm2_nas.resolve import resolve_spec
from lfm2_nas.search.lock import cpu_lock

BACKENDS = ("torch:none", "executorch:fp32", "executorch:8da4w", "llamacpp:f32", "llamacpp:q8_0", "llamacpp:q4_0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", nargs="+", default=["lfm2-350m", "lfm2-350m-all-attn"])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), help="backend:quant pairs")
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--depths", nargs="+", type=int, default=[0, 4096, 16384])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--min-duration-s", type=float, default=2.0)
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=Path("experiments") / "backends")
    args = parser.parse_args()

    hardware = load_or_measure_hardware("cpu")
    items = [(layout, backend, args.prompt_len, depth)
             for layout in args.layouts for backend in args.backends for depth in args.depths]

    def settings_of(backend: str, prompt_len: int, depth: int) -> Settings:
        name, quant = backend.split(":")
        return Settings(
            prompt_len=prompt_len, context_depth=depth, threads=args.threads, backend=name,
            quant=None if name == "torch" else quant, warmup=1, min_count=args.min_count,
            min_duration_s=args.min_duration_s, timeout_s=args.timeout_s,
        )

    measure_rounds(items, args.rounds, args.out, settings_of, hardware)
    rows = stored_rows(args.out)  # every row of every round, earlier invocations' included (resumable union)
    summary = summarize(rows, args, hardware.label)
    write_tables(rows, args.out)
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot(summary, args.out / "backends.png")
    print(json.dumps(summary))


def measure_rounds(items: Sequence[tuple[str, str, int, int]], rounds: int, out: Path,
                   settings_of: Callable[[str, int, int], Settings], hardware: HardwareProfile,
                   lock: str | None = None, retry: bool = False) -> None:
    """Profile every ``(layout, "backend:quant", prompt_len, depth)`` item once per round, in order in
    even rounds and reversed in odd ones, storing round ``r`` in ``<out>/round-<r>.jsonl`` (stored rows
    are not measured again; with ``retry``, failed and busy ones are). ``lock``: a lock file held
    exclusively around each measurement (:func:`lfm2_nas.search.lock.cpu_lock`), so other work that
    takes it runs between rows, never during one. Prints one JSON line per row."""
    for r in range(rounds):
        for layout, backend, prompt_len, depth in items if r % 2 == 0 else list(reversed(items)):
            with cpu_lock(lock, exclusive=True):
                result = profile_layout(resolve_spec(layout), settings_of(backend, prompt_len, depth), hardware,
                                        store=out / f"round-{r}.jsonl", label=layout, retry_failed=retry)
            row = {k: v for k, v in result.to_row().items() if not k.endswith("_samples")}
            print(json.dumps({"round": r, **{k: row.get(k) for k in _PRINTED}}), flush=True)


def stored_rows(out: Path) -> list[dict[str, Any]]:
    """The rows of every ``round-<r>.jsonl`` in ``out``, raw samples dropped, each tagged with its round."""
    rows = []
    for path in sorted(out.glob("round-*.jsonl")):
        r = int(path.stem.split("-")[1])
        rows += [{**{k: v for k, v in row.items() if not k.endswith("_samples")}, "round": r}
                 for row in ProfileStore(path).rows().values()]
    return rows


_PRINTED = ("layout", "backend", "quant", "prompt_len", "context_depth", "ok", "reason", "decode_ms_median", "decode_ms_min",
            "prefill_ms_median", "runtime_decode_ms", "artifact_bytes", "export_s", "peak_bytes", "busy")


def summarize(rows: list[dict[str, Any]], args: argparse.Namespace, hardware: str) -> dict[str, Any]:
    """Median over rounds per (layout, backend, depth), spread across rounds and speedup over torch."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["layout"], f"{row['backend']}:{row['quant']}", row["context_depth"]), []).append(row)
    table = []
    for (layout, backend, depth), members in groups.items():
        ok = [m for m in members if m["ok"]]
        entry: dict[str, Any] = {"layout": layout, "backend": backend, "depth": depth, "rounds_ok": len(ok),
                                 "rounds_busy": sum(bool(m.get("busy")) for m in members)}
        for column in ("decode_ms_median", "decode_ms_min", "prefill_ms_median", "runtime_decode_ms", "peak_bytes"):
            values = [m[column] for m in ok if m.get(column) is not None]
            entry[column] = statistics.median(values) if values else None
            if column in ("decode_ms_median", "prefill_ms_median") and values:
                entry[column.replace("_median", "_round_spread")] = (max(values) - min(values)) / statistics.median(values)
        entry["artifact_bytes"] = next((m.get("artifact_bytes") for m in ok if m.get("artifact_bytes")), None)
        entry["reason"] = None if ok else members[-1].get("reason")
        table.append(entry)
    base = {(e["layout"], e["depth"]): e for e in table if e["backend"] == "torch:none"}
    for entry in table:
        ref = base.get((entry["layout"], entry["depth"]))
        for column, name in (("decode_ms_median", "decode_speedup_vs_torch"), ("prefill_ms_median", "prefill_speedup_vs_torch")):
            fine = ref and ref.get(column) and entry.get(column)
            entry[name] = ref[column] / entry[column] if fine else None
        own = entry.get("runtime_decode_ms")
        entry["our_vs_runtime_decode"] = entry["decode_ms_median"] / own if own and entry.get("decode_ms_median") else None
    return {
        "benchmark": "backends",
        "hardware": hardware,
        "threads": args.threads,
        "prompt_len": args.prompt_len,
        "rounds": args.rounds,
        "rows": len(rows),
        "failed_rows": sum(not r["ok"] for r in rows),
        "table": table,
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    """Decode ms/token per backend at each depth, one panel per layout (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layouts = sorted({e["layout"] for e in summary["table"]})
    backends = list(dict.fromkeys(e["backend"] for e in summary["table"]))
    depths = sorted({e["depth"] for e in summary["table"]})
    fig, axes = plt.subplots(1, len(layouts), figsize=(6 * len(layouts), 4), sharey=True, squeeze=False)
    width = 0.8 / max(len(backends), 1)
    for ax, layout in zip(axes[0], layouts):
        for i, backend in enumerate(backends):
            values = [next((e["decode_ms_median"] for e in summary["table"]
                            if e["layout"] == layout and e["backend"] == backend and e["depth"] == d), None) or 0
                      for d in depths]
            ax.bar([j + i * width for j in range(len(depths))], values, width, label=backend)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(depths))], [f"depth {d}" for d in depths])
        ax.set_yscale("log")
        ax.set_title(layout)
        ax.set_ylabel("decode ms/token (median over rounds)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"{summary['hardware']}, {summary['threads']} threads")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
