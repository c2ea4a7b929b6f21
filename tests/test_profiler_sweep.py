"""Sweep files: planning, clear errors, resume after a kill, cache hits, failed rows."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lfm2_nas.profiler import store as store_module
from lfm2_nas.profiler.store import ProfileStore
from lfm2_nas.profiler.sweep import SweepFileError, load_sweep, run_sweep
from profiler_support import fake_cpu_profile

ROOT = Path(__file__).resolve().parents[1]
TINY_SWEEP = """
name = "tiny"
out = "{out}"
variants = ["lfm2-tiny", "lfm2-tiny:AAAA", "lfm2-tiny:CCCC"]
[workload]
prompt_len = 8
context_depth = 16
threads = 1
[timing]
warmup = 1
min_count = 2
min_duration_s = 0.0
"""


@pytest.fixture
def profiles(tmp_path, monkeypatch):
    folder = tmp_path / "profiles"
    monkeypatch.setenv("LFM2_NAS_PROFILES", str(folder))
    fake_cpu_profile(folder)
    return folder


def _write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_committed_example_sweep_plans_every_combination():
    plan = load_sweep(ROOT / "experiments" / "sweeps" / "example.toml")
    assert [label for label, _ in plan.layouts] == [
        "lfm2-tiny", "lfm2-350m", "lfm2-350m:CCCCCCCCCCCCCCCC", "350m-attn-every-other"
    ]
    assert plan.layouts[3][1].num_kv_heads == 4 and plan.layouts[3][1].pattern == "CA" * 8
    assert [(w.prompt_len, w.context_depth) for w in plan.settings] == [(64, 256), (64, 2048), (256, 256), (256, 2048)]
    assert len(plan.items()) == 16 and plan.out_dir == Path("experiments/results/example")


def test_zip_pairs_lengths_and_every_axis_multiplies(tmp_path):
    plan = load_sweep(_write(tmp_path, """
variants = ["lfm2-tiny"]
[workload]
prompt_len = [8, 32]
context_depth = [16, 64]
lengths = "zip"
batch = [1, 2]
threads = [1, 2]
dtype = ["float32", "bfloat16"]
"""))
    assert len(plan.settings) == 2 * 2 * 2 * 2
    assert {(w.prompt_len, w.context_depth) for w in plan.settings} == {(8, 16), (32, 64)}
    assert plan.name == "sweep"


@pytest.mark.parametrize(
    "text, message",
    [
        ("variants = [\"lfm2-tiny\"\n", "is not valid TOML"),
        ("variants = [\"lfm2-tiny\"]\nspeed = 1\n[workload]\nprompt_len = 8\ncontext_depth = 8\n", "unknown key(s) ['speed']"),
        ("variants = [\"lfm2-tiny\"]\n[workload]\nprompt_len = 8\n", "needs prompt_len and context_depth"),
        ("variants = [\"lfm2-tiny\"]\n[workload]\nprompt_len = 8\ncontext_depth = 8\ndevice = \"tpu\"\n", "unknown device 'tpu'"),
        ("variants = [\"lfm2-9b\"]\n[workload]\nprompt_len = 8\ncontext_depth = 8\n", "is not a variant name"),
        ("[[layouts]]\nname = \"x\"\nhidden_size = 100\nnum_heads = 3\n[workload]\nprompt_len = 8\ncontext_depth = 8\n",
         "not divisible by num_heads"),
        ("variants = [\"lfm2-tiny\"]\n[workload]\nprompt_len = 0\ncontext_depth = 8\n", "[workload] prompt_len: must be an integer >= 1"),
        ("variants = [\"lfm2-tiny\"]\n[workload]\nprompt_len = [8, 9]\ncontext_depth = 8\nlengths = \"zip\"\n", "as many"),
    ],
)
def test_malformed_sweep_files_raise_one_clear_error(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(SweepFileError) as info:
        load_sweep(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_every_problem_of_a_sweep_file_is_named_on_one_line(tmp_path):
    path = _write(tmp_path, 'variants = ["lfm2-tiny"]\n[workload]\nprompt_len = [0, 8]\ncontext_depth = 8\n'
                            'memory_limit = "lots"\nbackend = "llamacpp"\nquant = "8da4w"\n')
    with pytest.raises(SweepFileError) as info:
        load_sweep(path)
    message = str(info.value)
    assert "\n" not in message
    assert "[workload] prompt_len: must be an integer >= 1, got 0" in message
    assert "[workload] memory_limit: 'lots' is not a size" in message


def test_older_sweep_files_with_timing_and_run_tables_read_as_one_workload(tmp_path):
    old = load_sweep(_write(tmp_path, 'variants = ["lfm2-tiny"]\n[workload]\nprompt_len = 8\ncontext_depth = 8\n'
                                      '[timing]\nmin_count = 3\n[run]\nmemory_limit_bytes = 0\ntimeout_s = 60\n'
                                      'allow_emulated = true\n', "old.toml"))
    new = load_sweep(_write(tmp_path, 'variants = ["lfm2-tiny"]\nallow_emulated = true\n[workload]\nprompt_len = 8\n'
                                      'context_depth = 8\nmin_count = 3\ntimeout_s = 60\n', "new.toml"))
    assert old.settings == new.settings and old.allow_emulated and new.allow_emulated
    assert old.settings[0].memory_limit_bytes is None and old.settings[0].min_count == 3


def test_a_killed_sweep_resumes_keeping_every_finished_row_once(tmp_path, profiles):
    out = tmp_path / "results"
    path = _write(tmp_path, TINY_SWEEP.format(out=out))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "LFM2_NAS_PROFILES": str(profiles)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "sweep", str(path), "--no-progress"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    store = ProfileStore(out / "rows.jsonl")
    deadline = time.monotonic() + 120
    while len(store.rows()) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its measuring child, mid-way
    proc.wait()
    finished = store.rows()
    assert 1 <= len(finished) < 3
    assert out.joinpath("rows.jsonl").read_bytes().endswith(b"\n")

    outcome = run_sweep(load_sweep(path), progress=False)
    assert outcome.cached == len(finished) and outcome.measured == 3 - len(finished) and outcome.failed == 0
    rows = store.rows()
    assert len(rows) == 3
    for key, row in finished.items():
        assert rows[key] == row  # kept, not measured again
    table = pd.read_csv(out / "rows.csv")
    assert sorted(table["key"]) == sorted(rows) and table["key"].is_unique
    assert table["layout"].tolist() == ["lfm2-tiny", "lfm2-tiny:AAAA", "lfm2-tiny:CCCC"]
    assert json.loads(table.loc[0, "decode_ms_samples"])  # raw samples kept

    def no_measuring(*args, **kwargs):
        raise AssertionError("a finished sweep must measure nothing")

    import lfm2_nas.profiler.profile as profile_module

    original = profile_module.run_in_child
    profile_module.run_in_child = no_measuring
    try:
        again = run_sweep(load_sweep(path), progress=False)
    finally:
        profile_module.run_in_child = original
    assert (again.cached, again.measured) == (3, 0)


def test_out_of_memory_and_refused_dtypes_become_failed_rows_and_the_sweep_goes_on(tmp_path, profiles):
    plan = load_sweep(_write(tmp_path, f"""
