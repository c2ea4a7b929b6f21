"""Profiler result rows as one tidy DataFrame, checked, with the provenance every figure carries.

A row is what :meth:`lfm2_nas.profiler.result.ProfileResult.to_row` writes: the layout label, every
spec field (``spec_*``), the workload (``prompt_len``, ``context_depth``, ``batch``, ``threads``,
``dtype``, ``device``), the timing stats with raw samples (``prefill_ms_*``, ``decode_ms_*``), the
memory split and its prediction, the roofline fractions, the hardware profile label and the
environment. Nothing here measures or recomputes a measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from lfm2_nas.profiler.result import spec_from_row
from lfm2_nas.profiler.store import read_rows
from lfm2_nas.spec import ModelSpec


#: Columns every report needs; a results file without them is not a profiler result.
REQUIRED_COLUMNS = ("layout", "prompt_len", "context_depth", "batch", "dtype", "device", "ok", "hardware")
#: Workload settings that, when they vary inside one report, become part of each line's label.
SETUP_COLUMNS = ("batch", "threads", "dtype", "device", "hardware")


class ResultsError(ValueError):
    """Results that cannot be reported (missing, empty, malformed); the message is one line."""


def results_frame(rows: Iterable[dict[str, Any]], source: str = "results") -> pd.DataFrame:
    """``rows`` as a DataFrame with a ``series`` label per line and a ``context_len`` column.

    ``context_len`` is the cache length the measurement allocated, ``max(prompt_len, context_depth+1)``.
    Raises :class:`ResultsError` when there are no rows or required columns are missing.
    """
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        raise ResultsError(f"{source}: no result rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsError(f"{source}: not profiler results, missing column(s) {', '.join(missing)}")
    frame["ok"] = frame["ok"].map(truthy)
    frame["context_len"] = frame[["prompt_len", "context_depth"]].apply(
        lambda r: max(int(r["prompt_len"]), int(r["context_depth"]) + 1), axis=1
    )
    frame["series"] = series_labels(frame)
    return frame


def check_layouts(frame: pd.DataFrame, names: Iterable[str]) -> None:
    """:class:`ResultsError` naming the first of ``names`` that is not a layout label in ``frame``."""
    known = set(frame["layout"].astype(str))
    for name in names:
        if name not in known:
            raise ResultsError(f"no rows for layout {name!r}; layouts in the results: {', '.join(sorted(known))}")


def layout_spec(frame: pd.DataFrame, layout: str) -> ModelSpec:
    """The spec of ``layout`` (a label in ``frame``), from the ``spec_*`` columns of its first row."""
    return spec_from_row(frame[frame["layout"] == layout].iloc[0].to_dict())


def load_results(paths: Iterable[Path | str]) -> pd.DataFrame:
    """Rows of result files (``rows.jsonl`` stores, ``.csv``, ``.parquet``) or folders holding them."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ResultsError("give at least one results file or folder")
    return results_frame(read_rows(paths), source=", ".join(map(str, paths)))


def series_labels(frame: pd.DataFrame) -> pd.Series:
    """One label per row: the layout, plus every setup column that is not the same in all rows."""
    varying = [c for c in SETUP_COLUMNS if c in frame.columns and frame[c].nunique(dropna=False) > 1]
    if not varying:
        return frame["layout"].astype(str)
    return frame.apply(lambda r: f"{r['layout']} ({', '.join(f'{c} {r[c]}' for c in varying)})", axis=1)


def check_columns(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """``columns`` if ``frame`` has them all, else :class:`ResultsError` naming the unknown ones."""
    columns = list(columns)
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise ResultsError(f"unknown column(s) {', '.join(unknown)}; the results have: {', '.join(frame.columns)}")
    return columns


def samples_of(value: Any) -> list[float]:
    """Raw timing samples of a cell: a list (JSON Lines), a JSON string (CSV) or nothing."""
    if isinstance(value, str):
        value = json.loads(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [float(v) for v in value]


def truthy(value: Any) -> bool:
    """A flag cell as a bool: JSON booleans, CSV strings (``"True"``), numbers; missing is False."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Provenance:
    """Where and when results were measured: stamped on every figure and at the top of every report."""

    hardware: tuple[str, ...]
    cpu_or_gpu: tuple[str, ...]
    measured: str
    setup: str
    made: str

    @property
    def text(self) -> str:
        parts = [f"hardware {', '.join(self.hardware) or 'unknown'}"]
        if self.cpu_or_gpu:
            parts[0] += f" ({', '.join(self.cpu_or_gpu)})"
        parts += [f"measured {self.measured}", self.setup, f"report {self.made}"]
        return " | ".join(p for p in parts if p)


def provenance(frame: pd.DataFrame, today: str) -> Provenance:
    """Hardware profiles, measurement dates and the common setup of ``frame``'s rows."""
    hardware = tuple(sorted(frame["hardware"].dropna().astype(str).unique()))
    devices: list[str] = []
    for column in ("gpu_name", "cpu_model"):
        if column in frame.columns:
            devices += [str(v) for v in frame[column].dropna().unique() if v]
            if devices:
                break
    dates = sorted(str(v)[:10] for v in frame.get("measured_at", pd.Series(dtype=str)).dropna())
    measured = (dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}") if dates else "unknown date"
    setup = []
    for column, fmt in (("dtype", "{}"), ("device", "{}"), ("threads", "{} threads"), ("batch", "batch {}")):
        if column in frame.columns:
            values = frame[column].dropna().unique()
            if len(values) == 1:
                setup.append(fmt.format(values[0]))
    if "torch_version" in frame.columns and frame["torch_version"].nunique() == 1:
        setup.append(f"torch {frame['torch_version'].iloc[0]}")
    return Provenance(hardware, tuple(devices), measured, ", ".join(setup), today)
