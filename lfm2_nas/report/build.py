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
from lfm2_nas.report.study import LABELS as STUDY_LABELS
from lfm2_nas.report.study import REFERENCE, StudyData, hypervolume_history, pareto_points
from lfm2_nas.spec import ModelSpec

FIGURE_FORMATS = ("png", "svg")


@dataclass
class Written:
    """What a report wrote (paths relative to nothing: as given)."""

    report: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)

    @property
    def paths(self) -> list[Path]:
        return [self.report, *self.figures, *self.tables]


def today() -> str:
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


def _sweep_report(frame: pd.DataFrame, out: Path, title: str, pairs: list[tuple[str, str]]) -> Written:
    ok = frame[frame["ok"]]
    if ok.empty:
        raise ValueError("no successful rows to report: every row failed (see their 'reason')")
    prov = provenance(frame, today())
    doc = md.Document(title, f"_{prov.text}_")
    written = Written(out / "report.md")
    panels = _by_panel(ok)

    layouts = layouts_table(frame)
    doc.section("Layouts", "Analytic figures from the cost model (batch 1, the rows' dtype); the strips show "
                "which operator sits in each layer and the parameters of each block.")
    names = list(dict.fromkeys(layouts["layout"]))
    dtype = str(layouts["dtype"].iloc[0]) if layouts["dtype"].nunique() == 1 else "float32"
    fig = _strips([(name, layout_spec(frame, name)) for name in names], dtype)
    written.figures += save_figure(fig, out, "layouts", prov.text)
    doc.image("layouts.png", "layout strips")
    written.tables.append(save_table(layouts, out, "layouts"))
    doc.table(layouts, LAYOUT_FORMATS)

    doc.section("Latency", "Median of the raw samples; bars: interquartile range; band: p10-p90. Rows measuring the "
                "same prefill (or decode depth) are pooled. Hollow markers: the profiler flagged the row unstable.")
    for phase in ("prefill", "decode"):
        series = latency_series(frame, phase)
        fig, axes = _grid(len(panels), suptitle=f"{title}: {phase} latency")
        for ax, (panel, data) in zip(axes[0], _by_panel(series)):
            plots.plot_latency(data, phase, ax=ax, title=panel)
        _emit(doc, written, out, fig, series, phase, prov.text, f"{phase} latency", LATENCY_FORMATS, PHASES[phase][0])

    series = memory_series(frame)
    names = list(dict.fromkeys(zip(series[PANEL_KEY], series["series"])))
    fig, axes = _grid(max(len(names), 1), suptitle=f"{title}: peak memory, measured vs cost model")
    for ax, (panel, name) in zip(axes[0], names):
        plots.plot_memory(series[(series[PANEL_KEY] == panel) & (series["series"] == name)], ax=ax, title=name)
    plots.memory_legend(fig)
    doc.section("Peak memory", "Measured growth above the process's start-up memory (weights, cache, and the rest of the "
                "peak as activations) against the cost model (weights, cache) and the profiler's activation estimate. "
                "Where several rows share a context length, the one with the longest prompt is shown.")
    _emit(doc, written, out, fig, series, "memory", prov.text, "peak memory", MEMORY_FORMATS)

    doc.section("Roofline", "Achieved rate = the cost model's work (bytes a decode step must read; FLOPs of the phase) "
                "over the median time, as a fraction of the hardware profile's measured peak read bandwidth and "
                "matmul throughput.")
    decode, prefill = roofline_series(frame, "decode"), roofline_series(frame, "prefill")
    fig, axes = _grid(len(panels), rows=2, suptitle=f"{title}: fraction of the measured roofline")
    for col, (panel, _) in enumerate(panels):
        plots.plot_roofline(decode[decode[PANEL_KEY] == panel], "decode_bandwidth_fraction", "decode", ax=axes[0][col],
                            title=f"{panel + ': ' if panel else ''}decode read bandwidth")
        plots.plot_roofline(prefill[prefill[PANEL_KEY] == panel], "prefill_flops_fraction", "prefill", ax=axes[1][col],
                            title=f"{panel + ': ' if panel else ''}prefill FLOP/s")
    written.figures += save_figure(fig, out, "roofline", prov.text)
    doc.image("roofline.png", "fraction of the measured roofline")
    for phase, data in (("decode", decode), ("prefill", prefill)):
        written.tables.append(save_table(data, out, f"roofline_{phase}"))
        doc.table(table_view(data, PHASES[phase][0]), ROOFLINE_FORMATS, caption=f"Roofline, {phase}:")

    if pairs:
        speedups = pd.concat([speedup_series(frame, base, layout) for base, layout in pairs], ignore_index=True)
        fig, axes = _grid(2, suptitle=f"{title}: speedup, measured vs cost model")
        for ax, phase in zip(axes[0], ("prefill", "decode")):
            plots.plot_speedup(speedups, phase, ax=ax)
        doc.section("Speedup", "speedup = baseline median / layout median. Cost model: the ratio of bytes a decode step must "
                    "read (weights + K/V at that depth + conv state; bandwidth-bound) and of prefill FLOPs (matmuls + "
                    "attention over the prompt; compute-bound).")
        _emit(doc, written, out, fig, speedups, "speedup", prov.text, "speedup", SPEEDUP_FORMATS, "tokens")
        beyond = pd.concat([extrapolation(frame, base, layout) for base, layout in pairs], ignore_index=True)
        written.tables.append(save_table(beyond, out, "extrapolation"))
        doc.table(beyond, {c: md.ratio for c in beyond.columns if c.startswith("predicted_at_")},
                  caption="Cost-model extrapolation, NOT measured: the predicted speedup at longer prompts/depths, and "
                          "the shortest length at which it reaches 2x (empty: not below 4M tokens):")

    failed = failed_rows(frame)
    if not failed.empty:
        doc.section("Failed rows", f"{len(failed)} row(s) measured nothing:")
        doc.table(failed)
    written.report.write_text(doc.text())
    return written


