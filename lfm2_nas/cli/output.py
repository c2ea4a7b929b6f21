"""Shared output for CLI commands: a human table or JSON (``--format json``) on stdout."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import typer


class Format(str, Enum):
    table = "table"
    json = "json"


def emit(rows: list[dict[str, Any]] | dict[str, Any], fmt: Format, columns: list[str] | None = None) -> None:
    """Print ``rows`` as JSON (one document) or as an aligned text table of ``columns``."""
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    records = [rows] if isinstance(rows, dict) else rows
    if isinstance(rows, dict):
        width = max(len(k) for k in rows)
        for key, value in rows.items():
            typer.echo(f"{key:<{width}}  {value}")
        return
    columns = columns or list(records[0])
    cells = [[str(r.get(c, "")) for c in columns] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))
