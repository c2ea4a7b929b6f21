"""Does the proxy rank layouts the way more training would? Rank correlation on a fixed panel.

:data:`PANEL` is fixed: it was chosen before any result was seen and is not to be tuned until the
validation passes (a panel picked to agree would prove nothing). Each layout is evaluated by the
analytic tier, the synthetic tier at the default budget, and the real-text tier at the default
budget and at ``factor`` (4) times it. The figure of merit is the Spearman rank correlation between
the text tier's two budgets (goal: >= 0.8); Kendall's tau and every tier-vs-tier pair are reported
too. Evaluations are cached in a :class:`~lfm2_nas.quality.store.QualityStore`, so an interrupted
validation resumes where it stopped.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats

from lfm2_nas.quality.corpus import load_corpus
from lfm2_nas.quality.evaluate import evaluate
from lfm2_nas.quality.result import QualityResult
from lfm2_nas.quality.store import QualityStore, result_key
from lfm2_nas.resolve import resolve_spec

log = logging.getLogger(__name__)

#: name -> layout (anything :func:`lfm2_nas.resolve.resolve_spec` takes). Chosen before any run:
#: the LFM2 pattern, both pure extremes, single attention layers at either end, evenly spread
#: attention, half the depth, and the two larger official sizes (other FFN ratio, GQA group 4,
#: 30 layers). Depth ranges 8..30, attention layers 0..16.
PANEL: dict[str, str] = {
    "lfm2-350m": "lfm2-350m",
    "all-conv": "lfm2-350m:CCCCCCCCCCCCCCCC",
    "all-attn": "lfm2-350m-all-attn",
    "attn-last": "lfm2-350m:CCCCCCCCCCCCCCCA",
    "attn-first": "lfm2-350m:ACCCCCCCCCCCCCCC",
    "attn-every-4th": "lfm2-350m:CCCACCCACCCACCCA",
    "half-depth": "lfm2-350m:CCACCACA",
    "lfm2-1.2b": "lfm2-1.2b",
    "lfm2-2.6b": "lfm2-2.6b",
}


@dataclass(frozen=True)
class Planned:
    """One evaluation of the validation: a panel layout, a tier and a budget."""

    layout: str
    tier: str
    budget: float

    @property
    def column(self) -> str:
        """Column name in the score table: ``analytic``, ``synthetic@1x``, ``text@4x``."""
        return self.tier if self.tier == "analytic" else f"{self.tier}@{self.budget:g}x"


def plan(panel: dict[str, str], budget: float, factor: float | None, synthetic: bool = True) -> list[Planned]:
    """The evaluations in run order: cheap ones first, so partial results are useful early. Without a
    ``factor``, the text tier runs at ``budget`` only (e.g. more seeds of one budget)."""
    runs = [("analytic", budget), ("text", budget)]
    if synthetic:
        runs.append(("synthetic", budget))
    if factor is not None:
        runs.append(("text", budget * factor))
    return [Planned(name, tier, b) for tier, b in runs for name in panel]


def run_validation(
    store: QualityStore,
    panel: dict[str, str] | None = None,
    budget: float = 1.0,
    factor: float | None = 4.0,
    seed: int = 0,
    synthetic: bool = True,
    options: dict[str, dict[str, Any]] | None = None,
    on_result: Callable[[Planned, QualityResult, bool], None] | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> pd.DataFrame:
    """Evaluate the panel (cached evaluations are reused) and return one row per evaluation.

    ``options[tier]`` goes to that tier's evaluation (e.g. ``{"text": {"corpus": load_corpus(paths)}}``)
    and is part of the cache key; without a corpus the text tier is given the default one, loaded
    here once, so that leaving it out and naming it share one key. ``on_result(planned, result, cached)`` is called after each evaluation. With
    ``limit``, stop before the evaluation that would exceed ``limit`` new (uncached) ones: the rows
    returned then cover only part of the plan, and a later call resumes.
    """
    panel = panel or PANEL
    options = {tier: dict(tier_options) for tier, tier_options in (options or {}).items()}
    text_options = options.setdefault("text", {})
    if text_options.get("corpus") is None:
        text_options["corpus"] = load_corpus(None)
    specs = {name: resolve_spec(text) for name, text in panel.items()}
    rows = []
    new = 0
    for item in plan(panel, budget, factor, synthetic):
        tier_options = options.get(item.tier, {})
        key = result_key(specs[item.layout], item.tier, item.budget, seed, _key_options(item.tier, tier_options))
        result = store.get(key)
        cached = result is not None
        if result is None:
            if item.tier != "analytic":  # the analytic tier is free: never held back, never counted
                if limit is not None and new >= limit:
                    break
                new += 1
            result = evaluate(specs[item.layout], item.tier, item.budget, seed, progress=progress, **tier_options)
            store.put(key, result, layout=item.layout, tier=item.tier, budget=item.budget)
        if on_result:
            on_result(item, result, cached)
        rows.append({
            "layout": item.layout, "pattern": specs[item.layout].pattern, "column": item.column, "tier": item.tier,
            "budget": item.budget, "metric": result.metric, "score": result.score, "goodness": result.goodness,
            "ok": result.ok, "reason": result.reason, "tokens": result.tokens, "seconds": round(result.seconds, 1),
        })
    return pd.DataFrame(rows)


def _key_options(tier: str, options: dict[str, Any]) -> dict[str, Any]:
    """What besides spec, budget and seed decides a tier's result: its options and default config."""
    if tier == "analytic":
        return {}
    if tier == "text":
        from lfm2_nas.quality.text import TextConfig
        from lfm2_nas.quality.tokenizer import DEFAULT_TOKENIZER

        defaults = {"config": TextConfig(), "tokenizer": DEFAULT_TOKENIZER}
    else:
        from lfm2_nas.quality.synthetic import SyntheticConfig

        defaults = {"config": SyntheticConfig()}
    return {k: _describe(v) for k, v in {**defaults, **options}.items() if k not in ("device", "cache_dir", "progress")}


