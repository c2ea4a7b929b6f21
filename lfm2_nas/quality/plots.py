"""Plots of quality results. Each takes data and an optional axis and returns the axis; saving is
the caller's job."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes


def plot_budget_agreement(rows: pd.DataFrame, a: str, b: str, ax: Axes | None = None) -> Axes:
    """Scatter of each layout's score in column ``a`` (x) against column ``b`` (y), labelled."""
    ax = ax or plt.gca()
    ok = rows[rows["ok"]]
    scores = ok.pivot(index="layout", columns="column", values="score")
    if a in scores and b in scores:
        pair = scores[[a, b]].dropna()
        ax.scatter(pair[a], pair[b])
        for name, (x, y) in pair.iterrows():
            ax.annotate(name, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    metric = ok["metric"][ok["column"] == a].iloc[0] if (ok["column"] == a).any() else "score"
    ax.set_xlabel(f"{a} ({metric})")
    ax.set_ylabel(f"{b} ({metric})")
    ax.set_title(f"proxy quality: {a} vs {b}")
    return ax


def plot_accuracy_sweep(table: pd.DataFrame, x: str, ax: Axes | None = None) -> Axes:
    """Accuracy (y) against ``x`` with one line per ``layout`` (columns: layout, ``x``, accuracy)."""
    ax = ax or plt.gca()
    for layout, group in table.groupby("layout", sort=False):
        group = group.sort_values(x)
        ax.plot(group[x], group["accuracy"], marker="o", label=layout)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(x)
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.legend()
    return ax
