"""Summary statistics of timing samples, raw samples kept.

Percentiles interpolate linearly between order statistics (numpy's default, "type 7"), so
``median`` of ``[1, 2, 3, 4]`` is 2.5 and ``p90`` of ``1..11`` is 10. ``std`` is the sample
standard deviation (``ddof=1``; 0 for a single sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: A phase whose interquartile range exceeds this fraction of its median is flagged unstable.
UNSTABLE_IQR_OVER_MEDIAN = 0.10

_FIELDS = ("count", "mean", "median", "p90", "p99", "std", "min", "max", "iqr", "iqr_over_median")


@dataclass(frozen=True)
class Stats:
    """Summary of one phase's samples, all in the unit the owner's name gives (``prefill_ms`` -> ms)."""

    count: int
    mean: float
    median: float
    p90: float
    p99: float
    std: float
    min: float
    max: float
    iqr: float
    samples: tuple[float, ...]

    @property
    def iqr_over_median(self) -> float:
        """Interquartile range relative to the median: the spread measure behind :attr:`unstable`."""
        return self.iqr / self.median if self.median > 0 else float("inf")

    @property
    def unstable(self) -> bool:
        """True when ``iqr_over_median`` exceeds :data:`UNSTABLE_IQR_OVER_MEDIAN` (0.10)."""
        return self.iqr_over_median > UNSTABLE_IQR_OVER_MEDIAN

    @property
    def cv(self) -> float:
        """Coefficient of variation ``std / mean``."""
        return self.std / self.mean if self.mean > 0 else float("inf")

    def to_flat(self, prefix: str) -> dict[str, Any]:
        """Columns ``{prefix}_{count,mean,...}``, ``{prefix}_unstable`` and ``{prefix}_samples``."""
        out: dict[str, Any] = {f"{prefix}_{name}": getattr(self, name) for name in _FIELDS}
        out[f"{prefix}_unstable"] = self.unstable
        out[f"{prefix}_samples"] = list(self.samples)
        return out

    @classmethod
    def from_flat(cls, row: dict[str, Any], prefix: str) -> Stats | None:
        """Inverse of :meth:`to_flat` (recomputed from the raw samples); None when the row has none."""
        samples = row.get(f"{prefix}_samples")
        if samples is None or (isinstance(samples, float) and np.isnan(samples)) or len(samples) == 0:
            return None
        return summarize(samples)


def summarize(samples: Sequence[float]) -> Stats:
    """:class:`Stats` of ``samples`` (at least one)."""
    if len(samples) == 0:
        raise ValueError("cannot summarise zero samples")
    x = np.asarray(samples, dtype=float)
    p25, median, p75, p90, p99 = np.percentile(x, [25, 50, 75, 90, 99])
    return Stats(
        count=int(x.size),
        mean=float(x.mean()),
        median=float(median),
        p90=float(p90),
        p99=float(p99),
        std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min=float(x.min()),
        max=float(x.max()),
        iqr=float(p75 - p25),
        samples=tuple(float(v) for v in x),
    )
