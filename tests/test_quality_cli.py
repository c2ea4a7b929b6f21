import json
import subprocess
import sys

from typer.testing import CliRunner

from lfm2_nas.cli import app
from quality_helpers import write_corpus

runner = CliRunner()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lfm2_nas", *args], capture_output=True, text=True)


def test_run_analytic_prints_json():
    result = runner.invoke(app, ["quality", "run", "lfm2-350m", "--tier", "analytic", "--format", "json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert row["score"] == 287_375_104 and row["metric"] == "non_embedding_params" and row["ok"]


def test_run_text_on_a_user_corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("LFM2_NAS_CACHE", str(tmp_path / "cache"))
    corpus = write_corpus(tmp_path / "c")
    result = runner.invoke(app, ["quality", "run", "lfm2-tiny", "--tier", "text", "--budget", "0.003", "--corpus",
                                 str(corpus), "--tokenizer", "byte", "--proxy-width", "32", "--quiet", "--format", "json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    assert row["metric"] == "val_bits_per_byte" and row["ok"] and row["tokens"] == 2048  # one step of 8 x 256
    assert row["details"]["tokenizer"] == "byte"


def test_bad_input_gets_one_error_line_and_exit_2(tmp_path):
    folder = write_corpus(tmp_path / "c", documents=3)
    (folder / "latin1.txt").write_bytes(b"na\xefve")
    cases = [
        (["quality", "run", "lfm2-700m", "--tier", "text"], "multiple of 48"),
        (["quality", "run", "lfm2-tiny", "--tier", "text", "--corpus", str(folder)], "not UTF-8 text"),
        (["quality", "run", "lfm2-tiny", "--tier", "text", "--corpus", str(tmp_path / "nowhere")], "does not exist"),
    ]
    for args, message in cases:
        done = _cli(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr


def test_validate_with_a_small_panel_writes_tables_and_plot(tmp_path, monkeypatch):
    monkeypatch.setenv("LFM2_NAS_CACHE", str(tmp_path / "cache"))
    panel = tmp_path / "panel.json"
    panel.write_text(json.dumps({"hybrid": "lfm2-tiny", "all-conv": "lfm2-tiny:CCCC", "short": "lfm2-tiny:CA"}))
    args = ["quality", "validate", "--panel", str(panel), "--out", str(tmp_path / "out"), "--budget", "0.004",
            "--no-synthetic", "--corpus", str(write_corpus(tmp_path / "c")), "--tokenizer", "byte", "--proxy-width", "32",
            "--quiet", "--format", "json"]
    stopped = runner.invoke(app, [*args, "--limit", "2"])
    assert stopped.exit_code == 3 and not json.loads(stopped.stdout)["summary"]["complete"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["complete"] and report["summary"]["layouts"] == 3
    assert -1 <= report["summary"]["spearman_text_budgets"] <= 1
    for name in ("results.jsonl", "scores.csv", "correlations.csv", "budget_agreement.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
