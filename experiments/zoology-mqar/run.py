"""The Zoology finding on LFM2 blocks: gated short convolutions fail multi-query associative recall as
the number of key-value pairs grows, while the same depth with an attention layer solves it.

Task: MAD's form of multi-query associative recall (``lfm2_nas.quality.tasks.InContextRecall``): a
stream of ``num_pairs`` key-value pairs under a mapping of ``num_keys`` keys drawn per sequence; every
pair whose key came before is a query, scored on its value. The sweep grows the number of distinct
key-value pairs (``num_keys``) at a fixed stream length, so repeats of a key drift apart. Layouts of
the same depth, shrunk by the project's scale rule (width 128, 8/4 heads of 16, FFN 576): all conv,
conv + attention, all attention. Each point trains a fresh proxy for the same number of steps and
scores held-out accuracy.

The ``conv reach`` column is computed from the test data, not from a model: the fraction of queries
whose key occurred within the receptive field of the conv stack (``layers * (kernel - 1)`` tokens
back), plus chance (``1 / num_values``) on the rest. No stack of short convolutions can beat it.

Every finished point is cached in ``results.jsonl`` beside this file (rerun to resume); writes
``results.csv`` and ``accuracy_vs_pairs.png``; the last stdout line is a JSON summary.

    PYTHONPATH=$PWD python experiments/zoology-mqar/run.py [--steps 1000] [--keys 2 4 8 16 32]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lfm2_nas.quality.plots import plot_accuracy_sweep  # noqa: E402
from lfm2_nas.quality.store import QualityStore, result_key  # noqa: E402
from lfm2_nas.quality.synthetic import SyntheticConfig, synthetic_quality  # noqa: E402
from lfm2_nas.quality.tasks import IGNORE, InContextRecall  # noqa: E402
from lfm2_nas.quality.train import TrainConfig  # noqa: E402
from lfm2_nas.resolve import resolve_spec  # noqa: E402

HERE = Path(__file__).resolve().parent
LAYOUTS = {"all-conv CC": "lfm2-350m:CC", "hybrid CA": "lfm2-350m:CA", "all-attn AA": "lfm2-350m:AA"}
BATCH = 32
TEST_SEQUENCES = 512


def conv_reach(task: InContextRecall, reach: int, seed: int) -> float:
    """Best accuracy a conv stack seeing ``reach`` tokens back can have on ``task``'s test split."""
    _, (inputs, targets) = task.split(0, TEST_SEQUENCES, seed)
    hits = total = 0
    for row, target in zip(inputs, targets):
        for t in np.flatnonzero(target != IGNORE):
            previous = np.flatnonzero(row[:t] == row[t])[-1]
            hits += int(t - previous <= reach)
            total += 1
    seen = hits / total
    return seen + (1 - seen) / task.num_values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", default=[2, 4, 8, 16, 32], help="distinct key-value pairs")
    parser.add_argument("--pairs", type=int, default=32, help="pairs in each sequence (its length is twice this)")
    parser.add_argument("--steps", type=int, default=1000, help=f"optimiser steps per point (batch {BATCH})")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    store = QualityStore(HERE / "results.jsonl")
    rows = []
    for name, text in LAYOUTS.items():
        spec = resolve_spec(text)
        for keys in args.keys:
            task = InContextRecall(num_keys=keys, num_values=16, num_pairs=args.pairs)
            config = SyntheticConfig(tasks=(task,), tokens_per_task=args.steps * BATCH * task.seq_len,
                                     test_sequences=TEST_SEQUENCES, train=TrainConfig(batch_size=BATCH, lr=args.lr))
            key = result_key(spec, "synthetic", 1.0, args.seed, {"config": repr(config)})
            result = store.get(key)
            if result is None:
                result = synthetic_quality(spec, seed=args.seed, config=config, progress=False)
                store.put(key, result, layout=name, keys=keys)
            reach = spec.num_layers * (spec.conv_kernel - 1)
            row = {"layout": name, "pattern": spec.pattern, "pairs": keys, "seq_len": task.seq_len + 1,
                   "accuracy": result.score, "conv_reach_bound": conv_reach(task, reach, args.seed), "ok": result.ok,
                   "tokens": result.tokens, "seconds": round(result.seconds, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    table = pd.DataFrame(rows)
    table.to_csv(HERE / "results.csv", index=False, float_format="%.4f")
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_accuracy_sweep(table, "pairs", ax=ax)
    bound = table.drop_duplicates("pairs").sort_values("pairs")
    ax.plot(bound["pairs"], bound["conv_reach_bound"], "k:", label="conv reach bound")
    ax.legend()
    ax.set_xlabel("distinct key-value pairs per sequence")
    ax.set_title(f"multi-query associative recall, depth 2, width 128, {args.steps} steps per point", fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / "accuracy_vs_pairs.png", dpi=120)
    wide = table.pivot(index="pairs", columns="layout", values="accuracy")
    print(json.dumps({"steps": args.steps, "accuracy": {str(k): v for k, v in wide.to_dict(orient="index").items()}}))


if __name__ == "__main__":
    main()
