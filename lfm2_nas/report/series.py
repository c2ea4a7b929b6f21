"""The numbers behind each sweep plot, computed from a results frame (:mod:`.results`); no drawing.

Every function returns a tidy DataFrame whose columns are what the plot draws and what the
markdown report tables. Only successful rows (``ok``) enter a series; failed rows are listed by
:func:`failed_rows`.

Pooling: one profiler row measures a prefill at ``prompt_len`` AND a decode step at
``context_depth``. A sweep that crosses prompt lengths with depths therefore measures the same
prefill (or decode) more than once, each time in a fresh process; the latency series pools the raw
samples of all such rows, and says how many rows it pooled.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import numpy as np
import pandas as pd

from lfm2_nas import cost
from lfm2_nas.report.results import check_columns, check_layouts, layout_spec, samples_of, truthy
from lfm2_nas.spec import ModelSpec

#: phase -> (x column, stats prefix of the profiler row)
PHASES = {"prefill": ("prompt_len", "prefill_ms"), "decode": ("context_depth", "decode_ms")}
PANEL_KEY = "panel"


def with_panels(frame: pd.DataFrame, columns: Iterable[str] = ()) -> pd.DataFrame:
    """``frame`` with a ``panel`` column: one plot panel per distinct value of ``columns`` (none: one panel).

    A panel is titled by the longest common prefix of its layouts' names when that is informative
    (``lfm2-350m`` for ``lfm2-350m``, ``lfm2-350m-all-attn``, ``lfm2-350m-dense``), else by its values.
    """
    columns = check_columns(frame, columns)
    out = frame.copy()
    if not columns:
        out[PANEL_KEY] = ""
        return out
    keys = out[columns].astype(str).agg(", ".join, axis=1)
    titles = {}
    for key, layouts in out.groupby(keys)["layout"]:
        prefix = os.path.commonprefix([str(v) for v in layouts.unique()]).rstrip("-_:")
        values = ", ".join(f"{c}={v}" for c, v in zip(columns, key.split(", ")))
        titles[key] = prefix if len(prefix) >= 3 else values
    out[PANEL_KEY] = keys.map(titles)
    return out


def _panels(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if PANEL_KEY in frame.columns else with_panels(frame)


def _in_order(out: pd.DataFrame, frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """``out`` sorted by panel and series in the order they first appear in ``frame`` (the order of
    the sweep file), then by ``x``."""
    panels = {v: i for i, v in enumerate(dict.fromkeys(frame[PANEL_KEY]))}
    series = {v: i for i, v in enumerate(dict.fromkeys(frame["series"]))}
    rank = out[PANEL_KEY].map(panels) * len(series) + out["series"].map(series)
    return out.assign(_rank=rank).sort_values(["_rank", x], kind="stable").drop(columns="_rank").reset_index(drop=True)


def latency_series(frame: pd.DataFrame, phase: str) -> pd.DataFrame:
    """Prefill ms vs prompt length or decode ms/token vs context depth, one line per series.

    Columns: panel, series, layout, x, median_ms, p10_ms, p25_ms, p75_ms, p90_ms (percentiles of the
    pooled raw samples), samples, rows (profiler rows pooled), unstable (a pooled row's samples spread
    more than the profiler accepts) and busy (a pooled row was measured while other processes used the CPU).
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}: use prefill or decode")
    x_col, prefix = PHASES[phase]
    frame = _panels(frame)
    check_columns(frame, [f"{prefix}_samples"])
    records = []
    for (panel, series, x), group in frame[frame["ok"]].groupby([PANEL_KEY, "series", x_col], sort=True):
        samples = np.array([s for cell in group[f"{prefix}_samples"] for s in samples_of(cell)])
        if samples.size == 0:
            continue
        p10, p25, p50, p75, p90 = np.percentile(samples, [10, 25, 50, 75, 90])
        records.append({
            "panel": panel, "series": series, "layout": group["layout"].iloc[0], "x": int(x),
            "median_ms": p50, "p10_ms": p10, "p25_ms": p25, "p75_ms": p75, "p90_ms": p90,
            "samples": int(samples.size), "rows": len(group),
            "unstable": _any(group, f"{prefix}_unstable"), "busy": _any(group, "busy"),
        })
    out = pd.DataFrame(records, columns=[
        "panel", "series", "layout", "x", "median_ms", "p10_ms", "p25_ms", "p75_ms", "p90_ms",
        "samples", "rows", "unstable", "busy",
    ])
    return _in_order(out, frame, "x")


def _any(group: pd.DataFrame, flag: str) -> bool:
    """Whether any row of ``group`` has ``flag`` set (False where the results have no such column)."""
    return bool(group[flag].map(truthy).any()) if flag in group else False


