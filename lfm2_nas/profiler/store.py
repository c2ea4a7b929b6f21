"""The profiler's result store (JSON Lines) and tidy exports (CSV, JSONL, Parquet).

:class:`ProfileStore` keeps measured rows, keyed by ``row["key"]``, in a
:class:`~lfm2_nas.io.LineStore`: each finished row is one complete fsync'ed line, so a process
killed between rows leaves every earlier row intact, and a line cut short by a crash mid-write is
ignored on reading and removed before the next append. Exports are written with
:func:`~lfm2_nas.io.atomic_write`, so readers never see a half-written table. When the same key
appears more than once (a failed row measured again), the last row wins.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from lfm2_nas.io import LineStore, atomic_write


class ProfileStore:
    """Profiled rows keyed by ``row["key"]`` in a JSON Lines file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lines = LineStore(self.path)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every complete row by key (last one wins); a torn final line is skipped."""
        return {row["key"]: row for row in self._lines.records()}

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows().get(key)

    def append(self, row: dict[str, Any]) -> None:
        """Add one row durably (see module docstring); NaN and inf are stored as null."""
        self._lines.append(_jsonable(row), allow_nan=False)




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
    written = [atomic_write(out_dir / f"{stem}.csv", lambda p: flat.to_csv(p, index=False))]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    written.append(atomic_write(out_dir / f"{stem}.parquet", lambda p: flat.to_parquet(p, index=False)))
    return written


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
                rows.update(ProfileStore(file).rows())
            elif file.suffix in (".csv", ".parquet"):
                frame = pd.read_csv(file) if file.suffix == ".csv" else pd.read_parquet(file)
                frame = frame.astype(object).where(frame.notna(), None)
                rows.update({r["key"]: r for r in frame.to_dict(orient="records")})
            else:
                raise ValueError(f"{file}: results must be .jsonl, .csv or .parquet")
    return list(rows.values())
