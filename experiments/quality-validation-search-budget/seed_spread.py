"""Seed noise of the text tier at the search's budget (0.1x), and whether the ranking survives it.

Trains the fixed validation panel at 0.1x with seeds 1 and 2 (seed 0 is already in
``results.jsonl``), through the same resumable store as ``lfm2-nas quality validate``; then writes
``seed_spread.csv`` (per layout: the score of every seed, mean, standard deviation) and
``seed_spread.json`` (Spearman/Kendall of each seed's and of the seed-mean ranking against the 4x
ranking at seed 0) and prints the JSON summary.

    flock -x /tmp/lfm2-cpu.lock python experiments/quality-validation-search-budget/seed_spread.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from scipy import stats

from lfm2_nas.quality.store import QualityStore
from lfm2_nas.quality.validate import PANEL, run_validation

HERE = Path(__file__).parent
BUDGET, FACTOR, SEEDS = 0.1, 40.0, (0, 1, 2)


def text_scores(store: QualityStore, seed: int) -> pd.Series:
    """Text-tier scores at 0.1x for ``seed`` (trained now unless cached), indexed by layout; no 4x."""
    rows = run_validation(store, budget=BUDGET, factor=None, seed=seed, synthetic=False, progress=False)
    text = rows[(rows["column"] == f"text@{BUDGET:g}x") & rows["ok"]]
    if len(text) != len(PANEL):
        raise SystemExit(f"seed {seed}: {len(PANEL) - len(text)} text evaluations failed or are missing")
    return text.set_index("layout")["score"]


def main() -> None:
    store = QualityStore(HERE / "results.jsonl")
    # `lfm2-nas quality validate`'s results (seed 0, 0.1x and 4x), all cache hits: nothing is trained.
    reference = run_validation(store, budget=BUDGET, factor=FACTOR, seed=0, synthetic=False, progress=False, limit=0)
    if len(reference) != 3 * len(PANEL):
        raise SystemExit("run `lfm2-nas quality validate --budget 0.1 --factor 40` into this folder first")
    table = pd.DataFrame({f"seed {s}": text_scores(store, s) for s in SEEDS})
    at_4x = reference[reference["column"] == f"text@{BUDGET * FACTOR:g}x"].set_index("layout")["score"]
    table["mean"] = table[[f"seed {s}" for s in SEEDS]].mean(axis=1)
    table["std"] = table[[f"seed {s}" for s in SEEDS]].std(axis=1, ddof=1)
    table["text@4x seed 0"] = at_4x
    table = table.sort_values("mean")
    table.round(4).to_csv(HERE / "seed_spread.csv")
    summary: dict[str, object] = {"budget": BUDGET, "seeds": list(SEEDS), "layouts": len(table),
                                  "median_std_bits_per_byte": round(float(table["std"].median()), 4),
                                  "max_std_bits_per_byte": round(float(table["std"].max()), 4)}
    for column in [f"seed {s}" for s in SEEDS] + ["mean"]:
        rho = stats.spearmanr(table[column], table["text@4x seed 0"]).statistic
        tau = stats.kendalltau(table[column], table["text@4x seed 0"]).statistic
        summary[f"{column} vs 4x"] = {"spearman": round(float(rho), 3), "kendall": round(float(tau), 3)}
    (HERE / "seed_spread.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table.round(4).to_string())
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
