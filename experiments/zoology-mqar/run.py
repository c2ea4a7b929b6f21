"""The Zoology finding on LFM2 blocks: short convolutions fail MQAR as the pairs grow, attention does not.

Sweeps the number of key-value pairs of Zoology's MQAR (all pairs, then every key queried once; see
``lfm2_nas.quality.tasks.MQAR``) for layouts of the same depth: all conv, conv with one attention
layer, all attention. Each point trains a fresh proxy (the project's scale rule: width 128, 8/4 heads
of 16, FFN 576) for the same number of steps and scores held-out accuracy. Every finished point is
cached in ``results.jsonl`` (rerun to resume). Writes ``results.csv`` and ``accuracy_vs_pairs.png``
beside this file; the last stdout line is a JSON summary.

    PYTHONPATH=$PWD python experiments/zoology-mqar/run.py [--steps 1000] [--pairs 2 4 8 16 32]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lfm2_nas.quality.plots import plot_accuracy_sweep  # noqa: E402
from lfm2_nas.quality.store import ResultStore, result_key  # noqa: E402
from lfm2_nas.quality.synthetic import SyntheticConfig, synthetic_quality  # noqa: E402
from lfm2_nas.quality.tasks import MQAR  # noqa: E402
from lfm2_nas.quality.train import TrainConfig  # noqa: E402
from lfm2_nas.resolve import resolve_spec  # noqa: E402

HERE = Path(__file__).resolve().parent
LAYOUTS = {"all-conv CCCC": "lfm2-350m:CCCC", "hybrid CCAC": "lfm2-350m:CCAC", "all-attn AAAA": "lfm2-350m:AAAA"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=1000, help="optimiser steps per point (batch 32)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    store = ResultStore(HERE / "results.jsonl")
    rows = []
    for name, text in LAYOUTS.items():
        spec = resolve_spec(text)
        for pairs in args.pairs:
            task = MQAR(num_pairs=pairs)
            config = SyntheticConfig(tasks=(task,), tokens_per_task=args.steps * 32 * task.seq_len, test_sequences=512,
                                     train=TrainConfig(batch_size=32, lr=args.lr))
            key = result_key(spec, "synthetic", 1.0, args.seed, {"config": repr(config)})
            result = store.get(key)
            if result is None:
                result = synthetic_quality(spec, seed=args.seed, config=config, progress=False)
                store.put(key, result, layout=name, pairs=pairs)
            row = {"layout": name, "pattern": spec.pattern, "pairs": pairs, "seq_len": task.seq_len + 1,
                   "accuracy": result.score, "ok": result.ok, "tokens": result.tokens, "seconds": round(result.seconds, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(HERE / "results.csv", index=False, float_format="%.4f")
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_accuracy_sweep(table, "pairs", ax=ax)
    ax.axvline(4.5, color="grey", lw=0.8, ls=":")  # past 4 pairs a query sits beyond the 9-token conv reach
    ax.set_title(f"MQAR, depth 4, width 128, {args.steps} steps per point")
    fig.tight_layout()
    fig.savefig(HERE / "accuracy_vs_pairs.png", dpi=120)
    wide = table.pivot(index="pairs", columns="layout", values="accuracy")
    print(json.dumps({"steps": args.steps, "accuracy": {str(k): v for k, v in wide.to_dict(orient="index").items()}}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
