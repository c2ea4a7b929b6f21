"""Assemble reports: compute each plot's data, draw it, save PNG + SVG + the table as CSV, and
write ``report.md`` with every plot and the table behind it. The CLI calls one function per report.

Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state, no backend switch),
saved with the Agg/SVG renderers. A report is built in a fresh folder beside its output folder and
moved into place when complete, so a report that fails part-way writes nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from lfm2_nas.report import markdown as md
from lfm2_nas.report import plots
from lfm2_nas.report.confirmed import describe
from lfm2_nas.report.layout import layout_caption, layout_strip
from lfm2_nas.report.results import check_layouts, layout_spec, provenance
from lfm2_nas.report.series import (
    PANEL_KEY,
    PHASES,
    extrapolation,
    failed_rows,
    latency_series,
    layouts_table,
    memory_series,
    roofline_series,
    speedup_series,
    with_panels,
)
from lfm2_nas.report.compare import Comparison, verdict
from lfm2_nas.report.study import (
    LABELS,
    REFERENCE,
    StudyData,
    axis_label,
    confirmed_points,
    front_layouts,
    hypervolume_history,
    pareto_points,
)
from lfm2_nas.spec import ModelSpec

FIGURE_FORMATS = ("png", "svg")


@dataclass
class Written:
    """The files a report wrote: ``report.md``, its figures (PNG and SVG) and tables (CSV)."""

    report: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)


def today() -> str:
    """The report date stamped on figures (ISO, local)."""
    return dt.date.today().isoformat()


def _publish(out: Path, build: Callable[[Path], Written]) -> Written:
    """Run ``build`` in a fresh folder beside ``out``, then move what it wrote into ``out`` file by
    file (each move atomic): a report that fails part-way leaves ``out`` as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        written = build(stage)
        out.mkdir(exist_ok=True)
        moved = {path: out / path.name for path in stage.iterdir()}
        for source, target in moved.items():
            os.replace(source, target)
        return Written(moved[written.report], [moved[p] for p in written.figures], [moved[p] for p in written.tables])
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def save_figure(fig: Any, out: Path, stem: str, stamp_text: str) -> list[Path]:
    """Stamp ``fig`` with its provenance and save ``<out>/<stem>.png`` and ``.svg``."""
    plots.stamp(fig, stamp_text)
    paths = []
    for fmt in FIGURE_FORMATS:
        paths.append(out / f"{stem}.{fmt}")
        fig.savefig(paths[-1], format=fmt, dpi=130, bbox_inches="tight")
    return paths


def save_table(frame: pd.DataFrame, out: Path, stem: str) -> Path:
    frame.to_csv(out / f"{stem}.csv", index=False)
    return out / f"{stem}.csv"


