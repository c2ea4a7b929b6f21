"""Drawing only: each function takes the data a :mod:`.series`, :mod:`.study` or :mod:`.layout`
function computed and an optional matplotlib axis, draws, and returns the axis. Nothing here
computes a number that is not on the page already, and nothing saves a file (see :mod:`.build`).

Colours follow the order in which series first appear in a panel (the sweep file's order), so the same role (e.g. the LFM2 layout,
its all-attention baseline, the dense model) keeps its colour from panel to panel and figure to figure.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

GIB = 2**30
PART_COLOURS = {"weights": "#4c72b0", "cache": "#dd8452", "activations": "#55a868"}
OP_COLOURS = {"conv": "#4c72b0", "attention": "#dd8452"}
FFN_COLOUR = "#c8c8c8"
_X_LABELS = {"prefill": "prompt length (tokens)", "decode": "context depth (tokens in the cache)"}
_Y_LABELS = {"prefill": "prefill latency (ms)", "decode": "decode latency (ms/token)"}


def _axis(ax: Any) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    return ax


def colours(names: Sequence[str]) -> dict[str, Any]:
    """A colour per name, in order of first appearance (tab10)."""
    import matplotlib

    cycle = matplotlib.colormaps["tab10"].colors
    return {name: cycle[i % len(cycle)] for i, name in enumerate(dict.fromkeys(names))}


def _lines(data: pd.DataFrame, key: str) -> list[tuple[str, pd.DataFrame]]:
    """``data`` split by ``key`` in order of first appearance, each part sorted by ``x``."""
    return [(name, data[data[key] == name].sort_values("x")) for name in dict.fromkeys(data[key])]


def _byte_unit(largest: float) -> tuple[str, float]:
    """GiB (2^30) for figures of a GiB or more, else MiB (2^20)."""
    return ("GiB", GIB) if largest >= GIB else ("MiB", 2**20)


def _x_axis(ax: Any, xs: Sequence[float], label: str) -> None:
    values = sorted({float(x) for x in xs})
    positive = [x for x in values if x > 0]
    if positive and max(positive) / min(positive) >= 8:
        ax.set_xscale("symlog" if 0 in values else "log", base=2, **({"linthresh": min(positive)} if 0 in values else {}))
        ax.set_xticks(values)
        crowded = len(values) > 5
        ax.set_xticklabels([f"{int(x)}" for x in values], rotation=45 if crowded else 0, ha="right" if crowded else "center")
        ax.minorticks_off()
    ax.set_xlabel(label)


def plot_latency(series: pd.DataFrame, phase: str, ax: Any = None, title: str = "") -> Any:
    """Median latency per series (line) with the p10-p90 band of its samples shaded and the IQR as
    error bars; hollow markers where the profiler flagged the measurement unstable (IQR/median > 0.10),
    a red cross where it was taken while other processes used the CPU (``busy``)."""
    ax = _axis(ax)
    palette = colours(series["series"])
    for name, line in _lines(series, "series"):
        colour = palette[name]
        ax.fill_between(line["x"], line["p10_ms"], line["p90_ms"], color=colour, alpha=0.18, linewidth=0)
        ax.errorbar(line["x"], line["median_ms"], yerr=[line["median_ms"] - line["p25_ms"], line["p75_ms"] - line["median_ms"]],
                    color=colour, marker="o", ms=4, capsize=2, label=name)
        unstable = line[line["unstable"]]
        if not unstable.empty:
            ax.scatter(unstable["x"], unstable["median_ms"], s=60, facecolors="white", edgecolors=colour, zorder=3)
        busy = line[line["busy"]]
        if not busy.empty:
            ax.scatter(busy["x"], busy["median_ms"], s=40, marker="x", color="tab:red", zorder=4)
    _x_axis(ax, series["x"], _X_LABELS[phase])
    ax.set_ylabel(_Y_LABELS[phase])
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"{phase}: median, IQR bars, p10-p90 band", fontsize=10)
    ax.legend(fontsize=7)
    return ax


def plot_memory(series: pd.DataFrame, ax: Any = None, title: str = "") -> Any:
    """For one series: at each context length, the measured peak split into weights / cache /
    activations (solid, left) beside the cost model's prediction (hatched, right), with the
    prediction's error on top."""
    ax = _axis(ax)
    rows = series.sort_values("context_len").reset_index(drop=True)
    unit, scale = _byte_unit(max(rows["peak_bytes"].max(), rows["peak_bytes_pred"].max()) if len(rows) else 0)
    positions = np.arange(len(rows))
    width = 0.38
    for offset, suffix, hatch in ((-width / 2, "", None), (width / 2, "_pred", "//")):
        bottom = np.zeros(len(rows))
        for part, colour in PART_COLOURS.items():
            values = rows[f"{part}_bytes{suffix}"].to_numpy(float) / scale
            ax.bar(positions + offset, values, width, bottom=bottom, color=colour, hatch=hatch,
                   alpha=0.55 if hatch else 1.0, edgecolor="white" if not hatch else colour,
                   label=f"{part} ({'cost model' if hatch else 'measured'})")
            bottom += values
    for i, row in rows.iterrows():
        top = max(row["peak_bytes"], row["peak_bytes_pred"]) / scale
        ax.annotate(f"{100 * row['peak_error']:+.0f}%", (positions[i] + width / 2, top), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(positions)
    ax.set_xticklabels([str(int(v)) for v in rows["context_len"]])
    ax.set_xlabel("context length (tokens the cache holds)")
    ax.set_ylabel(f"peak memory above start-up ({unit})")
    ax.set_title(title or (rows["series"].iloc[0] if len(rows) else ""), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return ax


def memory_legend(fig: Any) -> None:
    """One legend for a figure of :func:`plot_memory` panels."""
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=f"{p}") for p, c in PART_COLOURS.items()]
    handles += [Patch(facecolor="white", edgecolor="0.3", label="left bar: measured"),
                Patch(facecolor="white", edgecolor="0.3", hatch="//", label="right bar: cost model (error on top)")]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)


