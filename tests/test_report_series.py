import json

import numpy as np
import pandas as pd
import pytest

from lfm2_nas import cost
from lfm2_nas.registry import get_spec
from lfm2_nas.report.results import ResultsError, check_columns, provenance, results_frame
from lfm2_nas.report.series import (
    extrapolation,
    failed_rows,
    latency_series,
    layouts_table,
    memory_series,
    roofline_series,
    speedup_series,
    suffix_pairs,
    with_panels,
)
from report_rows import HARDWARE, failed, row


def test_latency_pools_samples_of_rows_measuring_the_same_prefill():
    frame = results_frame([
        row("lfm2-tiny", 32, 64, prefill=[1.0, 2.0, 3.0], decode=[10.0]),
        row("lfm2-tiny", 32, 128, prefill=[4.0, 5.0], decode=[20.0, 22.0]),
    ])
    prefill = latency_series(frame, "prefill")
    assert len(prefill) == 1
    line = prefill.iloc[0]
    assert (line["x"], line["samples"], line["rows"]) == (32, 5, 2)
    assert line["median_ms"] == pytest.approx(3.0)
    assert line["p10_ms"] == pytest.approx(np.percentile([1, 2, 3, 4, 5], 10))
    assert line["p90_ms"] == pytest.approx(np.percentile([1, 2, 3, 4, 5], 90))
    decode = latency_series(frame, "decode")
    assert list(decode["x"]) == [64, 128] and list(decode["median_ms"]) == [10.0, 21.0]


def test_flags_of_pooled_rows_carry_over_and_missing_flags_are_false():
    frame = results_frame([
        row("lfm2-tiny", 32, 64, [1.0], [1.0], busy=True),
        row("lfm2-tiny", 32, 128, [1.0], [1.0], prefill_ms_unstable="True"),
    ])
    prefill = latency_series(frame, "prefill").iloc[0]
    assert prefill["busy"] and prefill["unstable"]
    decode = latency_series(frame.drop(columns=["busy"]), "decode")
    assert not decode["busy"].any() and not decode["unstable"].any()


def test_failed_rows_stay_out_of_series_and_are_listed():
    frame = results_frame([row("lfm2-tiny", 32, 64, [1.0], [2.0]), failed("lfm2-tiny", 512, 64)])
    assert list(latency_series(frame, "prefill")["x"]) == [32]
    assert len(memory_series(frame)) == 1
    listed = failed_rows(frame)
    assert list(listed["prompt_len"]) == [512] and listed["reason"].iloc[0] == "out of memory"


def test_samples_written_as_json_strings_by_csv_are_read():
    frame = results_frame([row("lfm2-tiny", 32, 64, json.dumps([1.0, 3.0]), json.dumps([2.0]))])
    assert latency_series(frame, "prefill")["median_ms"].iloc[0] == pytest.approx(2.0)


def test_series_label_names_setup_columns_that_vary():
    frame = results_frame([row("lfm2-tiny", 32, 64, [1.0], [1.0]), row("lfm2-tiny", 32, 64, [2.0], [2.0], batch=4)])
    assert sorted(frame["series"]) == ["lfm2-tiny (batch 1)", "lfm2-tiny (batch 4)"]
    assert len(latency_series(frame, "decode")) == 2


def test_panels_by_column_are_titled_by_the_common_layout_prefix():
    frame = results_frame([row(name, 32, 64, [1.0], [1.0])
                           for name in ("lfm2-350m", "lfm2-350m-all-attn", "lfm2-700m", "lfm2-700m-dense")])
    panels = with_panels(frame, ["spec_hidden_size"])
    assert dict(zip(panels["layout"], panels["panel"])) == {
        "lfm2-350m": "lfm2-350m", "lfm2-350m-all-attn": "lfm2-350m", "lfm2-700m": "lfm2-700m", "lfm2-700m-dense": "lfm2-700m"}
    assert set(with_panels(frame)["panel"]) == {""}