def _emit(doc: md.Document, written: Written, out: Path, fig: Any, table: pd.DataFrame, stem: str, stamp_text: str,
          alt: str, formats: dict[str, md.Formatter], x_name: str = "x") -> None:
    """Save ``fig`` and ``table`` as ``<stem>.*``; add the image and the table to ``doc``."""
    written.figures += save_figure(fig, out, stem, stamp_text)
    written.tables.append(save_table(table, out, stem))
    doc.image(f"{stem}.png", alt)
    doc.table(table_view(table, x_name), formats)


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
    stamp_text = f"{data.provenance} | report {today()}"
    doc = md.Document(f"Study {data.name}", f"_{stamp_text}_")
    written = Written(out / "report.md")
    objectives = ", ".join(f"{name} ({direction})" for name, direction in data.objectives)
    panels = [(x, pareto_points(data, x=x)) for x in latency]
    panels = [(x, points) for x, points in panels if not points.empty]
    if not panels:
        raise ValueError(f"study {data.name!r} has no trial with both quality and a latency measured yet")
    fig, axes = _grid(len(panels), width=6.0, height=4.4, suptitle=f"Study {data.name}: quality vs latency")
    metric = data.quality_metric
    direction = dict(data.objectives).get("quality", "maximize")
    y_label = f"quality{': ' + metric if metric else ''} ({'higher' if direction == 'maximize' else 'lower'} is better)"
    for ax, (x, points) in zip(axes[0], panels):
        plots.plot_pareto(points, STUDY_LABELS[x], y_label, ax=ax)
    written.figures += save_figure(fig, out, "pareto", stamp_text)
    doc.section("Pareto front", f"Objectives: {objectives}. Colour: measured peak memory. Black rings: the study's Pareto "
                "front over all its objectives; the step line: trials no other feasible trial beats on both plotted axes.")
    doc.image("pareto.png", "Pareto front")
    columns = ["trial", "seed", "pattern", "params", "quality", "decode_ms", "prefill_ms", "peak_bytes"]
    front = data.trials[data.trials["on_front"]][columns]
    written.tables.append(save_table(front, out, "pareto"))
    doc.table(front, STUDY_FORMATS, caption="Pareto-front trials:")
    seeds = pd.DataFrame(list(data.seeds), columns=["seed", "trial", "status", "pattern", "placement"])
    doc.table(seeds, caption="Where the seeded layouts land:")
    written.tables.append(save_table(data.trials, out, "trials"))

    history, bounds = hypervolume_history(data)
    fig, axes = _grid(1, width=6.0, height=3.6)
    plots.plot_hypervolume(history, ax=axes[0][0], title=f"Study {data.name}: hypervolume history")
    scaling = "; ".join(f"{name}: best {best:.4g}, worst {worst:.4g}" for name, (best, worst) in bounds.items())
    doc.section("Hypervolume history", f"Hypervolume of the feasible measured trials so far over all objectives, each "
                f"scaled so the best observed value is 0 and the worst 1, against the reference point {REFERENCE} on "
                f"each ({scaling}).")
    _emit(doc, written, out, fig, history, "hypervolume", stamp_text, "hypervolume history", {"hypervolume": md.number})
    written.report.write_text(doc.text())
    return written


def layout_report(specs: Sequence[tuple[str, ModelSpec]], out: Path, dtype: str = "float32") -> Written:
    """A strip per layout (conv vs attention per layer, parameters per block, widths in the caption)."""
    if not specs:
        raise ValueError("give at least one layout")
    return _publish(out, lambda stage: _layout_report(specs, stage, dtype))


def _layout_report(specs: Sequence[tuple[str, ModelSpec]], out: Path, dtype: str) -> Written:
    stamp_text = f"analytic (cost model, {dtype}; nothing measured) | report {today()}"
    doc = md.Document("Layouts", f"_{stamp_text}_")
    written = Written(out / "report.md")
    written.figures += save_figure(_strips(specs, dtype), out, "layout", stamp_text)
    doc.image("layout.png", "layout strips")
    for name, spec in specs:
        strip = layout_strip(spec, dtype)
        written.tables.append(save_table(strip, out, f"layout_{_slug(name)}"))
        doc.section(name, layout_caption(name, spec, dtype))
        doc.table(strip, {"kv_bytes_per_token": md.nbytes, "state_bytes": md.nbytes})
    written.report.write_text(doc.text())
    return written


def _strips(specs: Sequence[tuple[str, ModelSpec]], dtype: str) -> Any:
    """A figure with one layout strip per spec, stacked."""
    from matplotlib.figure import Figure

    width = max(6.0, 0.32 * max(spec.num_layers for _, spec in specs) + 2)
    fig = Figure(figsize=(width, 1.9 * len(specs) + 0.8), layout="constrained")
    axes = fig.subplots(len(specs), 1, squeeze=False)
    for ax, (name, spec) in zip(axes[:, 0], specs):
        plots.plot_layout_strip(layout_strip(spec, dtype), ax=ax, title=layout_caption(name, spec, dtype))
    plots.strip_legend(fig)
    return fig


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in text)