_ROOFLINE_LABELS = {
    "decode_bandwidth_fraction": ("decode: achieved read bandwidth", "peak_bandwidth_bytes_per_s", "GB/s", 1e9),
    "decode_flops_fraction": ("decode: achieved FLOP/s", "peak_flops_per_s", "GFLOP/s", 1e9),
    "prefill_flops_fraction": ("prefill: achieved FLOP/s", "peak_flops_per_s", "GFLOP/s", 1e9),
}


def plot_roofline(series: pd.DataFrame, metric: str, phase: str, ax: Any = None, title: str = "") -> Any:
    """``metric`` (a fraction of the hardware profile's measured peak) in percent, one line per series."""
    ax = _axis(ax)
    label, peak_col, unit, scale = _ROOFLINE_LABELS[metric]
    palette = colours(series["series"])
    for name, line in _lines(series, "series"):
        ax.plot(line["x"], 100 * line[metric], marker="o", ms=4, color=palette[name], label=name)
    peaks = series[peak_col].dropna().unique()
    peak_text = ", ".join(f"{p / scale:.1f} {unit}" for p in peaks)
    ax.axhline(100, color="0.3", linestyle="--", linewidth=1)
    ax.annotate(f"measured peak ({peak_text})", (0.01, 100), xycoords=("axes fraction", "data"),
                va="bottom", fontsize=7, color="0.3")
    _x_axis(ax, series["x"], _X_LABELS[phase])
    ax.set_ylabel(f"% of measured peak {unit}")
    ax.set_ylim(0, max(110, 100 * float(series[metric].max(skipna=True) or 0) * 1.1))
    ax.set_title(title or label, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_speedup(series: pd.DataFrame, phase: str, ax: Any = None, title: str = "", claim: float = 2.0) -> Any:
    """Measured speedup (solid) and the cost model's predicted speedup (dashed) of each
    (layout vs baseline) pair; reference lines at 1x (parity) and at the claimed factor. Hollow
    markers: a ratio resting on a measurement the profiler flagged unstable or busy."""
    ax = _axis(ax)
    rows = series[series["phase"] == phase].copy()
    rows["pair"] = rows["layout"] + " vs " + rows["baseline"]
    palette = colours(rows["pair"])
    for pair, line in _lines(rows, "pair"):
        ax.plot(line["x"], line["speedup"], marker="o", ms=4, color=palette[pair], label=f"{pair} (measured)")
        flagged = line[line["flagged"]]
        if not flagged.empty:
            ax.scatter(flagged["x"], flagged["speedup"], s=60, facecolors="white", edgecolors=palette[pair], zorder=3)
        ax.plot(line["x"], line["predicted"], linestyle="--", color=palette[pair],
                label=f"cost model ({line['predicted_from'].iloc[0]} ratio)")
    ax.axhline(1.0, color="0.3", linewidth=1)
    ax.axhline(claim, color="tab:red", linestyle=":", linewidth=1)
    ax.annotate(f"claim: {claim:g}x", (0.01, claim), xycoords=("axes fraction", "data"), va="bottom", fontsize=7,
                color="tab:red")
    _x_axis(ax, rows["x"], _X_LABELS[phase])
    ax.set_ylabel(f"{phase} speedup (baseline ms / layout ms)")
    ax.set_ylim(0, max(claim * 1.15, float(rows[["speedup", "predicted"]].max().max()) * 1.1))
    ax.set_title(title or f"{phase} speedup", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_layout_strip(strip: pd.DataFrame, ax: Any = None, title: str = "") -> Any:
    """One column per layer: the FFN's parameters (grey) under the operator's (conv blue, attention
    orange), in millions, the operator's letter on top and the layer index below."""
    ax = _axis(ax)
    x = strip["layer"].to_numpy()
    ffn = strip["ffn_params"].to_numpy(float) / 1e6
    op = strip["op_params"].to_numpy(float) / 1e6
    ax.bar(x, ffn, 0.85, color=FFN_COLOUR, edgecolor="white")
    ax.bar(x, op, 0.85, bottom=ffn, color=[OP_COLOURS[o] for o in strip["op"]], edgecolor="white")
    for xi, o, top in zip(x, strip["op"], ffn + op):
        ax.text(xi, top, "A" if o == "attention" else "C", ha="center", va="bottom", fontsize=8, fontweight="bold")
    ax.set_xticks(x)
    ax.set_xticklabels([str(i) for i in x], fontsize=7)
    ax.set_xlim(-0.6, len(x) - 0.4)
    ax.set_ylim(0, float((ffn + op).max()) * 1.2)
    ax.set_xlabel("layer")
    ax.set_ylabel("params (M)")
    ax.set_title(title, fontsize=9, loc="left")
    ax.grid(axis="y", alpha=0.3)
    return ax


def strip_legend(fig: Any) -> None:
    """One legend for a figure of :func:`plot_layout_strip` axes."""
    from matplotlib.patches import Patch

    handles = [Patch(color=OP_COLOURS["conv"], label="C: gated short conv"),
               Patch(color=OP_COLOURS["attention"], label="A: GQA attention"),
               Patch(color=FFN_COLOUR, label="SwiGLU FFN")]
    fig.legend(handles=handles, loc="outside upper center", ncol=3, fontsize=8, frameon=False)


def plot_pareto(points: pd.DataFrame, x_label: str, y_label: str, ax: Any = None, title: str = "",
                confirmed: pd.DataFrame | None = None) -> Any:
    """Measured trials at (latency, quality) coloured by peak memory; infeasible ones hollow; the
    study's Pareto-front trials ringed in black and the 2-D front of the plotted pair as a step line;
    the seeded layouts (the LFM2 reference and its all-attention baseline) marked and named. With
    ``confirmed`` (:func:`lfm2_nas.report.study.confirmed_points`): each re-measured layout's means with
    error bars (its intervals), filled when on the confirmed front, joined to its study point."""
    ax = _axis(ax)
    if confirmed is not None and not confirmed.empty:
        _confirmed_bars(ax, points, confirmed)
    feasible = points[points["feasible"]]
    unit, scale = _byte_unit(float(points["peak_bytes"].max()) if points["peak_bytes"].notna().any() else 0.0)
    memory = points["peak_bytes"].astype(float) / scale
    vmin, vmax = (float(memory.min()), float(memory.max())) if memory.notna().any() else (0.0, 1.0)
    scatter = ax.scatter(feasible["x"], feasible["y"], c=feasible["peak_bytes"].astype(float) / scale, cmap="viridis",
                         vmin=vmin, vmax=vmax, s=30, zorder=2, label="measured trial (colour: peak memory)")
    infeasible = points[~points["feasible"]]
    if not infeasible.empty:
        ax.scatter(infeasible["x"], infeasible["y"], facecolors="none", edgecolors="0.5", s=30,
                   label="over a budget limit")
    front = points[points["on_front"]]
    if not front.empty:
        ax.scatter(front["x"], front["y"], facecolors="none", edgecolors="black", s=90, linewidths=1.2, zorder=3,
                   label="study Pareto front")
    line = points[points["on_plot_front"]].sort_values("x")
    if not line.empty:
        ax.step(line["x"], line["y"], where="post", color="black", linewidth=0.8, alpha=0.6)
    for marker, (seed, row) in zip(("*", "s", "D", "^"), points[points["seed"] != ""].groupby("seed", sort=False)):
        first = row.iloc[0]
        ax.scatter([first["x"]], [first["y"]], marker=marker, s=200, color="tab:red", edgecolors="black", zorder=4,
                   label=f"{seed} (trial {int(first['trial'])})")
        ax.annotate(seed, (first["x"], first["y"]), textcoords="offset points", xytext=(8, 6), fontsize=8)
    ax.figure.colorbar(scatter, ax=ax, label=f"peak memory ({unit})")
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def plot_agreement(rows: pd.DataFrame, column: str, label: str, names: tuple[str, str], ax: Any = None,
                   title: str = "") -> Any:
    """Each common layout's ``<column>_vs_ref`` (axis ``label``) in study A (x) against study B (y), the diagonal
    where the two agree, each study's non-dominated common layouts ringed (A black, B red), the
    reference layout at (1, 1) starred."""
    ax = _axis(ax)
    x, y = rows[f"{column}_vs_ref_a"].astype(float), rows[f"{column}_vs_ref_b"].astype(float)
    ax.scatter(x, y, s=25, color="tab:blue", zorder=2, label="layout measured in both")
    for flag, colour, size in (("front_common_a", "black", 90), ("front_common_b", "tab:red", 150)):
        chosen = rows[flag]
        study = names[0] if flag.endswith("_a") else names[1]
        ax.scatter(x[chosen], y[chosen], facecolors="none", edgecolors=colour, s=size, linewidths=1.2, zorder=3,
                   label=f"non-dominated by {study}'s figures")
    ax.scatter([1.0], [1.0], marker="*", s=200, color="tab:red", edgecolors="black", zorder=4, label="reference (LFM2)")
    low, high = float(min(x.min(), y.min(), 1.0)), float(max(x.max(), y.max(), 1.0))
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="0.5", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"{label} / reference, {names[0]}")
    ax.set_ylabel(f"{label} / reference, {names[1]}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return ax


def _confirmed_bars(ax: Any, points: pd.DataFrame, confirmed: pd.DataFrame) -> None:
    study = points.drop_duplicates("trial").set_index("trial")
    for kept, label in ((True, "re-measured, confirmed front"), (False, "re-measured, not confirmed")):
        rows = confirmed[confirmed["confirmed"] == kept]
        if rows.empty:
            continue
        xerr = [(rows["x"] - rows["x_low"]).fillna(0), (rows["x_high"] - rows["x"]).fillna(0)]
        yerr = [(rows["y"] - rows["y_low"]).fillna(0), (rows["y_high"] - rows["y"]).fillna(0)]
        ax.errorbar(rows["x"], rows["y"], xerr=xerr, yerr=yerr, fmt="o", color="tab:orange", capsize=3, zorder=5,
                    markerfacecolor="tab:orange" if kept else "white", markersize=6, label=label)
    for row in confirmed.itertuples():
        if row.trial in study.index:
            ax.plot([study.loc[row.trial, "x"], row.x], [study.loc[row.trial, "y"], row.y], color="tab:orange",
                    linewidth=0.6, linestyle=":", zorder=1)


def plot_hypervolume(history: pd.DataFrame, ax: Any = None, title: str = "") -> Any:
    """Hypervolume of the feasible measured trials so far, by trial number (a step per improvement)."""
    ax = _axis(ax)
    ax.step(history["trial"], history["hypervolume"], where="post", color="tab:blue")
    ax.scatter(history["trial"], history["hypervolume"], s=10, color="tab:blue")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (normalised objectives)")
    ax.set_ylim(bottom=0)
    ax.set_title(title or "hypervolume history", fontsize=10)
    ax.grid(alpha=0.3)
    return ax


def stamp(fig: Any, text: str) -> None:
    """Write the provenance (hardware profile, dates) along ``fig``'s bottom (as its x super-label,
    so a constrained layout makes room for it), wrapped at `` | `` separators to the figure's width."""
    width_chars = int(fig.get_figwidth() * 19)
    lines, current = [], ""
    for part in text.split(" | "):
        candidate = f"{current} | {part}" if current else part
        if current and len(candidate) > width_chars:
            lines.append(current)
            candidate = part
        current = candidate
    lines.append(current)
    fig.supxlabel("\n".join(lines), x=0.005, ha="left", fontsize=6.5, color="0.35")
