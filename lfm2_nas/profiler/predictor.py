"""Latency predictor: per-phase linear models over the cost model's work terms, fitted to measured rows.

Each phase's time is modelled as a sum of roofline-style terms with non-negative coefficients
(seconds per byte, per FLOP, per layer), fitted by least squares on RELATIVE error (every row
weighted by 1 / its time, which is what the reported mean absolute percentage error measures):

* decode step: matmul weight bytes (read once per step), LM-head bytes, K/V bytes read at the depth,
  the extra matmul FLOPs of batch > 1, per-conv-layer and per-attention-layer overheads, a constant;
* prefill: matmul FLOPs, attention FLOPs (quadratic in the prompt), weight bytes, activation bytes
  (tokens x layers x (h + F)), per-layer overheads, a constant.

One model per (device, dtype, threads) setup; rows from several machines are refused, failed rows
and rows measured on a busy machine are left out. Its error is judged on layouts it did not see:
:func:`held_out_errors` leaves each layout out in turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from lfm2_nas import cost
from lfm2_nas.io import atomic_write_text
from lfm2_nas.profiler.result import spec_from_row
from lfm2_nas.profiler.settings import Settings
from lfm2_nas.spec import ModelSpec

PHASES = ("prefill", "decode")
FEATURES = {
    "prefill": ("matmul_flops", "attention_flops", "weight_bytes", "activation_bytes", "conv_layers",
                "attention_layers", "constant"),
    "decode": ("matmul_weight_bytes", "lm_head_bytes", "kv_read_bytes", "extra_batch_flops", "conv_layers",
               "attention_layers", "constant"),
}
_TARGET = {"prefill": "prefill_ms_median", "decode": "decode_ms_median"}


def features(phase: str, spec: ModelSpec, workload: Settings) -> np.ndarray:
    """The analytic terms of ``phase`` (see module docstring), in :data:`FEATURES` order."""
    b = cost.dtype_bytes(workload.dtype)
    batch, h = workload.batch, spec.hidden_size
    matmul = cost.matmul_flops_per_token(spec)
    head = cost.lm_head_flops_per_token(spec)
    layers = [spec.num_conv_layers, spec.num_attention_layers, 1]
    if phase == "prefill":
        p = workload.prompt_len
        terms = [
            batch * p * matmul,
            batch * p * (p + 1) / 2 * cost.attention_flops_per_position(spec),
            cost.weight_bytes(spec, workload.dtype),
            batch * p * spec.num_layers * (h + spec.ffn_dim) * b,
        ]
    elif phase == "decode":
        terms = [
            matmul / 2 * b,
            head / 2 * b,
            cost.kv_cache_bytes(spec, workload.context_depth + 1, batch, workload.dtype),
            (batch - 1) * (matmul + head),
        ]
    else:
        raise ValueError(f"unknown phase {phase!r}: use prefill or decode")
    return np.asarray(terms + layers, dtype=float)


def setup_key(workload: Settings) -> str:
    """Which fitted model serves a workload: ``device|dtype|threads=N`` for the torch backend,
    ``device|backend quant|threads=N`` for a deployment runtime."""
    s = workload.resolved()
    weights = s.dtype if s.backend == "torch" else f"{s.backend} {s.quant}"
    return f"{s.device}|{weights}|threads={s.threads}"


def _workload_of(row: dict[str, Any]) -> Settings:
    return Settings.from_dict(row)


@dataclass(frozen=True)
class _Sample:
    layout: str
    setup: str
    x: dict[str, np.ndarray]
    y: dict[str, float]


def _samples(rows: Iterable[dict[str, Any]]) -> list[_Sample]:
    out = []
    for row in rows:
        if not _usable(row):
            continue
        spec, workload = spec_from_row(row), _workload_of(row)
        out.append(_Sample(
            layout=spec.spec_hash(),
            setup=setup_key(workload),
            x={p: features(p, spec, workload) for p in PHASES},
            y={p: float(row[_TARGET[p]]) for p in PHASES},
        ))
    return out


def _usable(row: dict[str, Any]) -> bool:
    """A successful row measured on a quiet machine, with both phases' times."""
    return bool(row.get("ok")) and not row.get("busy") and all(_finite(row.get(_TARGET[p])) for p in PHASES)


def _finite(value: Any) -> bool:
    return value is not None and np.isfinite(float(value))


