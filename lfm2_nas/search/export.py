"""Write a study's results: ``trials.csv``, ``pareto.csv``, ``summary.json``, ``pareto.png``, and
HF checkpoints of chosen layouts (:func:`lfm2_nas.checkpoint.build_checkpoint`, as ``lfm2-nas build``).

Tables are written to a temporary file and renamed into place, so a reader never sees half a file.
A checkpoint is the layout with random weights in HF format (``config.json`` + ``model.safetensors``):
``transformers`` loads it, ready for training.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from lfm2_nas.search.config import SearchConfig
from lfm2_nas.search.report import COLUMNS, summarize_study


def _atomic_write(path: Path, write: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_table(rows: list[dict[str, Any]], path: Path) -> Path:
    """``rows`` as CSV with the :data:`~lfm2_nas.search.report.COLUMNS` in order."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return _atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_summary(summary: dict[str, Any], path: Path) -> Path:
    text = json.dumps(summary, indent=2, default=str) + "\n"
    return _atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_plot(rows: list[dict[str, Any]], front: list[dict[str, Any]], path: Path, x: str, y: str) -> Path:
    """The front (``x`` against ``y``) over every measured trial, seeds labelled, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lfm2_nas.search.plot import plot_front

    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_front(rows, front, x=x, y=y, ax=ax)
    fig.tight_layout()
    try:
        return _atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)


def write_results(config: SearchConfig, study: optuna.Study, folder: Path) -> dict[str, Any]:
    """``trials.csv``, ``pareto.csv``, ``summary.json`` and (once something is measured) ``pareto.png``
    into ``folder``; returns the summary."""
    summary = summarize_study(config, study)
    rows, front = summary.pop("rows"), summary["pareto_front"]
    write_table(rows, folder / "trials.csv")
    write_table(front, folder / "pareto.csv")
    write_summary({**summary, "pareto_front": [r["trial"] for r in front]}, folder / "summary.json")
    if any(isinstance(r["decode_ms"], (int, float)) and isinstance(r["quality"], (int, float)) for r in rows):
        write_plot(rows, front, folder / "pareto.png", x="decode_ms", y="quality")
    return summary