out = "{tmp_path / 'results'}"
variants = ["lfm2-350m", "lfm2-tiny"]
[workload]
prompt_len = 8
context_depth = 16
threads = 1
dtype = ["float32", "bfloat16"]
[timing]
warmup = 0
min_count = 1
min_duration_s = 0.0
[run]
memory_limit_bytes = 128000000
"""))
    outcome = run_sweep(plan, progress=False)
    reasons = [(r["layout"], r["dtype"], r["ok"], (r["reason"] or "")[:13]) for r in outcome.rows]
    assert reasons == [
        ("lfm2-350m", "float32", False, "out of memory"),
        ("lfm2-350m", "bfloat16", False, "refused: bflo"),
        ("lfm2-tiny", "float32", True, ""),
        ("lfm2-tiny", "bfloat16", False, "refused: bflo"),
    ]
    assert (outcome.measured, outcome.failed, outcome.refused) == (2, 3, 2)


def test_a_torn_last_line_is_ignored_and_repaired_before_the_next_append(tmp_path):
    store = ProfileStore(tmp_path / "rows.jsonl")
    store.append({"key": "a", "x": 1})
    with open(store.path, "a") as f:
        f.write('{"key": "b", "x"')  # a write cut short
    assert list(store.rows()) == ["a"]
    store.append({"key": "c", "x": float("nan")})
    assert store.path.read_text().splitlines() == ['{"key": "a", "x": 1}', '{"key": "c", "x": null}']


def test_tables_are_replaced_atomically(tmp_path, monkeypatch):
    store_module.write_tables([{"key": "a", "s": [1.0, 2.0]}], tmp_path)

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash)
    with pytest.raises(KeyboardInterrupt):
        store_module.write_tables([{"key": "b", "s": [3.0]}], tmp_path)
    assert pd.read_csv(tmp_path / "rows.csv")["key"].tolist() == ["a"]


def test_a_size_string_for_memory_limit_bytes_is_read_as_a_size_and_the_row_is_measured(tmp_path, profiles):
    """Issue 14: ``memory_limit_bytes = "300 MiB"`` passed validation and crashed the child; the settings
    reader now takes it as the size it says, and the measurement runs under that limit."""
    out = tmp_path / "results"
    path = _write(tmp_path, TINY_SWEEP.format(out=out).replace('"lfm2-tiny:AAAA", "lfm2-tiny:CCCC"', "")
                  .replace("threads = 1", 'threads = 1\nmemory_limit_bytes = "300 MiB"'))
    plan = load_sweep(path)
    assert [s.memory_limit_bytes for s in plan.settings] == [300 * 2**20]
    outcome = run_sweep(plan, progress=False)
    assert (outcome.measured, outcome.failed) == (1, 0), outcome.rows


def test_ctrl_c_stops_a_sweep_with_a_message_and_status_130(tmp_path, profiles):
    out = tmp_path / "results"
    # 18 rows, so the sweep is still running when the signal comes (with 3 it could finish on a loaded
    # machine between the first row landing and this process waking up to send it)
    path = _write(tmp_path, TINY_SWEEP.format(out=out).replace("prompt_len = 8", "prompt_len = [8, 9, 10, 11, 12, 13]"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "LFM2_NAS_PROFILES": str(profiles)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sweep", str(path), "--no-progress"],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = ProfileStore(out / "rows.jsonl")
    deadline = time.monotonic() + 120
    while len(store.rows()) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the sweep and its measuring child
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert 1 <= len(store.rows()) < 18
    assert f"interrupted: the rows finished so far are kept in {out}/" in err and "Traceback" not in err