def test_unknown_panel_column_is_an_error_naming_it():
    frame = results_frame([row("lfm2-tiny", 32, 64, [1.0], [1.0])])
    with pytest.raises(ResultsError, match="unknown column.*no_such"):
        with_panels(frame, ["no_such"])
    with pytest.raises(ResultsError, match="decode_ms_samples"):
        latency_series(frame.drop(columns=["decode_ms_samples"]), "decode")


def test_memory_split_and_prediction_error():
    frame = results_frame([row("lfm2-tiny", 32, 64, [1.0], [1.0])])
    mem = memory_series(frame).iloc[0]
    spec = get_spec("lfm2-tiny")
    assert mem["context_len"] == 65
    assert mem["weights_bytes"] == cost.weight_bytes(spec) and mem["cache_bytes"] == cost.cache_bytes(spec, 65)
    assert (mem["activations_bytes"], mem["activations_bytes_pred"]) == (1000, 500)
    assert mem["peak_error"] == pytest.approx(-500 / mem["peak_bytes"])


def test_memory_keeps_the_longest_prompt_per_context_length():
    short = row("lfm2-tiny", 32, 255, [1.0], [1.0])
    long = row("lfm2-tiny", 256, 0, [1.0], [1.0], peak_bytes=short["peak_bytes"] + 99)
    mem = memory_series(results_frame([long, short]))
    assert len(mem) == 1 and mem["prompt_len"].iloc[0] == 256 and mem["activations_bytes"].iloc[0] == 1099


def test_roofline_medians_per_x():
    frame = results_frame([
        row("lfm2-tiny", 32, 64, [1.0], [1.0], decode_bandwidth_fraction=0.2),
        row("lfm2-tiny", 128, 64, [1.0], [1.0], decode_bandwidth_fraction=0.4),
    ])
    decode = roofline_series(frame, "decode")
    assert list(decode["x"]) == [64] and decode["decode_bandwidth_fraction"].iloc[0] == pytest.approx(0.3)
    assert list(roofline_series(frame, "prefill")["x"]) == [32, 128]


def test_speedup_measured_and_predicted_from_the_cost_model():
    frame = results_frame([
        row("lfm2-350m", 128, 4096, prefill=[100.0], decode=[10.0]),
        row("lfm2-350m-dense", 128, 4096, prefill=[150.0], decode=[15.0]),
    ])
    table = speedup_series(frame, "lfm2-350m-dense", "lfm2-350m").set_index("phase")
    lfm2, dense = get_spec("lfm2-350m"), get_spec("lfm2-350m-dense")
    assert table.loc["decode", "speedup"] == pytest.approx(1.5) and table.loc["prefill", "speedup"] == pytest.approx(1.5)
    assert table.loc["decode", "predicted"] == pytest.approx(
        cost.decode_read_bytes(dense, 4096) / cost.decode_read_bytes(lfm2, 4096))
    assert table.loc["prefill", "predicted"] == pytest.approx(cost.prefill_flops(dense, 128) / cost.prefill_flops(lfm2, 128))
    assert table.loc["decode", "baseline_kv_bytes"] == cost.kv_cache_bytes(dense, 4096)
    with pytest.raises(ValueError, match="no rows for layout 'nope'"):
        speedup_series(frame, "nope", "lfm2-350m")


def test_speedup_flags_ratios_resting_on_a_flagged_measurement():
    frame = results_frame([
        row("lfm2-350m", 128, 4096, prefill=[100.0], decode=[10.0]),
        row("lfm2-350m-dense", 128, 4096, prefill=[150.0], decode=[15.0], busy=True),
        row("lfm2-350m", 256, 512, prefill=[100.0], decode=[10.0], decode_ms_unstable=True),
        row("lfm2-350m-dense", 256, 512, prefill=[150.0], decode=[15.0]),
    ])
    table = speedup_series(frame, "lfm2-350m-dense", "lfm2-350m").set_index(["phase", "x"])["flagged"]
    assert table[("decode", 4096)] and table[("prefill", 128)]          # busy baseline row: both phases
    assert table[("decode", 512)] and not table[("prefill", 256)]       # unstable decode only


def test_results_frame_rejects_empty_and_foreign_tables():
    with pytest.raises(ResultsError, match="no result rows"):
        results_frame([])
    with pytest.raises(ResultsError, match="missing column"):
        results_frame([{"trial": 1, "quality": 0.5}])
    frame = results_frame([row("lfm2-tiny", 32, 64, [1.0], [1.0])])
    assert check_columns(frame, ["layout"]) == ["layout"]


