"""Benchmark: LFM2 against dense peers of similar size, in the deployment runtimes, the way the claim was made.

    python benchmarks/peers.py --cpu-lock /tmp/lfm2-cpu.lock --out experiments/lfm2-vs-peers

Liquid AI says LFM2 prefills and decodes up to 2x faster on CPU than similarly sized models
(arXiv 2511.23404, abstract; the LFM2 model cards say "compared to Qwen3"). This runs LFM2-350M,
-700M and -1.2B and the peer shapes of :data:`lfm2_nas.registry.PEERS` (random weights, their published
shapes) through each ``--backends`` scheme (default llama.cpp q4_0 and q8_0, ExecuTorch 8da4w), with
``--threads`` threads, at each ``--points`` item ``PROMPT:DEPTH``: one measuring process times the
prefill of a PROMPT-token prompt and single decode steps at DEPTH cached tokens (the defaults pair
prefill 128 / 512 / 2048 with decode depths 0 / 4096 / 16384, so three processes cover both axes).
Every (model, scheme, point) is measured once per round, the order reversed every other round, so
``--rounds`` rounds are that many measuring processes per row, spread over the run; a slow stretch of
the machine hits LFM2 and peers alike. Speedups are paired by round (a peer's figure over LFM2's in
the same round), and reported as the median over rounds with the lowest and highest round.

``--cache-fill synthetic`` fills llama.cpp's cache to the depth without running the model over every
token (:meth:`lfm2_nas.runtimes.llamacpp.LlamaCppSession.fill_synthetic`: the K/V rows of a real
256-token prefill repeated to the depth); ExecuTorch's cache lives inside its
program and is always filled by a real prefill. Rows are stored per round in
``<out>/round-<r>.jsonl``; re-running the command measures only what is missing (and, with
``--retry``, what failed or ran on a busy machine). ``--cpu-lock FILE`` holds that lock exclusively
around each measurement, so other work that takes it runs between rows. At the end: ``rows.csv``,
``speedups.csv`` (one line per LFM2 model, peer, scheme, phase and point), ``summary.json`` (with each
model's cost-model terms: parameters, embedding share, KV bytes per token, FLOPs per token and the
attention share of them), ``peers.png`` and ``report.md`` (the same as tables). The last printed line
is the summary.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from backends import measure_rounds, stored_rows

from lfm2_nas import cost
from lfm2_nas.io import atomic_write, atomic_write_text
from lfm2_nas.profiler import Settings, load_or_measure_hardware
from lfm2_nas.profiler.store import write_tables
from lfm2_nas.registry import OFFICIAL_PARAMS, PEERS
from lfm2_nas.resolve import resolve_spec

LFM2 = ("lfm2-350m", "lfm2-700m", "lfm2-1.2b")
BACKENDS = ("llamacpp:q4_0", "llamacpp:q8_0", "executorch:8da4w")
POINTS = ("128:0", "512:4096", "2048:16384")

#: Peers of the same quality tier. Liquid AI's LFM2 announcement (liquid.ai blog, "Introducing LFM2",
#: July 2025) puts LFM2-1.2B level with Qwen3-1.7B ("47% more parameters") and LFM2-350M with
#: Qwen3-0.6B and Llama-3.2-1B; its 700M counterpart there, Gemma 3 1B, is not among the peers
#: (lfm2_nas/registry.py says why).
QUALITY_TIER: dict[str, tuple[str, ...]] = {
    "lfm2-350m": ("qwen3-0.6b", "llama-3.2-1b"),
    "lfm2-1.2b": ("qwen3-1.7b",),
}


def matched_params(model: str) -> str:
    """The peer whose published parameter count is nearest to ``model``'s (ratio, not difference)."""
    own = OFFICIAL_PARAMS[model]
    return min(PEERS, key=lambda peer: abs(math.log(OFFICIAL_PARAMS[peer] / own)))


def pairing(model: str, peer: str) -> list[str]:
    """How ``peer`` is matched to LFM2 ``model``: ``params``, ``quality``, both or neither."""
    return ([m for m, on in (("params", matched_params(model) == peer), ("quality", peer in QUALITY_TIER.get(model, ())))
             if on])