def _fit_phase(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error: minimise ``sum(((x w - y) / y)^2)``, ``w >= 0``."""
    from scipy.optimize import nnls

    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    weighted = x / scale / y[:, None]
    coef, _ = nnls(weighted, np.ones_like(y))
    return coef / scale


class LatencyPredictor:
    """Predicts ``(prefill_ms, decode_ms_per_token)`` of a layout from measured rows of the same machine.

    ``LatencyPredictor().fit(rows)`` with rows from :meth:`ProfileResult.to_row` (dicts or a
    DataFrame); ``predict(spec, workload)``; ``save(path)`` / ``LatencyPredictor.load(path)``.
    """

    def __init__(self) -> None:
        self.coefficients: dict[str, dict[str, list[float]]] = {}
        self.hardware: list[str] = []
        self.rows_used: dict[str, int] = {}

    def fit(self, rows: Iterable[dict[str, Any]] | Any) -> LatencyPredictor:
        """Fit one model per setup (device, dtype, threads) from every ``ok`` row; returns self."""
        rows = _records(rows)
        machines = sorted({str(r["hardware"]).split("@")[0] for r in rows if r.get("ok") and r.get("hardware")})
        if len(machines) > 1:
            raise ValueError(f"rows come from several machines ({', '.join(machines)}): fit one predictor per machine")
        samples = _samples(rows)
        if not samples:
            raise ValueError("no successful rows with prefill and decode times to fit on")
        self.hardware = machines
        self.coefficients, self.rows_used = {}, {}
        for setup in sorted({s.setup for s in samples}):
            group = [s for s in samples if s.setup == setup]
            needed = len(FEATURES["decode"]) + 1
            if len(group) < needed:
                raise ValueError(f"only {len(group)} rows for {setup}; fitting needs at least {needed}")
            self.coefficients[setup] = {
                p: _fit_phase(np.stack([s.x[p] for s in group]), np.array([s.y[p] for s in group])).tolist()
                for p in PHASES
            }
            self.rows_used[setup] = len(group)
        return self

    def predict(self, spec: ModelSpec, workload: Settings) -> tuple[float, float]:
        """``(prefill_ms, decode_ms_per_token)``; LookupError for a setup it was not fitted on."""
        setup = setup_key(workload)
        if setup not in self.coefficients:
            known = ", ".join(self.coefficients) or "none"
            raise LookupError(f"no latency model for {setup}; fitted setups: {known}")
        coef = self.coefficients[setup]
        prefill, decode = (float(features(p, spec, workload) @ np.asarray(coef[p])) for p in PHASES)
        return prefill, decode

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": {p: list(FEATURES[p]) for p in PHASES},
            "hardware": self.hardware,
            "rows_used": self.rows_used,
            "coefficients": self.coefficients,
        }

    def save(self, path: Path | str) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> LatencyPredictor:
        data = json.loads(Path(path).read_text())
        if data.get("features") != {p: list(FEATURES[p]) for p in PHASES}:
            raise ValueError(f"{path} was fitted with other features; fit it again (lfm2-nas profile fit)")
        predictor = cls()
        predictor.coefficients, predictor.hardware = data["coefficients"], data["hardware"]
        predictor.rows_used = data.get("rows_used", {})
        return predictor


def _records(rows: Iterable[dict[str, Any]] | Any) -> list[dict[str, Any]]:
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a DataFrame
        return rows.to_dict(orient="records")
    return list(rows)


def held_out_errors(rows: Iterable[dict[str, Any]] | Any) -> dict[str, Any]:
    """Leave-one-layout-out error: for each layout, fit on every other layout's rows and predict its rows.

    Returns per phase ``mape`` (mean absolute percentage error, a fraction), ``max_ape`` and counts,
    plus every held-out prediction.
    """
    rows = [r for r in _records(rows) if _usable(r)]
    layout_of = [spec_from_row(r).spec_hash() for r in rows]
    layouts = sorted(set(layout_of))
    if len(layouts) < 3:
        raise ValueError(f"held-out evaluation needs rows of at least 3 layouts, got {len(layouts)}")
    predictions = []
    for layout in layouts:
        model = LatencyPredictor().fit([r for r, h in zip(rows, layout_of) if h != layout])
        for row in (r for r, h in zip(rows, layout_of) if h == layout):
            spec, workload = spec_from_row(row), _workload_of(row)
            prefill, decode = model.predict(spec, workload)
            predictions.append({
                "layout": row.get("layout"), "pattern": spec.pattern, "prompt_len": workload.prompt_len,
                "context_depth": workload.context_depth, "batch": workload.batch,
                "prefill_ms": float(row[_TARGET["prefill"]]), "prefill_ms_pred": prefill,
                "decode_ms": float(row[_TARGET["decode"]]), "decode_ms_pred": decode,
            })
    summary: dict[str, Any] = {"layouts": len(layouts), "rows": len(predictions)}
    for phase in PHASES:
        ape = np.array([abs(p[f"{phase}_ms_pred"] - p[f"{phase}_ms"]) / p[f"{phase}_ms"] for p in predictions])
        summary[phase] = {"mape": float(ape.mean()), "max_ape": float(ape.max()), "median_ape": float(np.median(ape))}
    summary["predictions"] = predictions
    return summary
