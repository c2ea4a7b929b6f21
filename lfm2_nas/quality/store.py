"""Finished evaluations cached in an append-only JSON-lines file, so long runs resume.

Each line is one complete record ``{"key": ..., "result": ...}`` appended by a
:class:`~lfm2_nas.io.LineStore` (one locked ``write``, then fsync): an interrupted run leaves at most
one torn last line, which :meth:`QualityStore.load` skips and the next append removes. The key
names everything that decides the result: the layout's content hash, the tier, the budget, the seed
and the options.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from lfm2_nas.io import LineStore
from lfm2_nas.quality.result import QualityResult
from lfm2_nas.spec import ModelSpec

log = logging.getLogger(__name__)


def result_key(spec: ModelSpec, tier: str, budget: float, seed: int, options: dict[str, Any] | None = None) -> str:
    """Stable key of one evaluation: ``<spec hash>-<tier>-b<budget>-s<seed>-<options hash>``."""
    text = json.dumps(options or {}, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{spec.spec_hash()}-{tier}-b{budget:g}-s{seed}-{digest}"


class QualityStore:
    """Quality results by key, backed by ``path`` (created on first write)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lines = LineStore(self.path)
        self._results = self.load()

    def load(self) -> dict[str, QualityResult]:
        """Every complete record in the file (a torn line from an interrupted write is skipped)."""
        results: dict[str, QualityResult] = {}
        for number, record in enumerate(self._lines.records(), 1):
            try:
                results[record["key"]] = QualityResult.from_dict(record["result"])
            except (KeyError, TypeError):
                log.warning("%s: skipping record %d, which is not a quality result", self.path, number)
        return results

    def get(self, key: str) -> QualityResult | None:
        return self._results.get(key)

    def put(self, key: str, result: QualityResult, **extra: Any) -> None:
        """Append one record (plus ``extra`` fields, e.g. the layout's name) atomically."""
        self._lines.append({"key": key, **extra, "result": result.to_dict()}, default=str)
        self._results[key] = result


