"""What a trial measures, as plain data, and the interface of whatever measures it.

The search only sees these small records; :mod:`lfm2_nas.search.evaluate` fills them from the
profiler and the quality proxies (the one module that knows those APIs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from lfm2_nas.spec import ModelSpec


@dataclass(frozen=True)
class LatencyResult:
    """One full-size profile of a layout on the target: medians, peak memory, and why it failed."""

    ok: bool
    reason: str = ""
    prefill_ms: float | None = None
    decode_ms: float | None = None  # per token, at the workload's context depth
    peak_bytes: int | None = None
    unstable: bool = False  # the profiler flagged the spread of its samples
    row: dict[str, Any] = field(default_factory=dict)  # the profiler's own result row (scalars only)


@dataclass(frozen=True)
class QualityScore:
    """One quality-proxy evaluation: the tier's metric and its direction."""

    ok: bool
    reason: str = ""
    score: float | None = None
    metric: str = ""
    higher_is_better: bool = True
    tokens: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


class Evaluator(Protocol):
    """Measures layouts on this machine. The real one is :class:`lfm2_nas.search.evaluate.Measurer`."""

    def hardware(self) -> dict[str, Any]:
        """This machine's hardware profile (``slug`` included): recorded with every trial."""
        ...

    def latency(self, spec: ModelSpec) -> LatencyResult:
        """Profile ``spec`` at full size on the target workload."""
        ...

    def quality(self, spec: ModelSpec) -> QualityScore:
        """Evaluate ``spec``'s quality proxy at the configured tier and budget."""
        ...

    def predict_latency(self, spec: ModelSpec) -> tuple[float, float] | None:
        """Predicted ``(prefill_ms, decode_ms)``, or None while no predictor is available."""
        ...

    def decode_floor_ms(self, spec: ModelSpec) -> float | None:
        """A lower bound on decode ms/token: bytes one step must read / measured read bandwidth."""
        ...

    def update_predictor(self, rows: list[dict[str, Any]]) -> None:
        """Refit the latency predictor from profiler rows measured on this hardware."""
        ...
