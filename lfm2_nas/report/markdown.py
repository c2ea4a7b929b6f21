"""Markdown: the table behind each plot, and the report document that holds plots and tables.

Numbers are formatted for people here only (GiB = 2^30, ms with sensible precision, percentages);
the plot data itself stays in bytes and milliseconds (and is also written as CSV next to the report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from lfm2_nas.units import format_bytes, format_count

Formatter = Callable[[Any], str]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def ms(value: Any) -> str:
    """Milliseconds with 3 significant digits at least one decimal (``152.3``, ``8.10``, ``0.412``)."""
    if _missing(value):
        return ""
    v = float(value)
    return f"{v:.1f}" if abs(v) >= 100 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"


def nbytes(value: Any) -> str:
    return "" if _missing(value) else format_bytes(float(value))


def count(value: Any) -> str:
    """A parameter count for people: ``354483968 -> '354.5M'``."""
    return "" if _missing(value) else format_count(int(value))


def percent(value: Any) -> str:
    return "" if _missing(value) else f"{100 * float(value):.1f}%"


def signed_percent(value: Any) -> str:
    return "" if _missing(value) else f"{100 * float(value):+.1f}%"


def ratio(value: Any) -> str:
    return "" if _missing(value) else f"{float(value):.2f}x"


def per_second(unit: str, scale: float = 1e9) -> Formatter:
    """A formatter for rates: ``per_second("GB/s")(11.2e9) == "11.20 GB/s"`` (decimal units, 10^9)."""
    return lambda value: "" if _missing(value) else f"{float(value) / scale:.2f} {unit}"


def number(value: Any) -> str:
    if _missing(value):
        return ""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{int(value):,}" if abs(value) >= 100_000 else str(int(value))
    return str(value)


def markdown_table(frame: pd.DataFrame, formats: dict[str, Formatter] | None = None, columns: list[str] | None = None) -> str:
    """``frame`` (``columns`` of it, in order) as a GitHub markdown table; cells through ``formats``
    (column -> function), other numbers through :func:`number`."""
    formats = formats or {}
    columns = columns or list(frame.columns)
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in columns) + "|"
    lines = [header, rule]
    for _, row in frame[columns].iterrows():
        cells = [formats.get(c, number)(row[c]) for c in columns]
        lines.append("| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


@dataclass
class Document:
    """A markdown report: a title, the provenance line, then sections of prose, images and tables."""

    title: str
    provenance: str
    parts: list[str] = field(default_factory=list)

    def section(self, heading: str, text: str = "") -> None:
        text = text.replace("\n", " ")
        self.parts.append(f"## {heading}\n" + (f"\n{text}\n" if text else ""))

    def image(self, path: str, alt: str) -> None:
        self.parts.append(f"![{alt}]({path})\n")

    def table(self, frame: pd.DataFrame, formats: dict[str, Formatter] | None = None, columns: list[str] | None = None,
              caption: str = "") -> None:
        body = markdown_table(frame, formats, columns) if not frame.empty else "_(no rows)_"
        self.parts.append((f"{caption}\n\n" if caption else "") + body + "\n")

    def text(self) -> str:
        return f"# {self.title}\n\n{self.provenance}\n\n" + "\n".join(self.parts)
