"""Two studies of one search space measured differently (another runtime, quant scheme or machine):
which layouts both measured, how their figures relate, and whether the same layouts win.

A layout is the same in both studies when its spec hash is (the hash covers every shape field). Each
study's figures are also given relative to its reference layout (its first seed, LFM2), because
absolute latencies of two runtimes are not comparable while their ordering is what a search uses.
"Do the same layouts win?" is answered on the layouts both studies measured fully: the non-dominated
set among them under each study's figures (:func:`lfm2_nas.report.front.non_dominated`, the one
dominance), and the rank agreement (Spearman's rho, pandas' ``corr(method="spearman")``) of each
objective. A study's own front may hold layouts the other never measured; those are listed apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lfm2_nas.report.front import minimised, non_dominated
from lfm2_nas.report.study import StudyData

#: Trial statuses that carry measured latencies.
MEASURED = ("measured", "infeasible")
#: Columns kept from each study, suffixed ``_a`` / ``_b`` in :attr:`Comparison.rows`.
FIGURES = ("trial", "quality", "decode_ms", "prefill_ms", "peak_bytes", "feasible", "on_front")


@dataclass(frozen=True)
class Comparison:
    """Study ``a`` against study ``b``: ``rows`` has one row per layout both measured (shape columns,
    then :data:`FIGURES` and ``<objective>_vs_ref`` per study, suffixed ``_a`` / ``_b``, then
    ``front_common_a`` / ``front_common_b``: non-dominated among the fully measured common layouts
    under that study's figures); ``rank_agreement`` Spearman's rho per objective over the common
    layouts; ``reference`` the layout (:func:`layout_label`) both are relative to; ``own_front_only`` per study its
    front trials the other study never measured; ``provenance`` each study's hardware and dates."""

    names: tuple[str, str]
    provenance: tuple[str, str]
    objectives: tuple[tuple[str, str], ...]
    reference: str
    rows: pd.DataFrame
    rank_agreement: dict[str, float]
    own_front_only: tuple[pd.DataFrame, pd.DataFrame]

    @property
    def same_winners(self) -> bool:
        """Whether both studies' figures pick the same non-dominated set among the common layouts."""
        return bool((self.rows["front_common_a"] == self.rows["front_common_b"]).all())


def layout_label(row: Any) -> str:
    """A layout's name in a comparison: its pattern, KV heads and FFN width (the searched fields)."""
    return f"{row.pattern} kv{int(row.kv_heads)} ffn{int(row.ffn_dim)}"


def _measured(data: StudyData) -> pd.DataFrame:
    rows = data.trials[data.trials["status"].isin(MEASURED) & data.trials["decode_ms"].notna()]
    return rows.sort_values("trial").drop_duplicates("spec_hash")  # a repeated layout is served from cache


def _reference_hash(data: StudyData) -> str:
    if not data.seeds:
        raise ValueError(f"study {data.name!r} has no seeded reference layout to compare against")
    first = data.seeds[0]["trial"]
    rows = data.trials[data.trials["trial"] == first]
    return str(rows["spec_hash"].iloc[0])


def _relative(rows: pd.DataFrame, reference: pd.Series, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({f"{c}_vs_ref": rows[c].astype(float) / float(reference[c]) for c in columns}, index=rows.index)


def _front_flags(rows: pd.DataFrame, objectives: tuple[tuple[str, str], ...], suffix: str) -> pd.Series:
    points = {i: tuple(minimised(float(r[f"{name}{suffix}"]), direction) for name, direction in objectives)
              for i, r in rows.iterrows()}
    complete = {i: p for i, p in points.items() if all(math.isfinite(v) for v in p)}
    front = set(non_dominated(list(complete.values())))
    return pd.Series({i: i in complete and complete[i] in front for i in rows.index}, dtype=bool)


def compare_studies(a: StudyData, b: StudyData) -> Comparison:
    """Compare ``a`` with ``b`` on ``a``'s objectives (both studies must measure them) relative to
    their common reference layout (each one's first seed; the two must be the same layout)."""
    objectives = tuple((name, direction) for name, direction in a.objectives)
    missing = [name for name, _ in objectives if name not in b.trials.columns]
    if missing:
        raise ValueError(f"study {b.name!r} has no {', '.join(missing)} figures to compare with {a.name!r}")
    reference = _reference_hash(a)
    if _reference_hash(b) != reference:
        raise ValueError(f"studies {a.name!r} and {b.name!r} were seeded with different reference layouts")
    shape = ["spec_hash", "pattern", "kv_heads", "ffn_dim", "params", "seed"]
    sides = []
    for data, suffix in ((a, "_a"), (b, "_b")):
        rows = _measured(data)
        ref = rows[rows["spec_hash"] == reference]
        if ref.empty:
            raise ValueError(f"study {data.name!r} has no measurement of its reference layout yet")
        latencies = [c for c in ("decode_ms", "prefill_ms", "peak_bytes") if c in rows.columns]
        rows = pd.concat([rows, _relative(rows, ref.iloc[0], latencies)], axis=1)
        keep = [c for c in FIGURES if c in rows.columns] + [f"{c}_vs_ref" for c in latencies]
        sides.append(rows[shape + keep].rename(columns={c: c + suffix for c in keep}))
    common = sides[0].merge(sides[1].drop(columns=shape[1:]), on="spec_hash").reset_index(drop=True)
    common.insert(1, "layout", [layout_label(r) for r in common.itertuples()])
    common["front_common_a"] = _front_flags(common, objectives, "_a")
    common["front_common_b"] = _front_flags(common, objectives, "_b")
    agreement = {name: float(common[f"{name}_a"].astype(float).corr(common[f"{name}_b"].astype(float), method="spearman"))
                 for name, _ in objectives if len(common) >= 3}
    hashes = set(common["spec_hash"])
    own_only = tuple(data.trials[data.trials["on_front"] & ~data.trials["spec_hash"].isin(hashes)] for data in (a, b))
    label = str(common.loc[common["spec_hash"] == reference, "layout"].iloc[0])
    return Comparison((a.name, b.name), (a.provenance, b.provenance), objectives, label, common, agreement, own_only)  # type: ignore[arg-type]


def verdict(comparison: Comparison) -> str:
    """One sentence: whether the same layouts win among the common ones, and where the fronts differ."""
    rows = comparison.rows
    name_a, name_b = comparison.names
    front_a = set(rows.loc[rows["front_common_a"], "layout"])
    front_b = set(rows.loc[rows["front_common_b"], "layout"])
    rho = ", ".join(f"{name} {value:+.2f}" for name, value in comparison.rank_agreement.items() if not math.isnan(value))
    head = (f"{len(rows)} layouts measured in both; rank agreement (Spearman) {rho or 'n/a'}. "
            f"Non-dominated among them: {len(front_a)} by {name_a}'s figures, {len(front_b)} by {name_b}'s, "
            f"{len(front_a & front_b)} in both")
    if front_a == front_b:
        return head + ": the same layouts win."
    only_a = ", ".join(sorted(front_a - front_b)) or "none"
    only_b = ", ".join(sorted(front_b - front_a)) or "none"
    return head + f"; only by {name_a}'s: {only_a}; only by {name_b}'s: {only_b}."


def summary(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON-ready numbers (the CLI's last line)."""
    rows = comparison.rows
    return {
        "studies": list(comparison.names),
        "provenance": list(comparison.provenance),
        "reference": comparison.reference,
        "common_layouts": len(rows),
        "rank_agreement": comparison.rank_agreement,
        "front_common_a": sorted(rows.loc[rows["front_common_a"], "layout"]),
        "front_common_b": sorted(rows.loc[rows["front_common_b"], "layout"]),
        "same_winners": comparison.same_winners,
        "verdict": verdict(comparison),
    }