def memory_series(frame: pd.DataFrame) -> pd.DataFrame:
    """Peak memory vs context length (the cache length allocated), measured and predicted, split.

    Measured: ``weights`` and ``cache`` are the process's growth when the model, then the cache,
    were allocated; ``activations`` is the rest of the peak above the start-up baseline. Predicted:
    the cost model's weights and cache bytes and the profiler's first-order activation estimate.
    Each profiler row is its own process, so rows are not pooled: where several rows share a
    (series, context length), the one with the longest prompt is kept (the largest activation
    working set, what a deployment at that context must provision).
    """
    frame = _panels(frame)
    needed = ["peak_bytes", "weights_bytes", "cache_bytes", "peak_bytes_pred", "weights_bytes_pred", "cache_bytes_pred"]
    check_columns(frame, needed)
    ok = frame[frame["ok"] & frame["peak_bytes"].notna()].sort_values(["prompt_len", "peak_bytes"])
    ok = ok.drop_duplicates([PANEL_KEY, "series", "context_len"], keep="last")
    out = pd.DataFrame({
        "panel": ok[PANEL_KEY],
        "series": ok["series"],
        "layout": ok["layout"],
        "context_len": ok["context_len"].astype(int),
        "prompt_len": ok["prompt_len"].astype(int),
        "context_depth": ok["context_depth"].astype(int),
        "weights_bytes": ok["weights_bytes"].astype(float),
        "cache_bytes": ok["cache_bytes"].astype(float),
        "activations_bytes": (ok["peak_bytes"] - ok["weights_bytes"] - ok["cache_bytes"]).clip(lower=0).astype(float),
        "peak_bytes": ok["peak_bytes"].astype(float),
        "weights_bytes_pred": ok["weights_bytes_pred"].astype(float),
        "cache_bytes_pred": ok["cache_bytes_pred"].astype(float),
        "activations_bytes_pred": (ok["peak_bytes_pred"] - ok["weights_bytes_pred"] - ok["cache_bytes_pred"]).astype(float),
        "peak_bytes_pred": ok["peak_bytes_pred"].astype(float),
    })
    out["peak_error"] = (out["peak_bytes_pred"] - out["peak_bytes"]) / out["peak_bytes"]
    return _in_order(out, frame, "context_len")


#: phase -> (x column, [(fraction column, achieved-rate column, peak column)])
ROOFLINE = {
    "decode": ("context_depth", [
        ("decode_bandwidth_fraction", "decode_bytes_per_s", "peak_bandwidth_bytes_per_s"),
        ("decode_flops_fraction", "decode_flops_per_s", "peak_flops_per_s"),
    ]),
    "prefill": ("prompt_len", [("prefill_flops_fraction", "prefill_flops_per_s", "peak_flops_per_s")]),
}


def roofline_series(frame: pd.DataFrame, phase: str) -> pd.DataFrame:
    """Achieved bandwidth / FLOP/s as a fraction of the hardware profile's measured peaks.

    The achieved rate is the cost model's work (bytes a decode step must read, FLOPs of the phase)
    over the row's median time, as the profiler computed it; rows at the same x are combined by
    their median. Columns: panel, series, layout, x, then per metric ``<fraction>``, ``<rate>`` and
    ``<peak>``.
    """
    if phase not in ROOFLINE:
        raise ValueError(f"unknown phase {phase!r}: use prefill or decode")
    x_col, metrics = ROOFLINE[phase]
    columns = [c for metric in metrics for c in metric]
    frame = _panels(frame)
    check_columns(frame, columns)
    ok = frame[frame["ok"]].copy()
    ok[columns] = ok[columns].astype(float)
    grouped = ok.groupby([PANEL_KEY, "series", x_col], sort=True)
    out = grouped[columns].median().reset_index().rename(columns={x_col: "x"})
    out.insert(2, "layout", grouped["layout"].first().values)
    return _in_order(out, frame, "x")


def speedup_series(frame: pd.DataFrame, baseline: str, layout: str) -> pd.DataFrame:
    """How much faster ``layout`` is than ``baseline`` (two layout labels), measured and predicted.

    ``speedup`` = baseline median / layout median at the same prompt length (prefill) or depth
    (decode). ``predicted`` is the cost model's ratio under the phase's bound: bytes a decode step
    must read (bandwidth-bound: weights + K/V at that depth + conv state) and prefill FLOPs
    (compute-bound: matmuls + attention over the prompt). ``kv_bytes`` and ``attention_flops_share``
    are each layout's terms behind that prediction. ``flagged``: either side's latency point was
    flagged unstable or busy by the profiler (the ratio is then as doubtful as that measurement).
    """
    check_layouts(frame, (baseline, layout))
    specs = {name: layout_spec(frame, name) for name in (baseline, layout)}
    records = []
    for phase in PHASES:
        lat = latency_series(frame[frame["layout"].isin([baseline, layout])].assign(panel=""), phase)
        pivot = lat.pivot_table(index="x", columns="layout", values="median_ms")
        if baseline not in pivot or layout not in pivot:
            continue
        flagged = {(int(r.x), r.layout) for r in lat.itertuples() if r.unstable or r.busy}
        for x, row in pivot.dropna().iterrows():
            base_work, own_work, terms = _work(phase, specs[baseline], specs[layout], int(x))
            records.append({
                "phase": phase, "baseline": baseline, "layout": layout, "x": int(x),
                "baseline_ms": row[baseline], "layout_ms": row[layout], "speedup": row[baseline] / row[layout],
                "predicted": base_work / own_work, "predicted_from": "read bytes" if phase == "decode" else "FLOPs",
                "flagged": (int(x), baseline) in flagged or (int(x), layout) in flagged,
                **terms,
            })
    return pd.DataFrame(records)