def _describe(value: Any) -> str:
    from lfm2_nas.quality.corpus import Corpus

    return f"corpus {value.content_hash}" if isinstance(value, Corpus) else repr(value)


def score_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Layouts x columns of raw scores, plus ``seconds`` per column; layouts in panel order."""
    order = list(dict.fromkeys(rows["layout"]))
    scores = rows.pivot(index="layout", columns="column", values="score")
    seconds = rows.pivot(index="layout", columns="column", values="seconds").add_suffix(" s")
    columns = list(dict.fromkeys(rows["column"]))
    table = pd.concat([scores[columns], seconds[[f"{c} s" for c in columns if c != "analytic"]]], axis=1)
    table.insert(0, "pattern", rows.drop_duplicates("layout").set_index("layout")["pattern"])
    return table.loc[order]


def rank_correlations(rows: pd.DataFrame) -> pd.DataFrame:
    """Spearman and Kendall rank correlation between every pair of columns, on ``goodness`` (higher
    is better in every tier, so a positive correlation means the two agree). Failed evaluations are
    left out of the pairs they belong to; ``n`` says how many layouts each figure rests on."""
    good = rows[rows["ok"]].pivot(index="layout", columns="column", values="goodness")
    columns = list(dict.fromkeys(rows["column"]))
    out = []
    for a, b in itertools.combinations(columns, 2):
        if a not in good or b not in good:
            continue
        pair = good[[a, b]].dropna()
        if len(pair) < 3:
            continue
        rho, rho_p = stats.spearmanr(pair[a], pair[b])
        tau, tau_p = stats.kendalltau(pair[a], pair[b])
        out.append({"a": a, "b": b, "n": len(pair), "spearman": rho, "spearman_p": rho_p, "kendall": tau, "kendall_p": tau_p})
    return pd.DataFrame(out, columns=["a", "b", "n", "spearman", "spearman_p", "kendall", "kendall_p"])
