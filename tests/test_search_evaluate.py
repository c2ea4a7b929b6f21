"""The real pipeline: ``lfm2-nas search run`` with the real profiler (tiny layouts, short timing
loops) and the analytic quality tier, end to end, resumed, then extended; and confirmed."""

import json

import optuna
import pandas as pd
import pytest
from search_helpers import run_cli

import lfm2_nas.profiler  # noqa: F401  the real pipeline: a missing package fails here, never skips
import lfm2_nas.quality  # noqa: F401
from lfm2_nas.search.storage import open_storage

SEARCH = """
[study]
name = "real"
trials = 3
sampler = "random"

[space]
base = "lfm2-tiny"
depth = [3, 5]
hidden_size = [64]
kv_heads = [1, 2]

[target]
prompt_len = 16
context_depth = 32
threads = 1

[target.profiler]
warmup = 1
min_count = 2
min_duration_s = 0.02

[quality]
tier = "analytic"
"""


@pytest.fixture
def hardware(tmp_path, monkeypatch):
    """A saved hardware profile of this CPU (so no peak measurement runs); peaks are placeholders
    used only for roofline fractions, never for a latency the test checks."""
    from lfm2_nas.profiler.hardware import HardwareProfile, device_identity

    monkeypatch.setenv("LFM2_NAS_PROFILES", str(tmp_path / "profiles"))
    profile = HardwareProfile(
        **device_identity("cpu"), date="2000-01-01", threads=1, read_bandwidth_bytes_per_s=10e9,
        matmul_flops_per_s={"float32": 50e9}, native_dtypes=("float32",),
        kernel_choice={"table": {}, "note": "made up by the tests: F.linear everywhere"},
    )
    profile.save(tmp_path / "profiles")
    return profile


@pytest.fixture
def quiet_machine(monkeypatch):
    """No measurement counts as busy, however loaded the (shared, 2-core) test machine is: these tests
    check the pipeline; the busy path is checked with busy forced on, in its own test below."""
    import lfm2_nas.profiler.result as result_module

    monkeypatch.setattr(result_module, "BUSY_OTHER_CORES", float("inf"))


def _cli(monkeypatch, capsys, *args):
    result = run_cli(monkeypatch, capsys, *args)
    return result.returncode, result.stdout, result.stderr