def parse_point(text: str) -> tuple[int, int]:
    prompt, _, depth = text.partition(":")
    try:
        point = int(prompt), int(depth)
    except ValueError:
        raise argparse.ArgumentTypeError(f"point {text!r}: write PROMPT:DEPTH, e.g. 512:4096") from None
    if point[0] < 1 or point[1] < 0:
        raise argparse.ArgumentTypeError(f"point {text!r}: the prompt needs >= 1 token and the depth >= 0")
    return point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfm2", nargs="+", default=list(LFM2), help="LFM2 sizes")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), help="peer shapes (lfm2_nas.registry.PEERS)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), help="backend:quant pairs")
    parser.add_argument("--points", nargs="+", type=parse_point, default=[parse_point(p) for p in POINTS],
                        help="PROMPT:DEPTH, one measuring process each")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--min-count", type=int, default=3)
    parser.add_argument("--min-duration-s", type=float, default=1.0)
    parser.add_argument("--cache-fill", choices=("synthetic", "prefill"), default="prefill",
                        help="how llama.cpp's cache reaches the depth (ExecuTorch: always prefill)")
    parser.add_argument("--timeout-s", type=float, default=3600)
    parser.add_argument("--cpu-lock", default=None, help="lock file held exclusively around each measurement")
    parser.add_argument("--retry", action="store_true", help="measure failed and busy rows again")
    parser.add_argument("--out", type=Path, default=Path("experiments") / "lfm2-vs-peers")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: rebuild the tables, plot and report from the stored rows (of one CPU)")
    args = parser.parse_args()
    unknown = [m for m in args.lfm2 + args.peers if m not in OFFICIAL_PARAMS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(OFFICIAL_PARAMS)}")

    models = list(dict.fromkeys(args.lfm2 + args.peers))
    items = [(m, b, p, d) for m in models for b in args.backends for p, d in args.points]

    def settings_of(backend: str, prompt_len: int, depth: int) -> Settings:
        name, quant = backend.split(":")
        return Settings(
            prompt_len=prompt_len, context_depth=depth, threads=args.threads, backend=name, quant=quant,
            warmup=args.warmup, min_count=args.min_count, min_duration_s=args.min_duration_s,
            cache_fill=args.cache_fill if name == "llamacpp" else "prefill", timeout_s=args.timeout_s,
        )

    if args.report_only:
        labels = sorted({r["hardware"] for r in stored_rows(args.out)})
        if len(labels) != 1:
            parser.error(f"--report-only needs the rows of one CPU under {args.out}; found {labels or 'none'}")
        label = labels[0]
    else:
        hardware = load_or_measure_hardware("cpu")
        label = hardware.label
        measure_rounds(items, args.rounds, args.out, settings_of, hardware, lock=args.cpu_lock, retry=args.retry)
    # every stored row, earlier invocations' included, of this CPU only (never pooled across CPUs)
    rows = [r for r in stored_rows(args.out) if r["hardware"] == label]
    speedups = speedup_rows(rows, args.lfm2, args.peers)
    summary = summarize(rows, speedups, args, label)
    write_tables(rows, args.out)
    write_tables(speedups, args.out, stem="speedups")
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    plot(speedups, summary, args.out / "peers.png")
    atomic_write_text(args.out / "report.md", report(summary))
    print(json.dumps(summary))


def figures(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], dict[int, float]]:
    """``{(model, "backend:quant", phase, point): {round: ms}}``: prefill rows keyed by prompt length,
    decode rows by depth; failed and busy rows left out."""
    table: dict[tuple[str, str, str, int], dict[int, float]] = {}
    for row in rows:
        if not row.get("ok") or row.get("busy"):
            continue
        scheme = f"{row['backend']}:{row['quant']}"
        for phase, point in (("prefill", row["prompt_len"]), ("decode", row["context_depth"])):
            value = row.get(f"{phase}_ms_median")
            if value is not None:
                table.setdefault((row["layout"], scheme, phase, point), {})[row["round"]] = value
    return table


def speedup_rows(rows: list[dict[str, Any]], lfm2: list[str], peers: list[str]) -> list[dict[str, Any]]:
    """One row per (LFM2 model, peer, scheme, phase, point): both models' ms (median over rounds) and
    the peer-over-LFM2 ratio per round paired by round (median, lowest, highest, rounds paired)."""
    table = figures(rows)
    out = []
    for (model, scheme, phase, point), own in sorted(table.items()):
        if model not in lfm2:
            continue
        for peer in peers:
            other = table.get((peer, scheme, phase, point), {})
            paired = sorted(r for r in own if r in other)
            ratios = [other[r] / own[r] for r in paired]
            out.append({
                "lfm2": model, "peer": peer, "matched": "+".join(pairing(model, peer)) or "-",
                "scheme": scheme, "phase": phase, "point": point,
                "lfm2_ms": statistics.median(own.values()), "peer_ms": statistics.median(other.values()) if other else None,
                "speedup": statistics.median(ratios) if ratios else None,
                "speedup_low": min(ratios) if ratios else None, "speedup_high": max(ratios) if ratios else None,
                "rounds_paired": len(paired),
            })
    return out


