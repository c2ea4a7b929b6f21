"""Finished evaluations cached in an append-only JSON-lines file, so long runs resume.

Each line is one complete record ``{"key": ..., "result": ...}`` written with a single ``write``
on a file opened for appending and then fsync'ed: an interrupted run leaves at most one torn last
line, which :meth:`ResultStore.load` skips. The key names everything that decides the result:
the layout's content hash, the tier, the budget, the seed and the options.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from lfm2_nas.quality.result import QualityResult
from lfm2_nas.spec import ModelSpec

log = logging.getLogger(__name__)


def result_key(spec: ModelSpec, tier: str, budget: float, seed: int, options: dict[str, Any] | None = None) -> str:
    """Stable key of one evaluation: ``<spec hash>-<tier>-b<budget>-s<seed>-<options hash>``."""
    text = json.dumps(options or {}, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{spec.spec_hash()}-{tier}-b{budget:g}-s{seed}-{digest}"


class ResultStore:
    """Results by key, backed by ``path`` (created on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._results = self.load()

    def load(self) -> dict[str, QualityResult]:
        """Every complete record in the file (a torn line from an interrupted write is skipped)."""
        results: dict[str, QualityResult] = {}
        if not self.path.exists():
            return results
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            try:
                record = json.loads(line)
                results[record["key"]] = QualityResult.from_dict(record["result"])
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s:%d: skipping an incomplete record", self.path, number)
        return results

    def get(self, key: str) -> QualityResult | None:
        return self._results.get(key)

    def put(self, key: str, result: QualityResult, **extra: Any) -> None:
        """Append one record (plus ``extra`` fields, e.g. the layout's name) atomically."""
        line = json.dumps({"key": key, **extra, "result": result.to_dict()}, default=str) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # end a torn line left by an interrupted write, keep this record whole
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self._results[key] = result
