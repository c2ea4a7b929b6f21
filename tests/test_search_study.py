"""Studies: seeded first, screening recorded as infeasible, failures recorded and survived, a
repeated layout free, a killed or interrupted run resumed with nothing lost."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import AnalyticEvaluator, journal, tiny_config

from lfm2_nas.registry import get_spec
from lfm2_nas.report.trials import front_objectives, pareto_front, trial_rows
from lfm2_nas.search.storage import open_storage
from lfm2_nas.search.run import StudyError, config_of, open_study, run_study

optuna.logging.set_verbosity(optuna.logging.ERROR)
WORKER = Path(__file__).resolve().parent / "search_worker.py"


def _run(tmp_path, config, evaluator=None, **kwargs):
    storage = open_storage(journal(tmp_path))
    study = open_study(config, storage)
    report = run_study(study, config, evaluator or AnalyticEvaluator(), **kwargs)
    return study, report


def test_lfm2_layout_and_its_all_attention_baseline_are_trials_0_and_1(tmp_path):
    study, report = _run(tmp_path, tiny_config())
    first, second = study.trials[:2]
    assert (first.user_attrs["seed"], second.user_attrs["seed"]) == ("lfm2-tiny", "lfm2-tiny-all-attn")
    assert first.user_attrs["spec"] == get_spec("lfm2-tiny").to_dict()
    assert second.user_attrs["spec"] == get_spec("lfm2-tiny-all-attn").to_dict()
    assert first.state == second.state == TrialState.COMPLETE and all(map(math.isfinite, first.values))
    assert report.counted == len(study.trials) == 8 and report.stopped_reason == "target reached"
    assert first.user_attrs["hardware"]["slug"] == "test-hardware"


def test_screened_trials_are_infeasible_with_reason_and_never_measured(tmp_path):
    config = tiny_config('\n[budget]\nparams = "0.15M..0.3M"\n')
    evaluator = AnalyticEvaluator()
    study, _ = _run(tmp_path, config, evaluator)
    screened = [t for t in study.trials if "screened" in t.user_attrs]
    assert screened, "the tiny space has layouts under 150K parameters"
    for t in screened:
        assert t.state == TrialState.COMPLETE
        assert t.constraints["params"] > 0
        assert t.user_attrs["screened"].startswith("screened: ") and "parameters, outside [150.0K, 300.0K]" in t.user_attrs["screened"]
        assert t.values[0] == -math.inf and t.values[1] == math.inf  # not measured: worst values
        assert "decode_ms" not in t.user_attrs
    measured = [t for t in study.trials if "decode_ms" in t.user_attrs]
    assert evaluator.calls["latency"] == len(measured) == len(study.trials) - len(screened)
    assert {t.number for t in study.best_trials} <= {t.number for t in measured}


def test_measured_limit_breach_is_infeasible_and_not_trained(tmp_path):
    config = tiny_config('\n[budget]\ndecode_ms = 0.06\n')
    evaluator = AnalyticEvaluator()
    study, _ = _run(tmp_path, config, evaluator)
    over = [t for t in study.trials if "infeasible" in t.user_attrs]
    assert over and all(t.constraints["decode_ms"] > 0 and "quality" not in t.user_attrs for t in over)
    assert all("quality not trained" in t.user_attrs["infeasible"] for t in over)
    assert evaluator.calls["quality"] == sum(1 for t in study.trials if "quality" in t.user_attrs)


class _Predictor(AnalyticEvaluator):
    def predict_latency(self, spec):
        return (1.0, 1000.0 if spec.num_attention_layers > 2 else 0.01)


def test_predictor_screens_hopeless_layouts_before_they_are_built(tmp_path):
    config = tiny_config('\n[budget]\ndecode_ms = 1.0\n')
    study, _ = _run(tmp_path, config, _Predictor())
    for t in study.trials:
        heavy = t.user_attrs["pattern"].count("A") > 2
        assert ("screened" in t.user_attrs) == heavy
        if heavy:
            assert "predicted decode_ms 1000.0 > limit 1" in t.user_attrs["screened"]
            assert t.user_attrs["predicted_decode_ms"] == 1000.0


def test_failed_trials_recorded_with_reason_and_study_continues(tmp_path):
    evaluator = AnalyticEvaluator(fail={"AAAA": "out of memory: killed"}, quality_fail={"CCAC": "diverged: loss is NaN at step 3"})
    study, report = _run(tmp_path, tiny_config(), evaluator)
    lfm2, baseline = study.trials[:2]
    assert lfm2.state == baseline.state == TrialState.FAIL
    assert lfm2.user_attrs["fail_reason"] == "quality proxy failed: diverged: loss is NaN at step 3"
    assert baseline.user_attrs["fail_reason"] == "profiling failed: out of memory: killed"
    assert report.failed == 2 and report.counted == 8
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 6


class _Crashing(AnalyticEvaluator):
    def latency(self, spec):
        raise RuntimeError("boom")


def test_a_crash_fails_the_trial_and_repeated_crashes_stop_the_worker(tmp_path):
    study, report = _run(tmp_path, tiny_config(), _Crashing())
    assert report.stopped_reason == "5 trials failed in a row"
    assert all(t.user_attrs["fail_reason"] == "crashed: RuntimeError: boom" for t in study.trials)


def test_changed_search_file_is_refused_on_resume(tmp_path):
    _run(tmp_path, tiny_config(), max_trials=1)
    storage = open_storage(journal(tmp_path))
    open_study(tiny_config(**{"trials = 8": "trials = 20"}), storage)  # a bigger target is fine
    with pytest.raises(StudyError, match="created from a different search file"):
        open_study(tiny_config(**{"kv_heads = [1, 2]": "kv_heads = [2]"}), storage)


def test_worker_reads_the_search_file_from_the_study(tmp_path):
    config = tiny_config()
    _run(tmp_path, config, max_trials=1)
    assert config_of(open_storage(journal(tmp_path)), "tiny").fingerprint() == config.fingerprint()
    with pytest.raises(StudyError, match="no study 'other' in this storage"):
        config_of(open_storage(journal(tmp_path)), "other")


class _Interrupting(AnalyticEvaluator):
    def latency(self, spec):
        if self.calls["latency"] == 3:
            raise KeyboardInterrupt
        return super().latency(spec)


def test_ctrl_c_requeues_the_trial_in_progress_and_rerun_resumes(tmp_path):
    config = tiny_config()
    evaluator = _Interrupting()
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, config, evaluator)
    study = optuna.load_study(study_name="tiny", storage=open_storage(journal(tmp_path)))
    interrupted = study.trials[3]
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs["fail_reason"].startswith("interrupted")
    assert study.trials[4].state == TrialState.WAITING and study.trials[4].user_attrs["retry_of"] == 3
    finished_before = {t.number: t.values for t in study.trials if t.state == TrialState.COMPLETE}

    study, report = _run(tmp_path, config)  # the same command again
    assert study.trials[4].state == TrialState.COMPLETE and study.trials[4].params == interrupted.params
    assert {n: study.trials[n].values for n in finished_before} == finished_before
    assert report.counted == 8 and not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_killed_run_resumes_consistently(tmp_path):
    config = tiny_config()
    storage = open_storage(journal(tmp_path))
    open_study(config, storage)
    child = subprocess.Popen(
        [sys.executable, str(WORKER), journal(tmp_path), "tiny", "--sleep", "0.3"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    deadline = time.time() + 60
    while time.time() < deadline:  # kill it mid-trial, once a few trials are finished
        trials = optuna.load_study(study_name="tiny", storage=storage).trials
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        if done >= 3 and trials[-1].state == TrialState.RUNNING and "non_embedding_params" in trials[-1].user_attrs:
            break
        time.sleep(0.05)
    # Kill while it measures (not while it holds the journal's write lock, whose staleness Optuna
    # only breaks after 30 s).
    time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    study = optuna.load_study(study_name="tiny", storage=storage)
    orphan = next(t for t in study.trials if t.state == TrialState.RUNNING)
    finished_before = {t.number: t.values for t in study.trials if t.state == TrialState.COMPLETE}

    study, report = _run(tmp_path, config)
    assert report.recovered == 1
    dead = study.trials[orphan.number]
    assert dead.state == TrialState.FAIL and "stopped mid-trial" in dead.user_attrs["fail_reason"]
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == orphan.number)
    assert retry.state == TrialState.COMPLETE and retry.params == orphan.params
    assert {n: study.trials[n].values for n in finished_before} == finished_before
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert report.counted == 8


def test_own_front_matches_optunas_best_trials(tmp_path):
    config = tiny_config(**{"trials = 8": "trials = 16"})
    study, _ = _run(tmp_path, config)
    rows = trial_rows(study.trials)
    front = pareto_front(rows, front_objectives(config))
    best = {t.user_attrs["spec_hash"] for t in study.best_trials}
    assert {r["spec_hash"] for r in front} == best and len(front) >= 2


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_samplers_run_with_constraints(tmp_path, sampler):
    config = tiny_config('\n[budget]\nparams = "0.15M..0.3M"\n', **{'sampler = "random"': f'sampler = "{sampler}"\nstartup_trials = 4',
                                                                  "trials = 8": "trials = 12"})
    study, report = _run(tmp_path, config)
    assert report.counted == 12 and study.best_trials


def test_workers_follow_the_latest_target(tmp_path):
    config = tiny_config()
    study, report = _run(tmp_path, config, target=4)
    assert report.counted == 4
    _, worker = _run(tmp_path, config)  # a worker: no target of its own
    assert worker.ran == 0 and worker.target == 4
    _, extended = _run(tmp_path, config, target=6)
    assert extended.ran == 2 and extended.counted == 6


def test_cpu_lock_is_exclusive_for_timing_and_shared_for_training(tmp_path):
    import fcntl

    from lfm2_nas.search.lock import cpu_lock

    path = str(tmp_path / "cpu.lock")
    other = os.open(path, os.O_RDWR | os.O_CREAT)
    with cpu_lock(path, exclusive=False):
        fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)  # another shared holder may join
        fcntl.flock(other, fcntl.LOCK_UN)
    with cpu_lock(path, exclusive=True):
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on exit
    os.close(other)
    with cpu_lock(None, exclusive=True):
        pass