def cost_terms(model: str, prompts: list[int], depths: list[int]) -> dict[str, Any]:
    """The cost model's view of ``model`` (see :mod:`lfm2_nas.cost`): what the verdict argues with."""
    spec = resolve_spec(model)
    return {
        "params": cost.param_count(spec),
        "embedding_params": cost.embedding_params(spec),
        "vocab_size": spec.vocab_size,
        "layers": spec.num_layers,
        "attention_layers": spec.num_attention_layers,
        "hidden_size": spec.hidden_size,
        "kv_bytes_per_token_f16": cost.kv_bytes_per_token(spec, "float16"),
        "decode_flops": {d: cost.decode_flops(spec, d) for d in depths},
        "decode_attention_share": {d: round(cost.attention_flops_share(spec, d, decode=True), 4) for d in depths},
        "prefill_flops": {p: cost.prefill_flops(spec, p) for p in prompts},
        "prefill_attention_share": {p: round(cost.attention_flops_share(spec, p, decode=False), 4) for p in prompts},
    }


def summarize(rows: list[dict[str, Any]], speedups: list[dict[str, Any]], args: argparse.Namespace,
              hardware: str) -> dict[str, Any]:
    """Per model and scheme the ms at every point (median over rounds, lowest and highest round), the
    speedups, the pairings and the cost-model terms."""
    table = figures(rows)
    measured = []
    for (model, scheme, phase, point), by_round in sorted(table.items()):
        values = list(by_round.values())
        measured.append({"model": model, "scheme": scheme, "phase": phase, "point": point, "rounds": len(values),
                         "ms_median": statistics.median(values), "ms_low": min(values), "ms_high": max(values)})
    peaks: dict[str, int] = {}
    for row in rows:
        if row.get("ok") and row.get("peak_bytes"):
            key = f"{row['layout']} {row['backend']}:{row['quant']} {row['prompt_len']}:{row['context_depth']}"
            peaks[key] = max(peaks.get(key, 0), row["peak_bytes"])
    prompts, depths = [p for p, _ in args.points], [d for _, d in args.points]
    models = list(dict.fromkeys(args.lfm2 + args.peers))
    return {
        "benchmark": "lfm2-vs-peers",
        "hardware": hardware,
        "threads": _distinct(rows, "threads"),  # from the rows, not the flags: --report-only sets none
        "rounds": len({r["round"] for r in rows}),
        "cache_fill_llamacpp": _distinct([r for r in rows if r["backend"] == "llamacpp"], "cache_fill"),
        "rows": len(rows),
        "failed_rows": sum(not r["ok"] for r in rows),
        "busy_rows": sum(bool(r.get("busy")) for r in rows),
        "pairings": {m: {"params": matched_params(m), "quality": list(QUALITY_TIER.get(m, ()))} for m in args.lfm2},
        "measured": measured,
        "peak_bytes": peaks,
        "speedups": speedups,
        "cost": {m: cost_terms(m, prompts, depths) for m in models},
    }


def _distinct(rows: list[dict[str, Any]], key: str) -> str:
    """The values ``rows`` hold under ``key``, sorted and joined ("-" for none)."""
    return ", ".join(str(v) for v in sorted({r[key] for r in rows})) or "-"