def test_provenance_names_hardware_dates_and_setup():
    frame = results_frame([row("lfm2-tiny", 32, 64, [1.0], [1.0]),
                           row("lfm2-tiny", 64, 64, [1.0], [1.0], measured_at="2026-01-03T01:00:00+00:00")])
    text = provenance(frame, today="2026-02-01").text
    assert HARDWARE in text and "Test CPU" in text and "measured 2026-01-02 to 2026-01-03" in text
    assert "float32" in text and "2 threads" in text and "report 2026-02-01" in text


def test_results_frame_reads_string_booleans_from_csv():
    frame = results_frame(pd.DataFrame([row("lfm2-tiny", 32, 64, [1.0], [1.0], ok="False")]).to_dict("records"))
    assert not frame["ok"].any()


def test_layouts_table_is_the_cost_model_of_each_layout():
    frame = results_frame([row("lfm2-350m", 32, 64, [1.0], [1.0]), row("lfm2-350m", 64, 64, [1.0], [1.0]),
                           row("lfm2-350m-all-attn", 32, 64, [1.0], [1.0])])
    table = layouts_table(frame).set_index("layout")
    assert list(table.index) == ["lfm2-350m", "lfm2-350m-all-attn"]
    assert table.loc["lfm2-350m", "params"] == 354_483_968
    assert table.loc["lfm2-350m", "kv_bytes_per_token"] == cost.kv_bytes_per_token(get_spec("lfm2-350m"))
    assert table.loc["lfm2-350m-all-attn", "conv_state_bytes"] == 0


def test_extrapolation_finds_where_the_cost_model_reaches_the_claim():
    frame = results_frame([row("lfm2-350m", 128, 512, [1.0], [1.0]), row("lfm2-350m-dense", 128, 512, [1.0], [1.0])])
    table = extrapolation(frame, "lfm2-350m-dense", "lfm2-350m").set_index("phase")
    lfm2, dense = get_spec("lfm2-350m"), get_spec("lfm2-350m-dense")
    depth = table.loc["decode", "tokens_to_2x"]
    ratio = lambda n: cost.decode_read_bytes(dense, n) / cost.decode_read_bytes(lfm2, n)  # noqa: E731
    assert ratio(depth) >= 2.0 > ratio(depth - 1)
    assert table.loc["decode", "predicted_at_32768"] == pytest.approx(ratio(32768))
    prompt = table.loc["prefill", "tokens_to_2x"]
    assert cost.prefill_flops(dense, prompt) / cost.prefill_flops(lfm2, prompt) >= 2.0
    # the other way round the ratio only falls: never 2x
    assert extrapolation(frame, "lfm2-350m", "lfm2-350m-dense")["tokens_to_2x"].isna().all()


def test_series_keep_the_order_of_the_results_then_x():
    frame = results_frame([row("lfm2-700m", 512, 64, [1.0], [1.0]), row("lfm2-350m", 32, 64, [1.0], [1.0]),
                           row("lfm2-700m", 32, 64, [1.0], [1.0])])
    prefill = latency_series(frame, "prefill")
    assert list(zip(prefill["series"], prefill["x"])) == [("lfm2-700m", 32), ("lfm2-700m", 512), ("lfm2-350m", 32)]
    assert list(memory_series(frame)["series"]) == ["lfm2-700m", "lfm2-700m", "lfm2-350m"]
    assert list(layouts_table(frame)["layout"]) == ["lfm2-700m", "lfm2-350m"]


def test_suffix_pairs_put_the_baseline_first():
    names = ["lfm2-350m", "lfm2-350m-all-attn", "lfm2-350m-dense", "lfm2-700m", "lfm2-700m-dense", "other"]
    assert suffix_pairs(names, ["-all-attn", "-dense"]) == [
        ("lfm2-350m-all-attn", "lfm2-350m"), ("lfm2-350m-dense", "lfm2-350m"), ("lfm2-700m-dense", "lfm2-700m")]
