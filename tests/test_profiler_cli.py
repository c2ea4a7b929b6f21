"""``lfm2-nas profile ...`` and ``lfm2-nas sweep``: bad input gets one line and a non-zero exit."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lfm2_nas.cli import app, main
from lfm2_nas.profiler import hardware as hardware_module
from lfm2_nas.profiler.store import ProfileStore
from profiler_support import fake_cpu_profile
from test_profiler_predictor import _rows

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "args, message",
    [
        (["profile", "lfm2-9b"], "error: 'lfm2-9b' is not a variant name"),
        (["profile", "lfm2-tiny", "--device", "tpu"], "error: --device: unknown device 'tpu': use cpu, cuda or cuda:N"),
        (["sweep", "no-such-sweep.toml"], "error: sweep file no-such-sweep.toml does not exist"),
    ],
)
def test_bad_input_prints_one_error_line_and_exits_2(args, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["lfm2-nas", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()]
    assert err.startswith(message), err


def test_a_malformed_sweep_file_is_one_line_too(tmp_path):
    """In a real process: nothing but the one line reaches the terminal."""
    path = tmp_path / "bad.toml"
    path.write_text("variants = [\"lfm2-tiny\"]\n[workload]\nprompt_len = 8\ncontext_depth = 8\nthreds = 2\n")
    done = _cli("sweep", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: sweep file {path}: [workload] threds: unknown key; known: prompt_len, context_depth, batch, "
        "threads, dtype, device, backend, quant, warmup, min_count, min_duration_s, processes, cache_fill, "
        "memory_limit, timeout_s, lengths"
    )


def test_hardware_shows_the_saved_profile_without_measuring(tmp_path, monkeypatch):
    monkeypatch.setenv("LFM2_NAS_PROFILES", str(tmp_path))
    saved = fake_cpu_profile(tmp_path)
    monkeypatch.setattr(hardware_module, "run_in_child", lambda *a, **k: pytest.fail("must not measure"))
    done = CliRunner().invoke(app, ["profile", "hardware", "--format", "json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["slug"] == saved.slug
    table = CliRunner().invoke(app, ["profile", "hardware"])
    assert "(not native: refused)" in table.output and saved.file_name in table.output


def test_fit_reports_held_out_error_and_saves_the_predictor(tmp_path):
    store = ProfileStore(tmp_path / "rows.jsonl")
    for i, row in enumerate(_rows()):
        store.append({**row, "key": str(i)})
    out = tmp_path / "predictor.json"
    report = tmp_path / "report.json"
    done = CliRunner().invoke(
        app, ["profile", "fit", str(tmp_path), "--out", str(out), "--report", str(report), "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    assert summary["layouts"] == 10 and summary["decode_held_out_mape"] < 1e-3
    assert json.loads(out.read_text())["hardware"] == ["cpu-test"]
    assert len(json.loads(report.read_text())["predictions"]) == 30
