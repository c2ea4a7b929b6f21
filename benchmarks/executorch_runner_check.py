"""Cross-check: our ExecuTorch decode timing against ExecuTorch's own LLM runner on the same program.

    python benchmarks/executorch_runner_check.py --layout qwen3-0.6b --depth 4096 --cpu-lock /tmp/lfm2-cpu.lock

The profiler times single decode steps at ``--depth`` cached tokens (``profile_layout``, a fresh
process per measurement, the cache rewound to the depth before each step). ExecuTorch's
``TextLLMRunner`` (:func:`lfm2_nas.runtimes.executorch.runner_stats`) generates ``--new-tokens``
greedily to the end of the program's cache (``max_len`` positions, the profiler's cache length:
the larger of the prompt and ``depth + 3``), from a prompt of ``max_len - new_tokens`` tokens, so its
steps run at depths ``max_len - new_tokens`` to ``max_len - 1``, and reports generation time over
generated tokens, whole milliseconds (at ``--depth 0`` its steps therefore attend over up to
``--prompt-len`` tokens where ours attend over none). Both use the
one artifact the profiler exports and caches for that cache length (the one ``benchmarks/peers.py``
uses at ``PROMPT:DEPTH``). The runner calls ``forward(tokens, input_pos)``, which only programs
without conv layers have: the layout must be all attention (a peer, or an ``-all-attn`` baseline).
A third side, ``stepper``, tells the two apart where they disagree: our own session in this
process, generating greedily like the runner over the same positions (prompt of ``max_len -
new_tokens`` tokens, then ``--new-tokens`` steps forward, no rewind, one warm-up pass first), each
``forward`` call timed; it reports the mean per step (the runner's kind of figure) and the median.
``--rounds`` rounds, the order of the three reversed every other round. Rows are appended to
``<out>/rows.jsonl`` (the profiler's own in ``<out>/profiler.jsonl``); the summary (medians over
rounds and their ratio) goes to ``<out>/summary-depth<D>.json`` and is the last printed line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from lfm2_nas.io import LineStore, atomic_write_text
from lfm2_nas.profiler import Settings, load_or_measure_hardware, profile_layout
from lfm2_nas.profiler.artifacts import ensure_artifact
from lfm2_nas.profiler.profile import artifacts_dir
from lfm2_nas.resolve import resolve_spec
from lfm2_nas.runtimes.base import Artifact
from lfm2_nas.runtimes.executorch import RUNTIME, runner_stats
from lfm2_nas.search.lock import cpu_lock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", default="qwen3-0.6b", help="an all-attention layout")
    parser.add_argument("--quant", default="8da4w")
    parser.add_argument("--depth", type=int, default=4096)
    parser.add_argument("--prompt-len", type=int, default=512, help="the profiler's prompt (its prefill row)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="0: only summarize the stored rows")
    parser.add_argument("--cpu-lock", default=None, help="lock file held exclusively around each measurement")
    parser.add_argument("--out", type=Path, default=Path("experiments") / "backends" / "executorch-runner")
    args = parser.parse_args()
    spec = resolve_spec(args.layout)
    if spec.num_conv_layers:
        parser.error(f"{args.layout} has conv layers: ExecuTorch's runner cannot call its program")
    settings = Settings(prompt_len=args.prompt_len, context_depth=args.depth, threads=args.threads,
                        backend="executorch", quant=args.quant, warmup=1, min_count=3, min_duration_s=1.0)
    if not 1 <= args.new_tokens < settings.max_len:
        parser.error(f"--new-tokens must be in 1..{settings.max_len - 1} (the program holds {settings.max_len} positions)")

    hardware = load_or_measure_hardware("cpu")
    store = LineStore(args.out / "rows.jsonl")
    sides = ("profiler", "runner", "stepper")
    for r in range(args.rounds):
        for who in sides if r % 2 == 0 else tuple(reversed(sides)):
            with cpu_lock(args.cpu_lock, exclusive=True):
                if who == "profiler":
                    result = profile_layout(spec, settings, hardware, store=args.out / "profiler.jsonl",
                                            use_cache=False, label=args.layout)
                    if not result.ok:
                        sys.exit(f"error: the profiler failed on {args.layout}: {result.reason}")
                    row = result.to_row()
                    record = {"decode_ms_median": row["decode_ms_median"], "decode_ms_min": row["decode_ms_min"],
                              "busy": row["busy"], "other_cpu_cores": row["other_cpu_cores"]}
                else:
                    artifact = ensure_artifact("executorch", spec, args.quant, settings.max_len, artifacts_dir())
                    prompt = settings.max_len - args.new_tokens
                    measure = runner_stats if who == "runner" else stepper_stats
                    record = measure(artifact, prompt, args.new_tokens, args.threads)
            record = {"round": r, "who": who, "layout": args.layout, "quant": args.quant, "depth": args.depth,
                      "hardware": hardware.label, **record}
            store.append(record)
            print(json.dumps(record), flush=True)
    rows = [row for row in store.records() if (row["layout"], row["quant"], row["depth"]) == (args.layout, args.quant, args.depth)]
    ours = [r["decode_ms_median"] for r in rows if r["who"] == "profiler" and not r["busy"]]
    theirs = [r["decode_ms_per_token"] for r in rows if r["who"] == "runner" and r["generated_tokens"] > 0]
    stepped = [r["decode_ms_mean"] for r in rows if r["who"] == "stepper"]
    summary = {
        "benchmark": "executorch_runner_check", "layout": args.layout, "quant": args.quant, "depth": args.depth,
        "runner_depths": [settings.max_len - args.new_tokens, settings.max_len - 1],
        "threads": args.threads, "hardware": hardware.label, "rounds": len({r["round"] for r in rows}),
        "ours_decode_ms": statistics.median(ours) if ours else None,
        "runner_decode_ms": statistics.median(theirs) if theirs else None,
        "stepper_decode_ms_mean": statistics.median(stepped) if stepped else None,
    }
    if ours and theirs:
        summary["ours_over_runner"] = summary["ours_decode_ms"] / summary["runner_decode_ms"]
    atomic_write_text(args.out / f"summary-depth{args.depth}.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


def stepper_stats(artifact: Artifact, prompt_len: int, new_tokens: int, threads: int) -> dict[str, float | int]:
    """Our session over the runner's positions: a ``prompt_len`` prompt, then ``new_tokens`` greedy
    steps forward, each ``forward`` call timed (after one untimed pass of the same); the steps' mean
    and median ms and the prefill ms."""
    session = RUNTIME.load(artifact, threads)
    try:
        for _ in range(2):  # the first pass is the warm-up; the second is recorded
            start = time.perf_counter()
            logits = session.prefill([ord("a")] * prompt_len)
            prefill_ms = (time.perf_counter() - start) * 1e3
            steps = []
            for _ in range(new_tokens):
                start = time.perf_counter()
                logits = session.step(int(np.argmax(logits)))
                steps.append((time.perf_counter() - start) * 1e3)
    finally:
        session.close()
    return {"prefill_ms": prefill_ms, "decode_ms_mean": statistics.fmean(steps),
            "decode_ms_median": statistics.median(steps), "decode_ms_min": min(steps),
            "prompt_tokens": prompt_len, "generated_tokens": new_tokens}


if __name__ == "__main__":
    sys.exit(main())
