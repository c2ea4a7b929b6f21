"""The objectives of a study: names, directions, and the values a trial reports.

Pareto mode optimises the quality proxy together with measured decode ms/token (at the target
context depth), prefill ms and optionally peak memory. Single mode maximises quality alone; the
latency and memory limits of ``[budget]`` then act only as constraints.

A value that was not measured (a screened trial, or quality skipped because the measured latency
already broke a limit) is reported as the worst possible value (``+inf`` when minimising, ``-inf``
when maximising): such trials are infeasible anyway, and no made-up number enters the study.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optuna.study import StudyDirection

from lfm2_nas.quality.result import HIGHER_IS_BETTER
from lfm2_nas.search.config import SearchConfig
from lfm2_nas.search.measurements import LatencyResult, QualityScore

_UNITS = {"decode_ms": "decode_ms_per_token", "prefill_ms": "prefill_ms", "peak_bytes": "peak_bytes"}


@dataclass(frozen=True)
class Objective:
    name: str  # quality | decode_ms | prefill_ms | peak_bytes
    direction: StudyDirection
    label: str  # shown by optuna-dashboard

    @property
    def worst(self) -> float:
        return math.inf if self.direction == StudyDirection.MINIMIZE else -math.inf


def objectives_for(config: SearchConfig) -> list[Objective]:
    """The study's objectives in order (quality first)."""
    tier = config.quality.tier
    out = []
    for name in config.study.objectives:
        if name == "quality":
            higher = HIGHER_IS_BETTER[tier]
            direction = StudyDirection.MAXIMIZE if higher else StudyDirection.MINIMIZE
            out.append(Objective(name, direction, f"quality ({tier})"))
        else:
            out.append(Objective(name, StudyDirection.MINIMIZE, _UNITS[name]))
    return out


def trial_values(
    objectives: list[Objective], latency: LatencyResult | None, quality: QualityScore | None
) -> list[float]:
    """The values a trial reports; anything not measured is the objective's worst value."""
    measured = {
        "quality": quality.score if quality is not None and quality.ok else None,
        "decode_ms": latency.decode_ms if latency is not None and latency.ok else None,
        "prefill_ms": latency.prefill_ms if latency is not None and latency.ok else None,
        "peak_bytes": latency.peak_bytes if latency is not None and latency.ok else None,
    }
    return [o.worst if measured[o.name] is None else float(measured[o.name]) for o in objectives]
