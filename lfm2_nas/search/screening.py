"""Constraints: screen hopeless layouts before anything is built, then judge measured ones.

Every budget becomes a named Optuna constraint, a relative excess that is <= 0 when satisfied
(``(value - limit) / limit``), set with ``trial.set_constraint``:

* ``params``: parameter count outside ``[budget] params`` (exact, from the cost model);
* ``attention_layers``: sampled attention-layer count outside ``[space] attention`` (not applied to
  the seeded LFM2 layouts: they are reference points, not samples);
* ``peak_memory``: screened on the cost model's lower bound (weights + the static cache the workload
  needs), then judged on the profiler's measured peak;
* ``decode_ms`` / ``prefill_ms``: screened on the profiler's latency predictor and the roofline floor
  (bytes a decode step reads / measured bandwidth), then judged on the measured medians.

A prediction screens a layout out only when it exceeds the limit by more than
``[budget] screen_margin`` (default 25%): the predictor has an error, and screening exists to skip
hopeless candidates, not borderline ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lfm2_nas import cost
from lfm2_nas.search.config import SearchConfig
from lfm2_nas.search.measurements import Evaluator, LatencyResult
from lfm2_nas.spec import ModelSpec
from lfm2_nas.units import format_bytes, format_count


@dataclass
class Verdict:
    """Constraint values set so far and the reasons of the violated ones."""

    constraints: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    estimates: dict[str, float] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.constraints.values())

    def add(self, name: str, excess: float, reason: str) -> None:
        self.constraints[name] = excess
        if excess > 0:
            self.reasons.append(reason)


def _excess(value: float, limit: float) -> float:
    return (value - limit) / limit


def peak_floor_bytes(spec: ModelSpec, config: SearchConfig) -> int:
    """Memory the profiled process needs at least: the weights (at the backend's scheme's minimum
    bits) plus the cache for the longest sequence of the workload (prompt, or context depth + one
    decoded token)."""
    t = config.target
    longest = max(t.prompt_len, t.context_depth + 1)
    weights = int(cost.weight_bytes(spec, t.dtype) * t.weight_fraction)
    return weights + cost.cache_bytes(spec, longest, t.batch, t.cache_dtype)


def screen(spec: ModelSpec, config: SearchConfig, evaluator: Evaluator, attention_excess: int) -> Verdict:
    """Judge ``spec`` on analytic figures and predictions only (nothing built, nothing trained)."""
    b, margin = config.budget, 1 + config.budget.screen_margin
    verdict = Verdict()
    if attention_excess:
        low, high = config.space.attention
        verdict.add(
            "attention_layers",
            float(attention_excess),
            f"{spec.num_attention_layers} attention layers, outside [space] attention [{low}, {high}]",
        )
    if b.params is not None:
        params, (low, high) = cost.param_count(spec), b.params
        excess = max(_excess(low, params) if params < low else 0.0, _excess(params, high))
        verdict.add(
            "params",
            excess,
            f"{format_count(params)} parameters, outside [{format_count(low)}, {format_count(high)}]",
        )
    if b.peak_bytes is not None:
        floor = peak_floor_bytes(spec, config)
        verdict.estimates["peak_floor_bytes"] = floor
        if floor > b.peak_bytes:
            verdict.add(
                "peak_memory",
                _excess(floor, b.peak_bytes),
                f"weights + cache alone need {format_bytes(floor)} > limit {format_bytes(b.peak_bytes)}",
            )
    predicted = evaluator.predict_latency(spec)
    floor_ms = evaluator.decode_floor_ms(spec)
    if predicted is not None:
        verdict.estimates["predicted_prefill_ms"], verdict.estimates["predicted_decode_ms"] = predicted
    if floor_ms is not None:
        verdict.estimates["decode_floor_ms"] = floor_ms
    for name, limit, guesses in (
        ("decode_ms", b.decode_ms, (("predicted", predicted and predicted[1]), ("roofline floor", floor_ms))),
        ("prefill_ms", b.prefill_ms, (("predicted", predicted and predicted[0]),)),
    ):
        if limit is None:
            continue
        for source, guess in guesses:
            if guess and guess > limit * margin:
                verdict.add(name, _excess(guess, limit), f"{source} {name} {guess:.1f} > limit {limit:g} (+{b.screen_margin:.0%} margin)")
                break
    return verdict


def judge(latency: LatencyResult, config: SearchConfig, verdict: Verdict) -> Verdict:
    """Add the constraints measured by a profile (those not already screened on a prediction)."""
    b = config.budget
    for name, limit, value, show in (
        ("peak_memory", b.peak_bytes, latency.peak_bytes, format_bytes),
        ("decode_ms", b.decode_ms, latency.decode_ms, lambda v: f"{v:.1f} ms"),
        ("prefill_ms", b.prefill_ms, latency.prefill_ms, lambda v: f"{v:.1f} ms"),
    ):
        if limit is None or value is None or name in verdict.constraints:
            continue
        verdict.add(name, _excess(value, limit), f"measured {name} {show(value)} > limit {show(limit)}")
    return verdict
