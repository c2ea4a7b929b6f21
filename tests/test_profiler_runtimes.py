"""The profiler with a deployment runtime: artifacts exported once and checked, rows that say which
runtime measured them, refusals before anything runs. Uses llama.cpp (the runtime CI builds)."""

from dataclasses import replace

import pytest
from runtime_support import require

from lfm2_nas import get_spec
from lfm2_nas.profiler import Settings, profile_layout
from lfm2_nas.profiler.artifacts import artifact_path, ensure_artifact
from lfm2_nas.profiler.sweep import load_sweep, run_sweep
from lfm2_nas.runtimes import get_runtime
from lfm2_nas.runtimes.base import ExportError, RuntimeUnavailable
from profiler_support import fake_cpu_profile
from search_helpers import run_cli

require("llama_cpp")

FAST = Settings(prompt_len=8, context_depth=24, threads=1, warmup=1, min_count=3, min_duration_s=0.0,
                backend="llamacpp", quant="q8_0")


@pytest.fixture
def hardware(tmp_path, monkeypatch):
    monkeypatch.setenv("LFM2_NAS_PROFILES", str(tmp_path / "profiles"))
    return fake_cpu_profile(tmp_path / "profiles")


def test_an_artifact_is_exported_once_and_exported_again_when_its_file_is_damaged(tmp_path, monkeypatch):
    spec = get_spec("lfm2-tiny")
    first = ensure_artifact("llamacpp", spec, "q8_0", 64, tmp_path)
    assert first.path.is_file() and first.size_bytes == first.path.stat().st_size and first.export_s > 0
    runtime = get_runtime("llamacpp")
    calls = []
    real = runtime.export
    monkeypatch.setattr(runtime, "export", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert ensure_artifact("llamacpp", spec, "q8_0", 64, tmp_path) == first and calls == []  # the cache answers
    with open(first.path, "r+b") as f:  # a partial file, as after a crash mid-copy
        f.truncate(first.size_bytes // 2)
    again = ensure_artifact("llamacpp", spec, "q8_0", 64, tmp_path)
    assert len(calls) == 1 and again.path.stat().st_size == first.size_bytes
    data = bytearray(again.path.read_bytes())  # same size, one byte flipped
    data[len(data) // 2] ^= 0xFF
    again.path.write_bytes(bytes(data))
    ensure_artifact("llamacpp", spec, "q8_0", 64, tmp_path)
    assert len(calls) == 2
    assert {p.name for p in tmp_path.rglob("*")} == {"llamacpp", first.path.name, first.path.name + ".json"}


def test_a_runtime_row_records_the_runtime_and_is_reused(hardware, tmp_path):
    store = tmp_path / "rows.jsonl"
    result = profile_layout("lfm2-tiny", FAST, hardware, store=store)
    assert result.ok, result.reason
    row = result.to_row()
    assert (row["backend"], row["quant"], row["cache_fill"], row["context_depth"]) == ("llamacpp", "q8_0", "prefill", 24)
    assert row["runtime_version"].startswith("llama-cpp-python") and row["artifact_bytes"] > 0
    assert row["decode_ms_median"] > 0 and row["prefill_ms_median"] > 0 and row["runtime_decode_ms"] > 0
    assert row["runtime_weights_bytes"] > 0 and row["runtime_cache_bytes"] > 0
    assert profile_layout("lfm2-tiny", FAST, hardware, store=store).cached
    torch_row = profile_layout("lfm2-tiny", replace(FAST, backend="torch", quant=None, cache_fill=None), hardware,
                               store=store)
    assert not torch_row.cached and torch_row.key != result.key  # the backend is part of the key


def test_a_synthetic_fill_row_is_its_own_measurement_at_the_same_depth(hardware, tmp_path):
    from lfm2_nas.runtimes.llamacpp import SYNTHETIC_BASE

    deep = replace(FAST, context_depth=SYNTHETIC_BASE + 44)  # past the real part of a synthetic fill
    store = tmp_path / "rows.jsonl"
    real = profile_layout("lfm2-tiny", deep, hardware, store=store)
    synthetic = profile_layout("lfm2-tiny", replace(deep, cache_fill="synthetic"), hardware, store=store)
    assert real.ok and synthetic.ok, (real.reason, synthetic.reason)
    assert synthetic.key != real.key and synthetic.to_row()["cache_fill"] == "synthetic"
    assert synthetic.to_row()["context_depth"] == deep.context_depth and synthetic.to_row()["decode_ms_median"] > 0


def test_a_layout_the_runtime_cannot_export_is_refused_before_anything_runs(hardware, tmp_path):
    all_conv = get_spec("lfm2-tiny", pattern="CCCC")
    with pytest.raises(ExportError):
        profile_layout(all_conv, FAST, hardware, store=tmp_path / "rows.jsonl")
    assert not (tmp_path / "rows.jsonl").exists()
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "out"}"\nvariants = ["lfm2-tiny:CCCC"]\n[workload]\nprompt_len = 8\n'
                    'context_depth = 8\nthreads = 1\nbackend = "llamacpp"\nmin_count = 1\nmin_duration_s = 0.0\n')
    outcome = run_sweep(load_sweep(path), progress=False)
    assert outcome.refused == 1 and outcome.rows[0]["reason"].startswith("refused:")


def test_the_cli_says_in_one_line_what_a_backend_lacks(monkeypatch, capsys, hardware):
    done = run_cli(monkeypatch, capsys, "profile", "lfm2-tiny", "--backend", "executorch", "--quant", "q4_0")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: --quant: the executorch backend has no scheme 'q4_0'; "
                                   "choose one of fp32, 8da4w")
    import lfm2_nas.runtimes as runtimes

    monkeypatch.setitem(runtimes._PACKAGES, "llamacpp", "no-such-package-lfm2-nas")
    done = run_cli(monkeypatch, capsys, "profile", "lfm2-tiny", "--backend", "llamacpp", "--threads", "1")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("error: the llamacpp backend is not installed: CMAKE_ARGS=")
    with pytest.raises(RuntimeUnavailable):
        runtimes.installed_version("llamacpp")


def test_an_export_revision_changes_the_artifact_key(tmp_path, monkeypatch):
    import lfm2_nas.runtimes as runtimes

    spec = get_spec("lfm2-tiny")
    before = artifact_path("llamacpp", spec, "q8_0", 32, tmp_path)
    monkeypatch.setitem(runtimes.EXPORT_REVISIONS, "llamacpp", 7)
    assert runtimes.installed_version("llamacpp").endswith("+export7")
    assert artifact_path("llamacpp", spec, "q8_0", 32, tmp_path) != before


def test_only_an_artifact_holding_the_cache_is_keyed_by_cache_length(tmp_path):
    spec = get_spec("lfm2-tiny")
    assert artifact_path("llamacpp", spec, "q8_0", 32, tmp_path) == artifact_path("llamacpp", spec, "q8_0", 4097, tmp_path)
    assert artifact_path("executorch", spec, "fp32", 32, tmp_path) != artifact_path("executorch", spec, "fp32", 4097, tmp_path)
