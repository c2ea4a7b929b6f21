"""Drawing functions draw what their data says on the axis they are given (rendered with Agg)."""

import io

import pandas as pd
import pytest
from matplotlib.figure import Figure

from lfm2_nas.registry import get_spec
from lfm2_nas.report import plots
from lfm2_nas.report.layout import layout_strip
from lfm2_nas.report.results import results_frame
from lfm2_nas.report.series import latency_series, memory_series, roofline_series, speedup_series
from report_rows import row


@pytest.fixture
def frame():
    rows = []
    for name, scale in (("lfm2-350m", 1.0), ("lfm2-350m-dense", 1.3)):
        for prompt, depth in ((128, 512), (512, 4096)):
            rows.append(row(name, prompt, depth, [scale * prompt * f for f in (0.9, 1.0, 1.1)],
                            [scale * (10 + depth / 1000) * f for f in (0.95, 1.0, 1.05)]))
    return results_frame(rows)


def _ax():
    return Figure().subplots()


def _render(ax):
    ax.figure.savefig(io.BytesIO(), format="png")


def test_latency_one_line_and_band_per_series(frame):
    ax = _ax()
    assert plots.plot_latency(latency_series(frame, "decode"), "decode", ax=ax) is ax
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lfm2-350m", "lfm2-350m-dense"]
    assert len(ax.collections) >= 2  # one p10-p90 band per series (plus error-bar line collections)
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "decode latency (ms/token)"  # depths span 8x
    assert [t.get_text() for t in ax.get_xticklabels()] == ["512", "4096"]
    _render(ax)


def test_memory_bars_measured_and_predicted_parts(frame):
    data = memory_series(frame)
    one = data[data["series"] == "lfm2-350m"]
    ax = _ax()
    assert plots.plot_memory(one, ax=ax) is ax
    assert len(ax.patches) == 2 * 3 * len(one)  # (measured, predicted) x (weights, cache, activations) per length
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in sorted(one["context_len"])]
    _render(ax)


def test_roofline_and_speedup_draw_reference_lines(frame):
    ax = _ax()
    plots.plot_roofline(roofline_series(frame, "decode"), "decode_bandwidth_fraction", "decode", ax=ax)
    assert any(line.get_ydata()[0] == 100 for line in ax.get_lines())
    ax = _ax()
    plots.plot_speedup(speedup_series(frame, "lfm2-350m-dense", "lfm2-350m"), "decode", ax=ax)
    levels = {line.get_ydata()[0] for line in ax.get_lines() if len(set(line.get_ydata())) == 1}
    assert {1.0, 2.0} <= levels
    _render(ax)


def test_layout_strip_one_column_per_layer_with_letters():
    strip = layout_strip(get_spec("lfm2-350m"))
    ax = _ax()
    assert plots.plot_layout_strip(strip, ax=ax, title="x") is ax
    assert len(ax.patches) == 2 * 16
    assert "".join(t.get_text() for t in ax.texts) == "CCACCACCACACACAC"
    _render(ax)


def test_pareto_marks_seeds_and_front():
    points = pd.DataFrame({
        "trial": [0, 1, 2, 3], "seed": ["lfm2-350m", "lfm2-350m-all-attn", "", ""],
        "x": [10.0, 12.0, 8.0, 9.0], "y": [0.5, 0.6, 0.4, 0.3], "peak_bytes": [2**30, 2**31, 2**30, 2**30],
        "feasible": [True, True, True, False], "on_front": [True, True, True, False],
        "on_plot_front": [True, True, True, False],
    })
    ax = _ax()
    assert plots.plot_pareto(points, "decode ms/token", "quality", ax=ax) is ax
    assert {t.get_text() for t in ax.texts} == {"lfm2-350m", "lfm2-350m-all-attn"}
    _render(ax)


def test_hypervolume_history_is_a_step_line():
    ax = _ax()
    plots.plot_hypervolume(pd.DataFrame({"trial": [0, 1, 2], "hypervolume": [0.1, 0.1, 0.3]}), ax=ax)
    assert list(ax.get_lines()[0].get_ydata())[-1] == 0.3
