"""The one settings type: defaults, validation of every key and combination, the one reader."""

import pytest

from lfm2_nas.profiler.settings import TABLE_KEYS, Settings, SettingsError, read_settings
from lfm2_nas.profiler.result import result_key
from lfm2_nas.registry import get_spec


def test_defaults_resolve_to_explicit_threads_quant_and_fill():
    s = Settings(threads=2).resolved()
    assert (s.backend, s.quant, s.cache_fill, s.threads) == ("torch", "none", "synthetic", 2)
    r = Settings(backend="llamacpp", threads=2).resolved()
    assert (r.quant, r.cache_fill) == ("f32", "prefill")
    assert Settings(prompt_len=600, context_depth=100).max_len == 600
    assert Settings(prompt_len=10, context_depth=100).max_len == 103


def test_every_bad_value_is_named_in_one_error():
    with pytest.raises(SettingsError) as info:
        Settings(prompt_len=0, warmup=-1, cache_fill="zeros", device="tpu")
    assert [p.split(":")[0] for p in info.value.problems] == ["prompt_len", "device", "warmup", "cache_fill"]


@pytest.mark.parametrize("kwargs, message", [
    ({"quant": "q4_0"}, "the torch backend runs the weights at dtype"),
    ({"backend": "executorch", "quant": "q4_0"}, "no scheme 'q4_0'; choose one of fp32, 8da4w"),
    ({"backend": "llamacpp", "batch": 2}, "measured at batch 1"),
    ({"backend": "llamacpp", "dtype": "bf16"}, "dtype applies to the torch backend only"),
    ({"backend": "executorch", "device": "cuda"}, "measured on the CPU"),
    ({"backend": "executorch", "cache_fill": "synthetic"}, "filled by a real prefill"),
])
def test_combinations_a_backend_cannot_run_are_refused(kwargs, message):
    with pytest.raises(SettingsError, match=message):
        Settings(**kwargs)


def test_llamacpp_takes_either_cache_fill_and_defaults_to_a_real_prefill():
    assert Settings(backend="llamacpp").fill == "prefill"
    assert Settings(backend="llamacpp", cache_fill="synthetic").fill == "synthetic"
    assert Settings().fill == "synthetic"


def test_a_table_crosses_axes_and_zips_lengths():
    settings, problems = read_settings({"prompt_len": [8, 32], "context_depth": [16, 64], "lengths": "zip",
                                        "backend": ["torch", "executorch"], "memory_limit": "300 MiB"},
                                       "[workload]", axes=True)
    assert problems == []
    assert [(s.prompt_len, s.context_depth, s.backend) for s in settings] == [
        (8, 16, "torch"), (8, 16, "executorch"), (32, 64, "torch"), (32, 64, "executorch")]
    assert {s.memory_limit_bytes for s in settings} == {300 * 2**20}


def test_a_table_reports_every_problem_with_where_it_is():
    settings, problems = read_settings({"prompt_len": 0, "memory_limit": "lots", "speed": 1, "threads": [1, 2]},
                                       "[target]", axes=False)
    assert settings == []
    assert [p.split(":")[0] for p in problems] == [
        "[target] prompt_len", "[target] memory_limit", "[target] speed", "[target] threads"]
    assert "takes one value here" in problems[-1]


def test_a_problem_of_a_combination_is_reported_once_however_many_rows_it_spoils():
    _, problems = read_settings({"prompt_len": [8, 16], "context_depth": 8, "backend": "llamacpp", "batch": 2},
                                "[workload]", axes=True)
    assert problems == ["[workload] batch: the llamacpp backend is measured at batch 1, not 2"]


def test_sizes_read_in_one_form_and_zero_means_no_limit_in_old_files():
    for value, expected in (("300 MiB", 300 * 2**20), (1024, 1024), (0, None)):
        settings, problems = read_settings({"memory_limit_bytes": value}, "[run]", axes=True)
        assert problems == [] and settings[0].memory_limit_bytes == expected


def test_table_keys_are_the_fields():
    assert "memory_limit" in TABLE_KEYS and "memory_limit_bytes" not in TABLE_KEYS
    assert len(TABLE_KEYS) == len(Settings.__dataclass_fields__)


def test_rows_round_trip_and_torch_keys_do_not_depend_on_backend_fields():
    s = Settings(prompt_len=16, context_depth=40, threads=1, processes=2, memory_limit_bytes=2**30)
    assert Settings.from_dict(s.resolved().to_dict()).resolved() == s.resolved()
    spec = get_spec("lfm2-tiny")
    old_row = {k: v for k, v in s.resolved().to_dict().items() if k not in ("backend", "quant")}
    assert Settings.from_dict(old_row).resolved() == s.resolved()  # a row stored before backends existed
    torch_key = result_key(spec, s, "cpu-x")
    assert torch_key != result_key(spec, Settings(prompt_len=16, context_depth=40, threads=1, processes=2,
                                                  memory_limit_bytes=2**30, backend="llamacpp"), "cpu-x", "0.3.36")
    llama = Settings(threads=1, backend="llamacpp", quant="q4_0")
    assert result_key(spec, llama, "cpu-x", "0.3.36") != result_key(spec, llama, "cpu-x", "0.3.37")


def test_torch_keys_are_those_results_were_stored_under_before_settings_were_one_type():
    import hashlib
    import json

    spec, s = get_spec("lfm2-tiny"), Settings(prompt_len=16, context_depth=40, threads=1, warmup=1, min_count=3)
    before = {  # the key's parts as the profiler wrote them before backends existed
        "spec": spec.spec_hash(), "hardware": "cpu-x",
        "workload": {"prompt_len": 16, "context_depth": 40, "batch": 1, "dtype": "float32", "device": "cpu", "threads": 1},
        "timing": {"warmup": 1, "min_count": 3, "min_duration_s": 1.0, "processes": 1},
        "cache_fill": "synthetic", "memory_limit_bytes": None,
    }
    assert result_key(spec, s, "cpu-x") == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:20]
