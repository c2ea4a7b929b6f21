"""Quality results cached by layout, so a layout seen again (re-sampled, retried, or met by a later
study with the same quality settings) costs nothing. (Profiles are cached by the profiler's own
result store, keyed by spec, hardware profile and workload.)

One JSON file per result under ``<study dir>/cache/quality/``, written to a temporary name and
renamed into place (a killed process never leaves half a file), keyed by the spec hash and the
quality settings. Only successful results are kept: a failure may be transient, so it runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from lfm2_nas.search.config import SearchConfig
from lfm2_nas.search.measurements import Evaluator, LatencyResult, QualityScore
from lfm2_nas.spec import ModelSpec


def _key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ResultCache:
    """JSON documents by (kind, key) in a folder; safe for several processes on one machine."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.json"

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(kind, key).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, kind: str, key: str, value: dict[str, Any]) -> None:
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(value, f, default=str)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


class CachedEvaluator:
    """Wraps an :class:`Evaluator`, caching its quality results; ``hits`` counts the evaluations saved."""

    def __init__(self, inner: Evaluator, cache: ResultCache, config: SearchConfig) -> None:
        self.inner = inner
        self.cache = cache
        self.hits = 0
        q = config.quality
        self._scope = (q.tier, q.budget, q.seed, q.options)

    def hardware(self) -> dict[str, Any]:
        return self.inner.hardware()

    def latency(self, spec: ModelSpec) -> LatencyResult:
        return self.inner.latency(spec)

    def quality(self, spec: ModelSpec) -> QualityScore:
        key = _key(spec.spec_hash(), self._scope)
        cached = self.cache.get("quality", key)
        if cached is not None:
            self.hits += 1
            return QualityScore.from_dict(cached)
        result = self.inner.quality(spec)
        if result.ok:
            self.cache.put("quality", key, result.to_dict())
        return result

    def predict_latency(self, spec: ModelSpec) -> tuple[float, float] | None:
        return self.inner.predict_latency(spec)

    def decode_floor_ms(self, spec: ModelSpec) -> float | None:
        return self.inner.decode_floor_ms(spec)

    def update_predictor(self, rows: list[dict[str, Any]]) -> None:
        self.inner.update_predictor(rows)
