"""Append-only result store (JSON Lines) and tidy exports (CSV, JSONL, Parquet).

Each finished row is appended as ONE complete line with a single ``write`` and ``fsync``: a process
killed between rows leaves every earlier row intact. A line cut short by a crash mid-write (no
trailing newline) is ignored on reading and removed before the next append. Exports are written to
a temporary file and renamed into place, so readers never see a half-written table. When the same
key appears more than once (a failed row measured again), the last row wins.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)


class ResultStore:
    """Rows keyed by ``row["key"]`` in a JSON Lines file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every complete row by key (last one wins); a torn final line is skipped."""
        out: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return out
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.endswith("\n"):
                    log.warning("%s:%d: ignoring an incomplete last line (interrupted write)", self.path, number)
                    break
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("%s:%d: ignoring a line that is not JSON", self.path, number)
                    continue
                out[row["key"]] = row
        return out

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows().get(key)

    def append(self, row: dict[str, Any]) -> None:
        """Add one row durably (see module docstring)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()
        data = (json.dumps(_jsonable(row), allow_nan=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _drop_torn_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            f.truncate(data.rfind(b"\n") + 1)


def _jsonable(value: Any) -> Any:
    """NaN/inf -> None (JSON has neither); tuples -> lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_tables(rows: Iterable[dict[str, Any]], out_dir: Path, stem: str = "rows") -> list[Path]:
    """Write ``rows`` as ``<stem>.csv`` and, with pyarrow installed, ``<stem>.parquet`` (the JSON Lines
    form is the store itself). List cells (raw samples) become JSON strings. Returns the paths written.
    """
    import pandas as pd

    flat = pd.DataFrame([_jsonable(r) for r in rows])
    out_dir.mkdir(parents=True, exist_ok=True)
    for column in flat.columns:
        if flat[column].map(lambda v: isinstance(v, list)).any():
            flat[column] = flat[column].map(lambda v: json.dumps(v) if isinstance(v, list) else v)
    written = [_atomic(out_dir / f"{stem}.csv", lambda p: flat.to_csv(p, index=False))]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    written.append(_atomic(out_dir / f"{stem}.parquet", lambda p: flat.to_parquet(p, index=False)))
    return written


def _atomic(path: Path, write: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def read_rows(paths: Iterable[Path | str]) -> list[dict[str, Any]]:
    """Rows from result files (``.jsonl`` stores, ``.csv``, ``.parquet``) or folders holding ``rows.jsonl``
    (searched recursively). A key seen twice keeps its last row."""
    import pandas as pd

    rows: dict[str, dict[str, Any]] = {}
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(path.rglob("rows.jsonl"))
        elif path.exists():
            files = [path]
        else:
            raise FileNotFoundError(f"no results at {path}")
        for file in files:
            if file.suffix == ".jsonl":
                rows.update(ResultStore(file).rows())
            elif file.suffix in (".csv", ".parquet"):
                frame = pd.read_csv(file) if file.suffix == ".csv" else pd.read_parquet(file)
                frame = frame.astype(object).where(frame.notna(), None)
                rows.update({r["key"]: r for r in frame.to_dict(orient="records")})
            else:
                raise ValueError(f"{file}: results must be .jsonl, .csv or .parquet")
    return list(rows.values())