def test_search_run_measures_resumes_and_extends(tmp_path, hardware, quiet_machine, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.toml").write_text(SEARCH)
    code, out, err = _cli(monkeypatch, capsys, "search", "run", "real.toml")
    assert code == 0, err
    assert f"measuring on {hardware.slug}" in err
    rows = pd.read_csv(tmp_path / "experiments" / "real" / "trials.csv")
    assert len(rows) == 3 and list(rows["seed"].fillna(""))[:2] == ["lfm2-tiny", "lfm2-tiny-all-attn"]
    measured = rows[rows["status"] == "measured"]
    assert len(measured) == 3 and (measured["decode_ms"] > 0).all() and (measured["prefill_ms"] > 0).all()
    assert (measured["peak_bytes"] > 0).all() and (measured["hardware"] == hardware.slug).all()
    assert (measured["quality"] == measured["non_embedding_params"]).all()  # the analytic tier's score

    storage = open_storage(tmp_path / "experiments" / "real" / "journal.log")
    study = optuna.load_study(study_name="real", storage=storage)
    first = study.trials[0]
    assert first.user_attrs["hardware"]["slug"] == hardware.slug
    assert first.user_attrs["profile_row"]["spec_hash"] == first.user_attrs["spec_hash"]
    assert first.user_attrs["profile_row"]["decode_ms_median"] == first.user_attrs["decode_ms"]

    code, out, err = _cli(monkeypatch, capsys, "search", "run", "real.toml")  # the same command: nothing left to do
    assert code == 0 and "target reached: ran 0 trial(s) here" in err
    code, out, err = _cli(monkeypatch, capsys, "search", "run", "real.toml", "--trials", "4")
    assert code == 0 and "target reached: ran 1 trial(s) here" in err and "study has 4/4" in err
    summary = json.loads((tmp_path / "experiments" / "real" / "summary.json").read_text())
    assert summary["progress"]["finished"] == 4 and summary["seeds"][0]["seed"] == "lfm2-tiny"


def test_repeated_layout_quality_comes_from_the_store(tmp_path, hardware, monkeypatch):
    import lfm2_nas.quality as quality

    from lfm2_nas.registry import get_spec
    from lfm2_nas.search.config import parse_config
    from lfm2_nas.search.evaluate import Measurer

    calls = []
    real = quality.evaluate
    monkeypatch.setattr(quality, "evaluate", lambda *a, **k: calls.append(a) or real(*a, **k))
    config = parse_config(SEARCH)
    spec = get_spec("lfm2-tiny")
    first = Measurer(config, tmp_path / "study").quality(spec)
    again = Measurer(config, tmp_path / "study")  # a later process, same study folder
    assert again.quality(spec) == first and first.ok and first.metric == "non_embedding_params"
    assert len(calls) == 1 and again.quality_hits == 1
    assert (tmp_path / "study" / "cache" / "quality.jsonl").is_file()


def test_a_stored_profile_is_reused_without_taking_the_cpu_lock(tmp_path, hardware, quiet_machine, monkeypatch):
    import fcntl
    import os

    from lfm2_nas.registry import get_spec
    from lfm2_nas.search.config import parse_config
    from lfm2_nas.search.evaluate import Measurer

    lock = tmp_path / "cpu.lock"
    config = parse_config(SEARCH.replace('sampler = "random"', f'sampler = "random"\ncpu_lock = "{lock}"'))
    measurer = Measurer(config, tmp_path / "study")
    spec = get_spec("lfm2-tiny")
    first = measurer.latency(spec)
    holder = os.open(lock, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # someone else times something now
    try:
        assert measurer.latency(spec) == first  # served from the profiler's store, no waiting
    finally:
        os.close(holder)


def test_a_measurement_on_a_busy_machine_is_retried_then_failed_with_the_reason(tmp_path, hardware, monkeypatch):
    import lfm2_nas.profiler as profiler_pkg
    from lfm2_nas.profiler.result import ProfileResult
    from lfm2_nas.registry import get_spec
    from lfm2_nas.search.config import parse_config
    from lfm2_nas.search.evaluate import BUSY_RETRIES, Measurer

    calls, measured = [], []
    real = profiler_pkg.profile_layout

    def profile_layout(*args, **kwargs):
        calls.append(kwargs)
        result = real(*args, **kwargs)
        measured.append(not result.cached)
        return result

    import lfm2_nas.profiler.contention as contention

    monkeypatch.setattr(contention, "QUIET_WAIT_S", 0.2)  # the shared test machine may never be quiet
    with monkeypatch.context() as m:
        m.setattr(profiler_pkg, "profile_layout", profile_layout)
        m.setattr(ProfileResult, "busy", property(lambda self: True))  # as if another process ran each time
        result = Measurer(parse_config(SEARCH), tmp_path / "study").latency(get_spec("lfm2-tiny"))
    assert not result.ok and result.reason.startswith("machine busy while measuring")
    assert len(calls) == 1 + BUSY_RETRIES and all(k.get("retry_failed") for k in calls[1:])
    assert measured == [True] * (1 + BUSY_RETRIES)  # each retry measured again, not the stored busy row
    # on a quiet machine the first measurement is kept
    import lfm2_nas.profiler.result as result_module

    monkeypatch.setattr(result_module, "BUSY_OTHER_CORES", float("inf"))
    assert Measurer(parse_config(SEARCH), tmp_path / "study").latency(get_spec("lfm2-tiny-all-attn")).ok


def test_remeasure_never_answers_from_a_cache_and_leaves_the_search_cache_alone(tmp_path, hardware, quiet_machine):
    from lfm2_nas.registry import get_spec
    from lfm2_nas.search.config import parse_config
    from lfm2_nas.search.evaluate import Measurer

    measurer = Measurer(parse_config(SEARCH), tmp_path / "study")
    spec = get_spec("lfm2-tiny")
    first = measurer.latency(spec)  # the figure a trial was given, now in the profiler's cache
    store = tmp_path / "study" / "confirm" / "profiles.jsonl"
    again = [measurer.remeasure(spec, processes=n, store=store) for n in (2, 1)]
    assert [r.ok for r in again] == [True, True] and [r.row["processes"] for r in again] == [2, 1]
    assert len(store.read_text().splitlines()) == 2  # measured twice, never served from a store
    assert measurer.latency(spec) == first  # the search's cache still answers with its own figure
    assert measurer.quality(spec, seed=5, budget=2.0).ok
    keys = [json.loads(line)["key"] for line in (tmp_path / "study" / "cache" / "quality.jsonl").read_text().splitlines()]
    assert any(key.split("-")[2:4] == ["b2", "s5"] for key in keys)  # another seed and budget: their own cache entry


def test_search_confirm_measures_a_real_study_again(tmp_path, hardware, quiet_machine, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real.toml").write_text(SEARCH.replace("trials = 3", "trials = 2"))  # the two seeds
    assert _cli(monkeypatch, capsys, "search", "run", "real.toml")[0] == 0
    code, out, err = _cli(monkeypatch, capsys, "search", "confirm", "real.toml", "--rounds", "2", "--processes", "1")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reference"] == 0 and summary["rounds"] == 2 and summary["seeds"] == [1, 2, 3]
    folder = tmp_path / "experiments" / "real" / "confirm"
    profiles = (folder / "profiles.jsonl").read_text().splitlines()
    assert len(profiles) == 4  # 2 layouts x 2 rounds, all measured afresh (the search's figures were cached)
    layouts = pd.read_csv(folder / "layouts.csv")
    assert list(layouts["rounds"]) == [2, 2] and (layouts["decode_ms_estimate"] > 0).all()