def _grid(panels: int, rows: int = 1, max_cols: int = 3, width: float = 4.8, height: float = 3.5,
          suptitle: str = "") -> tuple[Any, list[list[Any]]]:
    """A figure with ``rows`` x ``panels`` axes (wrapped to ``max_cols`` columns when ``rows`` is 1)."""
    from matplotlib.figure import Figure

    cols = min(panels, max_cols) if rows == 1 else panels
    grid_rows = -(-panels // cols) if rows == 1 else rows
    fig = Figure(figsize=(width * cols, height * grid_rows + 0.7), layout="constrained")
    axes = fig.subplots(grid_rows, cols, squeeze=False)
    if rows == 1:
        flat = [ax for row in axes for ax in row]
        for ax in flat[panels:]:
            ax.set_visible(False)
        axes = [flat[:panels]]
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    return fig, [list(r) for r in axes]


def _by_panel(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [(str(k), g) for k, g in frame.groupby(PANEL_KEY, sort=False)]


LATENCY_FORMATS = {c: md.ms for c in ("median_ms", "p10_ms", "p25_ms", "p75_ms", "p90_ms")}
MEMORY_FORMATS = {c: md.nbytes for c in (
    "weights_bytes", "cache_bytes", "activations_bytes", "peak_bytes",
    "weights_bytes_pred", "cache_bytes_pred", "activations_bytes_pred", "peak_bytes_pred")} | {"peak_error": md.signed_percent}
ROOFLINE_FORMATS = {
    "decode_bandwidth_fraction": md.percent, "decode_flops_fraction": md.percent, "prefill_flops_fraction": md.percent,
    "decode_bytes_per_s": md.per_second("GB/s"), "peak_bandwidth_bytes_per_s": md.per_second("GB/s"),
    "decode_flops_per_s": md.per_second("GFLOP/s"), "prefill_flops_per_s": md.per_second("GFLOP/s"),
    "peak_flops_per_s": md.per_second("GFLOP/s"),
}
LAYOUT_FORMATS = {"params": md.count, "non_embedding_params": md.count, "weight_bytes": md.nbytes,
                  "kv_bytes_per_token": md.nbytes, "conv_state_bytes": md.nbytes}
SPEEDUP_FORMATS = {
    "baseline_ms": md.ms, "layout_ms": md.ms, "speedup": md.ratio, "predicted": md.ratio,
    "baseline_kv_bytes": md.nbytes, "layout_kv_bytes": md.nbytes,
    "baseline_attention_flops_share": md.percent, "layout_attention_flops_share": md.percent,
}


def sweep_report(frame: pd.DataFrame, out: Path, title: str = "Sweep report", panel_by: Sequence[str] = (),
                 compare: Iterable[tuple[str, str]] = ()) -> Written:
    """Latency, memory and roofline plots (plus speedups of each ``(baseline, layout)`` pair in
    ``compare``) of a results frame, with their tables, into ``out``."""
    pairs = list(compare)
    check_layouts(frame, [name for pair in pairs for name in pair])
    frame = with_panels(frame, panel_by)
    return _publish(out, lambda stage: _sweep_report(frame, stage, title, pairs))


@dataclass
class _Builder:
    """One report being written: its folder, markdown document, stamp and the files written so far."""

    out: Path
    title: str
    stamp: str
    doc: md.Document = field(init=False)
    written: Written = field(init=False)

    def __post_init__(self) -> None:
        self.doc = md.Document(self.title, f"_{self.stamp}_")
        self.written = Written(self.out / "report.md")

    def figure(self, fig: Any, stem: str, alt: str) -> None:
        """Save ``fig`` as ``<stem>.png``/``.svg`` (stamped) and show it in the document."""
        self.written.figures += save_figure(fig, self.out, stem, self.stamp)
        self.doc.image(f"{stem}.png", alt)

    def table(self, frame: pd.DataFrame, stem: str, formats: dict[str, md.Formatter], x_name: str = "x",
              caption: str = "") -> None:
        """Save ``frame`` as ``<stem>.csv`` and show it (see :func:`table_view`) in the document."""
        self.written.tables.append(save_table(frame, self.out, stem))
        self.doc.table(table_view(frame, x_name), formats, caption=caption)

    def finish(self) -> Written:
        self.written.report.write_text(self.doc.text())
        return self.written


def _sweep_report(frame: pd.DataFrame, out: Path, title: str, pairs: list[tuple[str, str]]) -> Written:
    if not frame["ok"].any():
        raise ValueError("no successful rows to report: every row failed (see their 'reason')")
    report = _Builder(out, title, provenance(frame, today()).text)
    _layouts_section(report, frame)
    _latency_section(report, frame)
    _memory_section(report, frame)
    _roofline_section(report, frame)
    if pairs:
        _speedup_section(report, frame, pairs)
    failed = failed_rows(frame)
    if not failed.empty:
        report.doc.section("Failed rows", f"{len(failed)} row(s) measured nothing:")
        report.doc.table(failed)
    return report.finish()


def _layouts_section(report: _Builder, frame: pd.DataFrame) -> None:
    layouts = layouts_table(frame)
    report.doc.section("Layouts", "Analytic figures from the cost model (batch 1, the rows' dtype); the strips show "
                       "which operator sits in each layer and the parameters of each block.")
    names = list(dict.fromkeys(layouts["layout"]))
    dtype = str(layouts["dtype"].iloc[0]) if layouts["dtype"].nunique() == 1 else "float32"
    report.figure(_strips([(name, layout_spec(frame, name)) for name in names], dtype), "layouts", "layout strips")
    report.table(layouts, "layouts", LAYOUT_FORMATS)


def _latency_section(report: _Builder, frame: pd.DataFrame) -> None:
    report.doc.section("Latency", "Median of the raw samples; bars: interquartile range; band: p10-p90. Rows "
                       "measuring the same prefill (or decode depth) are pooled. Hollow markers: the profiler "
                       "flagged the row unstable (IQR/median > 0.10); red crosses: measured while other processes "
                       "used the CPU (busy).")
    for phase in ("prefill", "decode"):
        series = latency_series(frame, phase)
        panels = _by_panel(series)
        fig, axes = _grid(len(panels), suptitle=f"{report.title}: {phase} latency")
        for ax, (panel, data) in zip(axes[0], panels):
            plots.plot_latency(data, phase, ax=ax, title=panel)
        report.figure(fig, phase, f"{phase} latency")
        report.table(series, phase, LATENCY_FORMATS, PHASES[phase][0])


def _memory_section(report: _Builder, frame: pd.DataFrame) -> None:
    series = memory_series(frame)
    names = list(dict.fromkeys(zip(series[PANEL_KEY], series["series"])))
    fig, axes = _grid(max(len(names), 1), suptitle=f"{report.title}: peak memory, measured vs cost model")
    for ax, (panel, name) in zip(axes[0], names):
        plots.plot_memory(series[(series[PANEL_KEY] == panel) & (series["series"] == name)], ax=ax, title=name)
    plots.memory_legend(fig)
    report.doc.section("Peak memory", "Measured growth above the process's start-up memory (weights, cache, and the "
                       "rest of the peak as activations) against the cost model (weights, cache) and the profiler's "
                       "activation estimate. Where several rows share a context length, the one with the longest "
                       "prompt is shown.")
    report.figure(fig, "memory", "peak memory")
    report.table(series, "memory", MEMORY_FORMATS)


def _roofline_section(report: _Builder, frame: pd.DataFrame) -> None:
    report.doc.section("Roofline", "Achieved rate = the cost model's work (bytes a decode step must read; FLOPs of the "
                       "phase) over the median time, as a fraction of the hardware profile's measured peak read "
                       "bandwidth and matmul throughput.")
    decode, prefill = roofline_series(frame, "decode"), roofline_series(frame, "prefill")
    panels = list(dict.fromkeys(decode[PANEL_KEY]))
    fig, axes = _grid(len(panels), rows=2, suptitle=f"{report.title}: fraction of the measured roofline")
    for col, panel in enumerate(panels):
        prefix = f"{panel}: " if panel else ""
        plots.plot_roofline(decode[decode[PANEL_KEY] == panel], "decode_bandwidth_fraction", "decode", ax=axes[0][col],
                            title=f"{prefix}decode read bandwidth")
        plots.plot_roofline(prefill[prefill[PANEL_KEY] == panel], "prefill_flops_fraction", "prefill", ax=axes[1][col],
                            title=f"{prefix}prefill FLOP/s")
    report.figure(fig, "roofline", "fraction of the measured roofline")
    for phase, data in (("decode", decode), ("prefill", prefill)):
        report.table(data, f"roofline_{phase}", ROOFLINE_FORMATS, PHASES[phase][0], caption=f"Roofline, {phase}:")


def _speedup_section(report: _Builder, frame: pd.DataFrame, pairs: list[tuple[str, str]]) -> None:
    speedups = pd.concat([speedup_series(frame, base, layout) for base, layout in pairs], ignore_index=True)
    panel_of = dict(zip(frame["layout"], frame[PANEL_KEY]))
    speedups.insert(0, PANEL_KEY, speedups["layout"].map(panel_of))
    panels = list(dict.fromkeys(speedups[PANEL_KEY]))
    fig, axes = _grid(len(panels), rows=2, suptitle=f"{report.title}: speedup, measured vs cost model")
    for col, panel in enumerate(panels):
        for row, phase in enumerate(("prefill", "decode")):
            prefix = f"{panel}: " if panel else ""
            plots.plot_speedup(speedups[speedups[PANEL_KEY] == panel], phase, ax=axes[row][col],
                               title=f"{prefix}{phase} speedup")
    report.doc.section("Speedup", "speedup = baseline median / layout median. Cost model: the ratio of bytes a decode "
                       "step must read (weights + K/V at that depth + conv state; bandwidth-bound) and of prefill "
                       "FLOPs (matmuls + attention over the prompt; compute-bound). Hollow markers (`flagged`): "
                       "the ratio rests on a measurement flagged unstable or busy.")
    report.figure(fig, "speedup", "speedup")
    report.table(speedups, "speedup", SPEEDUP_FORMATS, "tokens")
    beyond = pd.concat([extrapolation(frame, base, layout) for base, layout in pairs], ignore_index=True)
    report.table(beyond, "extrapolation", {c: md.ratio for c in beyond.columns if c.startswith("predicted_at_")},
                 caption="Cost-model extrapolation, NOT measured: the predicted speedup at longer prompts/depths, and "
                         "the shortest length at which it reaches 2x (empty: not below 4M tokens):")


def table_view(table: pd.DataFrame, x_name: str = "x") -> pd.DataFrame:
    """What the markdown shows of a plot's table: without a panel column when there is one panel,
    without ``layout`` where it repeats ``series``, and ``x`` named for what it is."""
    view = table.rename(columns={"x": x_name})
    if PANEL_KEY in view and (view[PANEL_KEY] == "").all():
        view = view.drop(columns=[PANEL_KEY])
    if {"layout", "series"} <= set(view.columns) and (view["layout"] == view["series"]).all():
        view = view.drop(columns=["layout"])
    return view


STUDY_FORMATS = {"params": md.count, "decode_ms": md.ms,
                 "prefill_ms": md.ms, "peak_bytes": md.nbytes, "quality": md.number}


def study_report(data: StudyData, out: Path, latency: Sequence[str] = ("decode_ms", "prefill_ms")) -> Written:
    """Pareto plots (quality vs each latency objective, peak memory as colour, the seeded LFM2
    layout and its all-attention baseline marked), the hypervolume history, and their tables."""
    return _publish(out, lambda stage: _study_report(data, stage, latency))


def _study_report(data: StudyData, out: Path, latency: Sequence[str]) -> Written:
    panels = [(x, pareto_points(data, x=x)) for x in latency]
    panels = [(x, points) for x, points in panels if not points.empty]
    if not panels:
        raise ValueError(f"study {data.name!r} has no trial with both quality and a latency measured yet")
    report = _Builder(out, f"Study {data.name}", f"{data.provenance} | report {today()}")
    fig, axes = _grid(len(panels), width=6.0, height=4.4, suptitle=f"Study {data.name}: quality vs latency")
    for ax, (x, points) in zip(axes[0], panels):
        plots.plot_pareto(points, axis_label(data, x), axis_label(data, "quality"), ax=ax,
                          confirmed=confirmed_points(data, x=x))
    objectives = ", ".join(f"{name} ({direction})" for name, direction in data.objectives)
    report.doc.section("Pareto front", f"Objectives: {objectives}. Colour: measured peak memory. Black rings: the "
                       "study's Pareto front over all its objectives; the step line: trials no other feasible trial "
                       "beats on both plotted axes.")
    report.figure(fig, "pareto", "Pareto front")
    columns = ["trial", "seed", "pattern", "params", "quality", "decode_ms", "prefill_ms", "peak_bytes"]
    report.table(data.trials[data.trials["on_front"]][columns], "pareto", STUDY_FORMATS, caption="Pareto-front trials:")
    seeds = pd.DataFrame(list(data.seeds), columns=["seed", "trial", "status", "pattern", "placement"])
    report.doc.table(seeds, caption="Where the seeded layouts land:")
    if data.confirmation:
        _confirmation_section(report, data.confirmation)
    report.written.tables.append(save_table(data.trials, out, "trials"))

    history, bounds = hypervolume_history(data)
    fig, axes = _grid(1, width=6.0, height=3.6)
    plots.plot_hypervolume(history, ax=axes[0][0], title=f"Study {data.name}: hypervolume history")
    scaling = "; ".join(f"{name}: best {best:.4g}, worst {worst:.4g}" for name, (best, worst) in bounds.items())
    report.doc.section("Hypervolume history", f"Hypervolume of the feasible measured trials so far over all "
                       f"objectives, each scaled so the best observed value is 0 and the worst 1, against the "
                       f"reference point {REFERENCE} on each ({scaling}).")
    report.figure(fig, "hypervolume", "hypervolume history")
    report.table(history, "hypervolume", {"hypervolume": md.number})

    layouts = front_layouts(data)
    if layouts:
        report.doc.section("Layouts", "The seeded layouts and the Pareto-front trials with the best quality.")
        report.figure(_strips(layouts, "float32"), "layouts", "front layouts")
    return report.finish()


COMPARE_FORMATS = {"params": md.count} | {f"{c}_{s}": f for s in ("a", "b") for c, f in (
    ("decode_ms", md.ms), ("prefill_ms", md.ms), ("peak_bytes", md.nbytes), ("quality", md.number),
    ("decode_ms_vs_ref", md.ratio), ("prefill_ms_vs_ref", md.ratio), ("peak_bytes_vs_ref", md.ratio))}


def compare_report(comparison: Comparison, out: Path) -> Written:
    """Study A against study B on the layouts both measured: latency relative to the reference in
    each (scatter against the diagonal), the non-dominated common layouts under each, the table."""
    return _publish(out, lambda stage: _compare_report(comparison, stage))


def _compare_report(comparison: Comparison, out: Path) -> Written:
    name_a, name_b = comparison.names
    rows = comparison.rows
    report = _Builder(out, f"Study {name_a} (A) vs {name_b} (B)", f"A: {comparison.provenance[0]} | B: {comparison.provenance[1]} | reference {comparison.reference} | report {today()}")
    report.doc.section("Do the same layouts win?", verdict(comparison))
    columns = [c for c in ("decode_ms", "prefill_ms") if f"{c}_vs_ref_a" in rows and f"{c}_vs_ref_b" in rows]
    fig, axes = _grid(len(columns), width=5.2, height=4.6, suptitle="relative to the reference layout, A vs B")
    for ax, column in zip(axes[0], columns):
        plots.plot_agreement(rows, column, LABELS[column], comparison.names, ax=ax)
    report.figure(fig, "agreement", "A vs B relative latencies")
    shown = ["layout", "seed", "params"] + [f"{c}_{s}" for c in ("quality", "decode_ms", "decode_ms_vs_ref", "prefill_ms",
                                                                 "prefill_ms_vs_ref") for s in ("a", "b")]
    shown += ["front_common_a", "front_common_b"]
    report.table(rows[shown].sort_values("decode_ms_vs_ref_b"), "common", COMPARE_FORMATS,
                 caption="Layouts measured in both (A, B suffixes), fastest in B first:")
    for name, only in zip(comparison.names, comparison.own_front_only):
        report.doc.table(only[["trial", "pattern", "kv_heads", "ffn_dim", "quality", "decode_ms", "prefill_ms"]],
                         STUDY_FORMATS, caption=f"{name}'s own front trials that the other study did not measure:")
    return report.finish()


def _confirmation_section(report: _Builder, c: dict[str, Any]) -> None:
    """What ``search confirm`` found: the statements, then each layout's means, intervals and verdict."""
    report.doc.section("Confirmation", f"The seeds and the front measured again by `search confirm` ({describe(c)}; "
                       f"latency order reversed every other round; orange error bars in the Pareto plot). Confirmed front: trials {', '.join(map(str, c['confirmed_front'])) or 'none'} "
                       f"(raw front then: {', '.join(map(str, c['raw_front']))}). " + " ".join(
                           s[0].upper() + s[1:] + "." for s in c["statements"]))
    rows = [{"trial": e["trial"], "role": e["role"], "pattern": e["pattern"],
             **{f"{name}_{part}": (e[name] or {}).get(part) for name in ("quality", "decode_ms", "prefill_ms")
                for part in ("estimate", "low", "high")},
             "confirmed": e["confirmed"], "note": e["note"]} for e in c["layouts"]]
    report.doc.table(pd.DataFrame(rows), caption="Re-measured layouts (mean, interval low and high):")


def layout_report(specs: Sequence[tuple[str, ModelSpec]], out: Path, dtype: str = "float32") -> Written:
    """A strip per layout (conv vs attention per layer, parameters per block, widths in the caption)."""
    if not specs:
        raise ValueError("give at least one layout")
    return _publish(out, lambda stage: _layout_report(specs, stage, dtype))


def _layout_report(specs: Sequence[tuple[str, ModelSpec]], out: Path, dtype: str) -> Written:
    report = _Builder(out, "Layouts", f"analytic (cost model, {dtype}; nothing measured) | report {today()}")
    report.figure(_strips(specs, dtype), "layout", "layout strips")
    for name, spec in specs:
        report.doc.section(name, layout_caption(name, spec, dtype))
        report.table(layout_strip(spec, dtype), f"layout_{_slug(name)}",
                     {"kv_bytes_per_token": md.nbytes, "state_bytes": md.nbytes})
    return report.finish()


def _strips(specs: Sequence[tuple[str, ModelSpec]], dtype: str) -> Any:
    """A figure with one layout strip per spec, stacked."""
    from matplotlib.figure import Figure

    width = max(7.5, 0.32 * max(spec.num_layers for _, spec in specs) + 2)
    fig = Figure(figsize=(width, 2.1 * len(specs) + 0.6), layout="constrained")
    axes = fig.subplots(len(specs), 1, squeeze=False)
    for i, (ax, (name, spec)) in enumerate(zip(axes[:, 0], specs)):
        plots.plot_layout_strip(layout_strip(spec, dtype), ax=ax, title=layout_caption(name, spec, dtype))
        if i < len(specs) - 1:
            ax.set_xlabel("")
    plots.strip_legend(fig)
    return fig


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in text)
