"""profile_layout end to end on the tiny layout: rows, roofline, memory split, cache, failures, dtypes."""

from dataclasses import replace

import pytest

from lfm2_nas import cost, get_spec
from lfm2_nas.profiler import ProfileResult, ProfileStore, Settings, UnsupportedDtypeError, profile_layout
from lfm2_nas.profiler import profile as profile_module
from lfm2_nas.profiler.runner import ChildOutcome
from profiler_support import fake_cpu_profile

WORKLOAD = Settings(prompt_len=16, context_depth=40, threads=1, warmup=1, min_count=3, min_duration_s=0.0)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """One real measurement of lfm2-tiny shared by the tests below."""
    folder = tmp_path_factory.mktemp("profiles")
    hardware = fake_cpu_profile(folder)
    store = ProfileStore(folder / "rows.jsonl")
    return hardware, store, profile_layout("lfm2-tiny", WORKLOAD, hardware, store=store)


def test_a_profile_measures_both_phases_with_stats_memory_and_roofline(profiled):
    hardware, _, result = profiled
    assert result.ok and result.reason is None and not result.cached
    assert result.prefill_ms.count >= 3 and result.decode_ms_per_token.count >= 3
    assert result.ttft_ms == result.prefill_ms.median
    assert result.decode_tokens_per_s == pytest.approx(1e3 / result.decode_ms_per_token.median)
    spec = get_spec("lfm2-tiny")
    row = result.to_row()
    assert row["decode_read_bytes"] == cost.decode_read_bytes(spec, 40, 1, "float32")
    assert row["decode_bandwidth_fraction"] == pytest.approx(
        row["decode_read_bytes"] / (row["decode_ms_median"] / 1e3) / hardware.read_bandwidth_bytes_per_s
    )
    assert row["prefill_flops_fraction"] == pytest.approx(
        cost.prefill_flops(spec, 16, 1) / (row["prefill_ms_median"] / 1e3) / 100e9
    )
    memory = result.memory
    assert memory.weights_bytes_pred == cost.weight_bytes(spec) and memory.cache_bytes_pred == cost.cache_bytes(spec, 43)
    assert memory.peak_bytes >= memory.weights_bytes > 0 and memory.baseline_bytes > 0
    assert result.peak_bytes == memory.peak_bytes
    assert row["threads_requested"] == 1 and row["torch_num_threads"] == 1 and row["omp_num_threads"] == "1"
    assert row["spec_pattern"] == "CCAC" and row["hardware"] == hardware.label


def test_a_cached_result_is_returned_without_measuring(profiled, monkeypatch):
    hardware, store, first = profiled

    def no_child(*args, **kwargs):
        raise AssertionError("a cached row must not be measured again")

    monkeypatch.setattr(profile_module, "run_in_child", no_child)
    again = profile_layout(get_spec("lfm2-tiny"), WORKLOAD, hardware, store=store)
    assert again.cached and again.key == first.key
    assert again.to_row() == first.to_row()
    assert ProfileResult.from_row(first.to_row()).decode_ms_per_token == first.decode_ms_per_token
    assert len(store.rows()) == 1


def test_out_of_memory_gives_a_failed_row_with_its_reason(profiled):
    hardware, store, _ = profiled
    result = profile_layout("lfm2-350m", replace(WORKLOAD, memory_limit_bytes=64 * 2**20), hardware, store=store)
    assert not result.ok and result.reason.startswith("out of memory")
    assert result.prefill_ms is None and result.peak_bytes is None
    row = store.get(result.key)
    assert row["ok"] is False and row["reason"] == result.reason


def test_a_dtype_the_device_only_emulates_is_refused_or_loudly_marked(profiled):
    hardware, store, _ = profiled  # the fake profile measured bfloat16 at 1/200 of float32
    bf16 = replace(WORKLOAD, dtype="bf16")
    with pytest.raises(UnsupportedDtypeError, match="bfloat16 is not native"):
        profile_layout("lfm2-tiny", bf16, hardware, store=store)
    with pytest.warns(UserWarning, match="EMULATED"):
        result = profile_layout("lfm2-tiny", bf16, hardware, store=store, allow_emulated=True)
    assert result.ok and not result.dtype_native and result.to_row()["dtype_native"] is False
    assert result.to_row()["dtype"] == "bfloat16"


def test_rows_measured_on_a_busy_machine_are_flagged_and_retried_on_request(profiled, monkeypatch):
    hardware, store, first = profiled
    store.append({**first.to_row(), "other_cpu_cores": 1.2, "busy": True})
    cached = profile_layout("lfm2-tiny", WORKLOAD, hardware, store=store)
    assert cached.cached and cached.busy
    monkeypatch.setattr(profile_module, "run_in_child", lambda *a, **k: ChildOutcome(False, reason="stub: measured"))
    again = profile_layout("lfm2-tiny", WORKLOAD, hardware, store=store, retry_failed=True)
    assert not again.cached and again.reason == "stub: measured"


def test_several_processes_pool_their_samples(profiled, monkeypatch):
    hardware, store, first = profiled
    child = {
        "memory": {k: v for k, v in first.memory.to_flat().items() if not k.endswith(("_pred", "_error"))},
        "environment": {"torch_version": "x", "cuda_version": None, "gpu_name": None},
    }
    child["memory"]["method"] = child["memory"].pop("memory_method")
    values = iter([
        {**child, "prefill_ms": [10.0, 12.0], "decode_ms": [1.0, 1.0, 1.0],
         "environment": {**child["environment"], "other_cpu_cores": 0.0}},
        {**child, "prefill_ms": [14.0, 16.0], "decode_ms": [2.0, 2.0, 2.0],
         "environment": {**child["environment"], "other_cpu_cores": 0.5}},
    ])
    monkeypatch.setattr(profile_module, "run_in_child", lambda *a, **k: ChildOutcome(True, next(values), threads={}))
    result = profile_layout("lfm2-tiny", replace(WORKLOAD, processes=2), hardware, store=store)
    assert result.prefill_ms.samples == (10.0, 12.0, 14.0, 16.0) and result.prefill_ms.median == 13.0
    assert result.decode_ms_per_token.count == 6 and result.decode_ms_per_token.median == 1.5
    assert result.environment["decode_ms_process_medians"] == [1.0, 2.0]
    assert result.busy  # the busier process decides
    assert result.key != first.key  # the number of processes is part of the cache key
