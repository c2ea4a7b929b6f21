"""``lfm2-nas search``: bad input is one line and exit 2; status and export read a study; exported
layouts load in transformers; optuna-dashboard reads the journal."""

import json
import os
import subprocess
import sys
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pandas as pd
import pytest
from search_helpers import TINY_TOML, AnalyticEvaluator, run_cli, tiny_config

from lfm2_nas import cost
from lfm2_nas.registry import get_spec
from lfm2_nas.report.trials import COLUMNS
from lfm2_nas.search.storage import open_storage
from lfm2_nas.search.run import open_study, run_study

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.ERROR)


def cli_process(*args, cwd):
    """The command line in its own process, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lfm2_nas", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def cli(monkeypatch, capsys):
    """The command line's entry point in this process (faster: torch is imported once)."""

    def run(*args, cwd):
        monkeypatch.chdir(cwd)
        return run_cli(monkeypatch, capsys, *args)

    return run


def _one_error(result):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("error: ") for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    return lines


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """A journal study under ``<tmp>/experiments/tiny`` run with the test evaluator, one layout failing."""
    root = tmp_path_factory.mktemp("cli")
    config = tiny_config('\n[budget]\nparams = "0.15M..0.3M"\n', **{"trials = 8": "trials = 10"})
    storage = open_storage(root / "experiments" / "tiny" / "journal.log")
    study = open_study(config, storage)
    run_study(study, config, AnalyticEvaluator(fail={"AAAA": "out of memory: test"}))
    return root


def test_malformed_file_unknown_sampler_and_unreachable_storage_are_one_line_each(tmp_path, cli):
    (tmp_path / "bad.toml").write_text("[study\n")
    (line,) = _one_error(cli_process("search", "run", "bad.toml", cwd=tmp_path))
    assert line.startswith("error: bad.toml: not valid TOML")
    (tmp_path / "sampler.toml").write_text(TINY_TOML.replace('"random"', '"annealing"'))
    (line,) = _one_error(cli("search", "run", "sampler.toml", cwd=tmp_path))
    assert line == "error: sampler.toml: [study] sampler: unknown value 'annealing'; choose one of tpe, nsga2, random"
    (tmp_path / "ok.toml").write_text(TINY_TOML)
    (line,) = _one_error(cli("search", "run", "ok.toml", "--storage", "postgresql://u:pw@127.0.0.1:9/db", cwd=tmp_path))
    assert line.startswith("error: cannot open storage postgresql://u:***@127.0.0.1:9/db:")
    (line,) = _one_error(cli("search", "worker", "--storage", "experiments/x/journal.log", "--study", "x", cwd=tmp_path))
    assert line.startswith("error: no study 'x' in this storage")


def test_status_shows_progress_front_seeds_and_failures(finished_study, cli):
    result = cli("search", "status", "--study", "tiny", cwd=finished_study)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("study tiny: 10/10 finished")
    assert "Pareto front (quality maximize, decode_ms minimize, prefill_ms minimize):" in out
    assert "lfm2-tiny (trial 0): on the Pareto front" in out
    assert "lfm2-tiny-all-attn (trial 1): not on the front: fail (profiling failed: out of memory: test)" in out
    assert "trial 1: profiling failed: out of memory: test" in out
    data = json.loads(cli("search", "status", "--study", "tiny", "--format", "json", cwd=finished_study).stdout)
    assert data["progress"]["failed"] == 1 and data["progress"]["finished"] == 10


def test_export_tables_and_a_checkpoint_transformers_loads(finished_study, cli):
    transformers = pytest.importorskip("transformers")
    result = cli("search", "export", "--study", "tiny", "--checkpoint", "0", cwd=finished_study)
    assert result.returncode == 0, result.stderr
    folder = finished_study / "experiments" / "tiny"
    trials, front = pd.read_csv(folder / "trials.csv"), pd.read_csv(folder / "pareto.csv")
    assert list(trials.columns) == COLUMNS and len(trials) == 10
    assert list(front.columns) == COLUMNS and len(front) >= 1
    assert front["feasible"].all() and (front["status"] == "measured").all()
    assert set(front["trial"]) <= set(trials["trial"]) and front["params"].notna().all()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["seeds"][0]["seed"] == "lfm2-tiny" and summary["seeds"][0]["placement"] == "on the Pareto front"
    assert (folder / "pareto.png").stat().st_size > 1000
    model = transformers.AutoModelForCausalLM.from_pretrained(folder / "export" / "trial-0000")
    assert sum(p.numel() for p in model.parameters()) == cost.param_count(get_spec("lfm2-tiny"))
    assert [t[0] for t in model.config.layer_types] == ["c", "c", "f", "c"]


def test_optuna_dashboard_reads_the_journal(finished_study):
    dashboard = pytest.importorskip("optuna_dashboard")
    from optuna_dashboard._storage_url import get_storage  # what `optuna-dashboard FILE` does

    app = dashboard.wsgi(get_storage(str(finished_study / "experiments" / "tiny" / "journal.log")))

    def get(path):
        env, status = {}, []
        setup_testing_defaults(env)
        env["PATH_INFO"] = path
        body = b"".join(app(env, lambda s, h, e=None: status.append(s)))
        return status[0], json.loads(body)

    status, studies = get("/api/studies")
    assert status == "200 OK" and studies["study_summaries"][0]["study_name"] == "tiny"
    status, detail = get("/api/studies/0")
    assert status == "200 OK" and len(detail["trials"]) == 10
    assert detail["objective_names"] == ["quality (analytic)", "decode_ms_per_token", "prefill_ms"]
