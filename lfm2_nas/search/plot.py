"""The Pareto front as a scatter plot: takes rows (from :mod:`lfm2_nas.search.report`), draws on an
axis, returns it; saving is the caller's job."""

from __future__ import annotations

import math
from typing import Any

_LABELS = {
    "quality": "quality",
    "decode_ms": "decode ms/token (measured)",
    "prefill_ms": "prefill ms (measured)",
    "peak_bytes": "peak memory, GiB (measured)",
}


def _value(row: dict[str, Any], key: str) -> float | None:
    v = row.get(key)
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v / 2**30 if key == "peak_bytes" else float(v)


def plot_front(rows: list[dict[str, Any]], front: list[dict[str, Any]], x: str, y: str, ax: Any = None) -> Any:
    """Measured trials in grey (hollow when infeasible), the front in colour joined by a line,
    seeded layouts (LFM2 and its all-attention baseline) annotated."""
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    points = [(r, _value(r, x), _value(r, y)) for r in rows]
    points = [(r, a, b) for r, a, b in points if a is not None and b is not None]
    feasible = [(a, b) for r, a, b in points if r["feasible"]]
    infeasible = [(a, b) for r, a, b in points if not r["feasible"]]
    if feasible:
        ax.scatter(*zip(*feasible), s=18, color="0.6", label="measured, feasible")
    if infeasible:
        ax.scatter(*zip(*infeasible), s=18, facecolors="none", edgecolors="0.6", label="measured, over a limit")
    line = sorted((_value(r, x), _value(r, y)) for r in front if _value(r, x) is not None and _value(r, y) is not None)
    if line:
        ax.plot(*zip(*line), "o-", color="tab:blue", ms=5, label="Pareto front")
    for r, a, b in points:
        if r["seed"]:
            ax.scatter([a], [b], marker="*", s=140, color="tab:red", zorder=3)
            ax.annotate(r["seed"], (a, b), textcoords="offset points", xytext=(6, 4), fontsize=8)
    metric = next((r["quality_metric"] for r in rows if r.get("quality_metric")), "")
    ax.set_xlabel(_LABELS[x] + (f": {metric}" if x == "quality" and metric else ""))
    ax.set_ylabel(_LABELS[y] + (f": {metric}" if y == "quality" and metric else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