def report(summary: dict[str, Any]) -> str:
    """``summary`` as a markdown document: the matched pairings' speedups, every measured figure with
    its peak memory, and the cost-model terms of each model."""
    import pandas as pd

    from lfm2_nas.report.markdown import Document, count, ms, nbytes, percent, ratio

    doc = Document("LFM2 vs peers in the deployment runtimes",
                   f"Hardware profile {summary['hardware']}; {summary['threads']} threads; {summary['rounds']} rounds; "
                   f"llama.cpp cache fill {summary['cache_fill_llamacpp']}; {summary['rows']} rows "
                   f"({summary['failed_rows']} failed, {summary['busy_rows']} busy, both left out).")
    speedups = pd.DataFrame(summary["speedups"])
    if not speedups.empty:
        matched = speedups[(speedups["matched"] != "-") & speedups["speedup"].notna()].copy()
        matched["low-high"] = [f"{ratio(lo)}-{ratio(hi)}" if lo else "" for lo, hi in
                               zip(matched["speedup_low"], matched["speedup_high"])]
        doc.section("Speedups at matched pairings",
                    "peer ms / LFM2 ms (above 1: LFM2 faster), median over the rounds paired, lowest and highest "
                    "round; `params`: the peer nearest in parameters, `quality`: the same quality tier. "
                    "Prefill points are prompt lengths, decode points cached depths. Every pairing: speedups.csv.")
        doc.table(matched, {"lfm2_ms": ms, "peer_ms": ms, "speedup": ratio},
                  ["lfm2", "peer", "matched", "scheme", "phase", "point", "lfm2_ms", "peer_ms", "speedup", "low-high",
                   "rounds_paired"])
    measured = pd.DataFrame(summary["measured"])
    if not measured.empty:
        measured["peak memory"] = [
            summary["peak_bytes"].get(next((k for k in summary["peak_bytes"]
                                            if k.startswith(f"{m} {s} ") and _point_of(k, phase) == point), ""))
            for m, s, phase, point in zip(measured["model"], measured["scheme"], measured["phase"], measured["point"])]
        doc.section("Measured", "ms: median over rounds (lowest, highest round); peak memory: the measuring "
                    "process's resident peak above its start, highest over rounds, of the process that timed it.")
        doc.table(measured, {"ms_median": ms, "ms_low": ms, "ms_high": ms, "peak memory": nbytes},
                  ["model", "scheme", "phase", "point", "rounds", "ms_median", "ms_low", "ms_high", "peak memory"])
    terms = pd.DataFrame([{"model": m, "params": c["params"], "embedding share": c["embedding_params"] / c["params"],
                           "vocab": c["vocab_size"], "layers": c["layers"], "attention layers": c["attention_layers"],
                           "KV bytes/token (f16)": c["kv_bytes_per_token_f16"],
                           **{f"attention FLOP share, decode at {d}": c["decode_attention_share"][d]
                              for d in c["decode_attention_share"]}}
                          for m, c in summary["cost"].items()])
    doc.section("Cost-model terms", "from lfm2_nas.cost: what a decode step reads and computes.")
    doc.table(terms, {"params": count, "embedding share": percent, "vocab": str, "KV bytes/token (f16)": nbytes,
                      **{c: percent for c in terms.columns if c.startswith("attention FLOP share")}})
    return doc.text()


def _point_of(peak_key: str, phase: str) -> int:
    """The prompt (prefill) or depth (decode) of a ``summary["peak_bytes"]`` key ``"model scheme P:D"``."""
    prompt, _, depth = peak_key.rsplit(" ", 1)[1].partition(":")
    return int(prompt if phase == "prefill" else depth)


def plot(speedups: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    """Peer ms over LFM2 ms for every matched pairing (:func:`pairing`), one row of panels per scheme (prefill | decode); bars are the
    median over rounds, whiskers the lowest and highest round; dashed lines at 1x and 2x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schemes = list(dict.fromkeys(s["scheme"] for s in speedups))
    pairs = list(dict.fromkeys((s["lfm2"], s["peer"]) for s in speedups if s["matched"] != "-"))
    fig, axes = plt.subplots(max(len(schemes), 1), 2, figsize=(13, 3.6 * max(len(schemes), 1)), squeeze=False)
    for row_axes, scheme in zip(axes, schemes):
        for ax, phase in zip(row_axes, ("prefill", "decode")):
            points = sorted({s["point"] for s in speedups if s["scheme"] == scheme and s["phase"] == phase})
            width = 0.8 / max(len(pairs), 1)
            for i, (model, peer) in enumerate(pairs):
                found = [next((s for s in speedups if (s["lfm2"], s["peer"], s["scheme"], s["phase"], s["point"])
                               == (model, peer, scheme, phase, p)), None) for p in points]
                mid = [s["speedup"] if s and s["speedup"] else 0.0 for s in found]
                low = [m - (s["speedup_low"] or m) if s else 0.0 for m, s in zip(mid, found)]
                high = [(s["speedup_high"] or m) - m if s else 0.0 for m, s in zip(mid, found)]
                tag = found[0]["matched"] if found and found[0] else "-"
                ax.bar([j + i * width for j in range(len(points))], mid, width, yerr=[low, high], capsize=2,
                       label=f"{model} vs {peer} ({tag})")
            for level in (1.0, 2.0):
                ax.axhline(level, color="grey", lw=0.8, ls="--")
            label = "prompt" if phase == "prefill" else "depth"
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(points))], [f"{label} {p}" for p in points])
            ax.set_ylabel(f"{phase}: peer ms / LFM2 ms")
            ax.set_title(f"{scheme} {phase}")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"LFM2 vs peers, {summary['hardware']}, {summary['threads']} threads (above 1: LFM2 faster)")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