def suffix_pairs(layouts: Iterable[str], suffixes: Iterable[str]) -> list[tuple[str, str]]:
    """``(layout + suffix, layout)`` for every layout whose suffixed name is also present, e.g. the
    suffix ``-dense`` pairs ``lfm2-350m-dense`` with ``lfm2-350m`` (baseline first)."""
    names = list(dict.fromkeys(layouts))
    return [(name + suffix, name) for name in names for suffix in suffixes if name + suffix in names]


#: How far the cost-model extrapolation looks for the length where a claimed speedup is reached.
CROSSOVER_LIMIT = 1 << 22


def extrapolation(frame: pd.DataFrame, baseline: str, layout: str, claim: float = 2.0,
                  lengths: tuple[int, ...] = (4096, 32768)) -> pd.DataFrame:
    """The cost model's speedup of ``layout`` over ``baseline`` beyond what was measured (nothing
    here is a measurement): the predicted ratio at ``lengths`` and the shortest prompt (prefill) or
    depth (decode) at which it reaches ``claim`` (None: not below :data:`CROSSOVER_LIMIT` tokens)."""
    specs = [layout_spec(frame, name) for name in (baseline, layout)]
    records = []
    for phase in PHASES:
        def ratio(n: int) -> float:
            base_work, own_work, _ = _work(phase, specs[0], specs[1], n)
            return base_work / own_work

        record = {"phase": phase, "baseline": baseline, "layout": layout}
        record.update({f"predicted_at_{n}": ratio(n) for n in lengths})
        record[f"tokens_to_{claim:g}x"] = _first_reaching(ratio, claim)
        records.append(record)
    return pd.DataFrame(records)


def _first_reaching(ratio: Any, target: float) -> int | None:
    """Smallest n in [1, CROSSOVER_LIMIT] with ``ratio(n) >= target`` (ratio non-decreasing in n)."""
    if ratio(CROSSOVER_LIMIT) < target:
        return None
    low, high = 1, CROSSOVER_LIMIT
    if ratio(low) >= target:
        return low
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if ratio(mid) >= target else (mid, high)
    return high


def _work(phase: str, base: ModelSpec, own: ModelSpec, x: int) -> tuple[float, float, dict[str, float]]:
    """(baseline work, layout work, the terms behind them) at prompt length / depth ``x``."""
    decode = phase == "decode"
    terms: dict[str, float] = {}
    for who, spec in (("baseline", base), ("layout", own)):
        terms[f"{who}_kv_bytes"] = cost.kv_cache_bytes(spec, x)
        terms[f"{who}_attention_flops_share"] = cost.attention_flops_share(spec, x, decode)
    if decode:
        return cost.decode_read_bytes(base, x), cost.decode_read_bytes(own, x), terms
    return cost.prefill_flops(base, x), cost.prefill_flops(own, x), terms


def layouts_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The analytic figures of each layout in the results (cost model at the rows' dtype, batch 1):
    parameters, weight bytes, K/V bytes per token, conv-state bytes, pattern and widths."""
    records = []
    for (layout, dtype), group in frame.groupby(["layout", "dtype"], sort=False):
        spec = layout_spec(group, layout)
        summary = cost.summarize(spec, dtype)
        records.append({
            "layout": layout, "pattern": spec.pattern, "params": summary.params,
            "non_embedding_params": summary.non_embedding_params, "hidden_size": spec.hidden_size,
            "ffn_dim": spec.ffn_dim, "heads": spec.num_heads, "kv_heads": spec.num_kv_heads, "dtype": summary.dtype,
            "weight_bytes": summary.weight_bytes, "kv_bytes_per_token": summary.kv_bytes_per_token,
            "conv_state_bytes": summary.conv_state_bytes,
        })
    return pd.DataFrame(records)


def failed_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows that measured nothing, with their reason."""
    failed = frame[~frame["ok"]]
    columns = [c for c in ("layout", "prompt_len", "context_depth", "batch", "dtype", "device", "reason") if c in failed]
    return failed[columns].reset_index(drop=True)
