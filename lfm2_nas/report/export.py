"""Export a study's results into its folder: ``trials.csv``, ``pareto.csv``, ``summary.json`` and
``pareto.png`` (what ``search run`` leaves behind and ``search export`` rewrites), and a
confirmation's tables into ``confirm/`` (what ``search confirm`` writes).

The rows and front are :mod:`.trials`'s; the plot is the first panel of ``report study``'s Pareto
figure (:func:`lfm2_nas.report.plots.plot_pareto` over :func:`lfm2_nas.report.study.pareto_points`).
Files are written to a temporary file and renamed into place, so a reader never sees half a file.
HF checkpoints of chosen layouts: :func:`lfm2_nas.checkpoint.build_checkpoint`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from lfm2_nas.io import atomic_write, atomic_write_text
from lfm2_nas.report.study import axis_label, confirmed_points, pareto_points, read_study
from lfm2_nas.report.trials import COLUMNS, summarize_study
from lfm2_nas.search.config import SearchConfig


def write_table(rows: list[dict[str, Any]], path: Path) -> Path:
    """``rows`` as CSV with the :data:`~lfm2_nas.report.trials.COLUMNS` in order."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_summary(summary: dict[str, Any], path: Path) -> Path:
    text = json.dumps(summary, indent=2, default=str) + "\n"
    return atomic_write_text(path, text)


def write_plot(points: pd.DataFrame, x_label: str, y_label: str, path: Path,
               confirmed: pd.DataFrame | None = None) -> Path:
    """:func:`~lfm2_nas.report.study.pareto_points` (and :func:`~lfm2_nas.report.study.confirmed_points`)
    drawn by :func:`~lfm2_nas.report.plots.plot_pareto`, as a PNG."""
    from matplotlib.figure import Figure

    from lfm2_nas.report.plots import plot_pareto

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    plot_pareto(points, x_label, y_label, ax=fig.subplots(), confirmed=confirmed)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def write_results(config: SearchConfig, study: optuna.Study, folder: Path) -> dict[str, Any]:
    """``trials.csv``, ``pareto.csv``, ``summary.json`` and (once something is measured) ``pareto.png``
    into ``folder``; returns the summary."""
    summary = summarize_study(config, study)
    data = read_study(study, summary) if summary["rows"] else None
    points = pareto_points(data, x="decode_ms", y="quality") if data is not None else pd.DataFrame()
    rows, front = summary.pop("rows"), summary["pareto_front"]
    write_table(rows, folder / "trials.csv")
    write_table(front, folder / "pareto.csv")
    write_summary({**summary, "pareto_front": [r["trial"] for r in front]}, folder / "summary.json")
    if data is not None and not points.empty:
        write_plot(points, axis_label(data, "decode_ms"), axis_label(data, "quality"), folder / "pareto.png",
                   confirmed_points(data, x="decode_ms", y="quality"))
    return summary


def write_confirmation(result: dict[str, Any], folder: Path) -> None:
    """A confirmation (:func:`lfm2_nas.report.confirmed.summarize_confirmation`) as ``summary.json``,
    ``layouts.csv`` (one row per layout: intervals, and ratios / differences against the reference)
    and ``pairs.csv`` (per pair of layouts, the sign of each objective's difference and the verdict)."""
    write_summary(result, folder / "summary.json")
    rows = []
    for e in result["layouts"]:
        row = {k: e[k] for k in ("trial", "role", "pattern", "rounds", "seeds", "confirmed", "beats_reference", "note")}
        for name in ("quality", "decode_ms", "prefill_ms", "peak_bytes"):
            for part in ("estimate", "low", "high"):
                row[f"{name}_{part}"] = (e[name] or {}).get(part)
            vs = e["vs_reference"].get(name) or {}
            for part in ("estimate", "low", "high"):
                row[f"{name}_vs_reference_{part}"] = vs.get(part)
        rows.append(row)
    for frame, name in ((pd.DataFrame(rows), "layouts.csv"), (pd.DataFrame(result["pairs"]), "pairs.csv")):
        atomic_write(folder / name, lambda tmp, f=frame: f.to_csv(tmp, index=False))
