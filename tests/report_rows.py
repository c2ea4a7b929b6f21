"""Synthetic profiler rows for report tests: the columns ``ProfileResult.to_row`` writes, made-up values."""

from __future__ import annotations

from typing import Any

from lfm2_nas import cost
from lfm2_nas.registry import get_spec

HARDWARE = "cpu-test-2cpu@2026-01-02"


def row(layout: str, prompt_len: int, context_depth: int, prefill: list[float], decode: list[float],
        **overrides: Any) -> dict[str, Any]:
    """One successful row of registered variant ``layout`` with the given raw samples (ms)."""
    spec = get_spec(layout)
    weights = cost.weight_bytes(spec)
    cache = cost.cache_bytes(spec, max(prompt_len, context_depth + 1))
    out: dict[str, Any] = {
        "key": f"{layout}-{prompt_len}-{context_depth}-{overrides.get('batch', 1)}",
        "layout": layout,
        **{f"spec_{k}": v for k, v in spec.to_dict().items()},
        "prompt_len": prompt_len, "context_depth": context_depth, "batch": 1, "dtype": "float32",
        "device": "cpu", "threads": 2, "ok": True, "reason": None,
        "prefill_ms_samples": prefill, "decode_ms_samples": decode,
        "prefill_ms_unstable": False, "decode_ms_unstable": False,
        "weights_bytes": weights, "cache_bytes": cache, "peak_bytes": weights + cache + 1000,
        "weights_bytes_pred": weights, "cache_bytes_pred": cache, "peak_bytes_pred": weights + cache + 500,
        "decode_bandwidth_fraction": 0.5, "decode_bytes_per_s": 5e9, "peak_bandwidth_bytes_per_s": 10e9,
        "decode_flops_fraction": 0.01, "decode_flops_per_s": 1e9, "peak_flops_per_s": 100e9,
        "prefill_flops_fraction": 0.4, "prefill_flops_per_s": 40e9,
        "hardware": HARDWARE, "measured_at": "2026-01-02T10:00:00+00:00", "cpu_model": "Test CPU",
        "torch_version": "2.13.0+cpu",
    }
    out.update(overrides)
    return out


def failed(layout: str, prompt_len: int, context_depth: int, reason: str = "out of memory") -> dict[str, Any]:
    """A row that measured nothing."""
    out = row(layout, prompt_len, context_depth, [], [])
    out.update(ok=False, reason=reason, prefill_ms_samples=None, decode_ms_samples=None, peak_bytes=None)
    return out
