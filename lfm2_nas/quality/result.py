"""The one result type every quality tier returns."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

#: The quality tiers, cheapest first: the one list every other module (search file, CLI) reads.
TIERS = ("analytic", "synthetic", "text")
#: Whether each tier's score is better high (parameter count, accuracy) or low (bits per byte).
HIGHER_IS_BETTER = {"analytic": True, "synthetic": True, "text": False}


@dataclass(frozen=True)
class QualityResult:
    """A quality figure for one layout, from one tier, one budget and one seed.

    ``score`` is in the units of ``metric`` (e.g. ``val_bits_per_byte``, lower is better;
    ``mean_accuracy``, higher is better). A failed evaluation (diverged training, say) has
    ``ok=False``, ``score=nan`` and ``reason`` saying what happened and what to change.
    ``tokens`` counts training tokens processed and ``seconds`` is the evaluation's wall time
    (0 for the analytic tier). ``details`` holds tier-specific figures (per-task accuracies, the
    proxy spec, tokens/s, corpus hash, ...), all JSON-able.
    """

    score: float
    metric: str
    higher_is_better: bool
    tokens: int
    seconds: float
    seed: int
    ok: bool = True
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def goodness(self) -> float:
        """``score`` signed so that larger is better whatever the metric (for ranking across tiers)."""
        return self.score if self.higher_is_better else -self.score

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``nan`` score written as ``None``)."""
        out = dataclasses.asdict(self)
        if math.isnan(self.score):
            out["score"] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QualityResult:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["score"] = math.nan if data.get("score") is None else float(data["score"])
        return cls(**data)

    @classmethod
    def failed(
        cls, metric: str, higher_is_better: bool, seed: int, reason: str, tokens: int = 0, seconds: float = 0.0,
        details: dict[str, Any] | None = None,
    ) -> QualityResult:
        """A failed evaluation: ``score=nan``, ``ok=False`` and the ``reason``."""
        return cls(
            score=math.nan, metric=metric, higher_is_better=higher_is_better, tokens=tokens, seconds=seconds,
            seed=seed, ok=False, reason=reason, details=details or {},
        )
