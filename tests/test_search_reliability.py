"""A study is never lost, never stalled, never silently short (issue 14): transient failures are
re-queued and never count, seeds are always measured, a repeated layout takes no slot, a torn
journal is repaired, killed workers lose nothing, local runs share the CPU lock by default."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import AnalyticEvaluator, journal, run_cli, tiny_config

from lfm2_nas.search.lock import DEFAULT_LOCK, LOCK_OFF, resolve_lock
from lfm2_nas.search import recovery
from lfm2_nas.search.recovery import counted_trials, is_transient, recover_orphans
from lfm2_nas.search.run import MAX_CONSECUTIVE_FAILURES, open_study, run_study
from lfm2_nas.search.storage import StorageError, open_storage

optuna.logging.set_verbosity(optuna.logging.ERROR)
WORKER = Path(__file__).resolve().parent / "search_worker.py"
BUSY = "machine busy while measuring, in all 3 attempts (other processes used 1.00 CPU cores in the last)"


def _run(path, config, evaluator=None, **kwargs):
    storage = open_storage(path)
    study = open_study(config, storage)
    return study, run_study(study, config, evaluator or AnalyticEvaluator(), **kwargs)


class _BusyFirst(AnalyticEvaluator):
    """The machine is busy for the first ``n`` measurements (the profiler's reason), quiet after."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = n

    def latency(self, spec):
        if self.calls["latency"] < self.n:
            self.calls["latency"] += 1
            from lfm2_nas.search.measurements import LatencyResult

            return LatencyResult(ok=False, reason=BUSY)
        return super().latency(spec)


def test_busy_failures_are_requeued_never_count_and_the_seeds_get_measured(tmp_path):
    study, report = _run(journal(tmp_path), tiny_config(), _BusyFirst(3))
    trials = study.trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 3 and all(is_transient(t) for t in failed)
    assert report.transient == 3 and report.counted == counted_trials(trials) == 8
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 8  # the target, in measured trials only
    for seed in ("lfm2-tiny", "lfm2-tiny-all-attn"):  # both seeds failed busy, both were measured after all
        assert [t.state for t in trials if t.user_attrs.get("seed") == seed][-1] == TrialState.COMPLETE
    assert report.stopped_reason == "target reached" and not report.short


def test_a_seed_left_without_a_result_is_queued_again_by_the_next_run(tmp_path):
    config = tiny_config()
    always_busy = _BusyFirst(10**6)
    _, report = _run(journal(tmp_path), config, always_busy)
    assert report.short and report.stopped_reason == f"{MAX_CONSECUTIVE_FAILURES} trials failed in a row"
    assert report.counted == 0  # five busy failures: none counts

    study, report = _run(journal(tmp_path), config)  # a quiet machine now
    assert report.counted == 8 and not report.short
    seeds = {t.user_attrs["seed"]: t for t in study.trials if t.state == TrialState.COMPLETE and "seed" in t.user_attrs}
    assert set(seeds) == {"lfm2-tiny", "lfm2-tiny-all-attn"}


def test_retry_failed_queues_every_failed_layout_again(tmp_path):
    config = tiny_config()
    oom = AnalyticEvaluator(fail={"AAAA": "out of memory: killed"})
    study, report = _run(journal(tmp_path), config, oom)
    (failed,) = [t for t in study.trials if t.state == TrialState.FAIL]
    assert not is_transient(failed) and report.counted == 8  # a real failure counts

    study, report = _run(journal(tmp_path), config, retry_failed_layouts=True)
    assert report.retried == 1 and report.counted == 8
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == failed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params
    assert retry.user_attrs["seed"] == "lfm2-tiny-all-attn"


def test_a_layout_is_measured_once_and_an_exhausted_space_stops_short(tmp_path):
    config = tiny_config(**{"trials = 8": "trials = 40", "kv_heads = [1, 2]": "kv_heads = [2]", "depth = [3, 6]": "depth = [4, 4]",
                            "ffn_ratio = [2.0, 4.0]": "ffn_ratio = [4.0]", "hidden_size = [32, 64]": "hidden_size = [64]"})
    log = tmp_path / "measured.jsonl"
    study, report = _run(journal(tmp_path), config, AnalyticEvaluator(log=str(log)))
    measured = Counter(json.loads(line)["spec_hash"] for line in log.read_text().splitlines())
    assert max(measured.values()) == 1  # no layout measured twice
    duplicates = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert duplicates and all(t.user_attrs["duplicate"].startswith("same layout as trial ") for t in duplicates)
    assert report.counted == len(measured) < 40
    assert report.short and report.stopped_reason.startswith("nothing left to do")


class _Crashing(AnalyticEvaluator):
    lock = None

    def latency(self, spec):
        raise RuntimeError("boom")


def test_cli_short_run_exits_1_with_the_reason_and_bad_trials_writes_nothing(tmp_path, monkeypatch, capsys):
    from lfm2_nas.search import evaluate

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(tiny_config().text)
    result = run_cli(monkeypatch, capsys, "search", "run", "tiny.toml", "--trials", "-1")
    assert result.returncode == 2 and not (tmp_path / "experiments").exists()

    monkeypatch.setattr(evaluate, "make_evaluator", lambda *a, **k: _Crashing())
    result = run_cli(monkeypatch, capsys, "search", "run", "tiny.toml")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stopped short of the target (5/8): 5 trials failed in a row;")
    assert (tmp_path / "experiments" / "tiny" / "trials.csv").is_file()  # the tables still describe the study

    monkeypatch.setattr(evaluate, "make_evaluator", lambda *a, **k: AnalyticEvaluator())
    result = run_cli(monkeypatch, capsys, "search", "run", "tiny.toml", "--retry-failed")
    assert result.returncode == 0, result.stderr
    assert "5 failed layout(s) re-queued" in result.stderr and "study has 8/8" in result.stderr


def test_export_checks_the_checkpoint_before_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _run(tmp_path / "experiments" / "tiny" / "journal.log", tiny_config(), target=2)
    result = run_cli(monkeypatch, capsys, "search", "export", "--study", "tiny", "--checkpoint", "999")
    assert result.returncode == 2 and result.stderr.startswith("error: trial 999 has no layout to export")
    assert sorted(p.name for p in (tmp_path / "experiments" / "tiny").iterdir()) == ["journal.log"]

    old = os.umask(0o022)
    try:  # the tables are plain files: readable by others under the usual umask, not mkstemp's 0600
        assert run_cli(monkeypatch, capsys, "search", "export", "--study", "tiny").returncode == 0
    finally:
        os.umask(old)
    for name in ("trials.csv", "pareto.csv", "summary.json"):
        assert (tmp_path / "experiments" / "tiny" / name).stat().st_mode & 0o777 == 0o644, name


# ---- the journal ---------------------------------------------------------------------------------


def _worker(storage, study, *extra, log=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = [sys.executable, str(WORKER), str(storage), study, *(["--log", str(log)] if log else []), *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_torn_journal_tail_is_cut_with_a_backup_and_the_study_continues(tmp_path, caplog):
    path = Path(journal(tmp_path))
    config = tiny_config()
    open_study(config, open_storage(path), ).set_user_attr("target_trials", 4)
    w = _worker(path, "tiny")
    assert w.wait(timeout=120) == 0, w.stderr.read().decode()[-2000:]
    whole = path.read_bytes()
    os.truncate(path, len(whole) - 7)  # a crash mid-write: the last record (trial 3 finishing) is torn

    with caplog.at_level(logging.WARNING, logger="lfm2_nas.search.storage"):
        study = optuna.load_study(study_name="tiny", storage=open_storage(path))
    (backup,) = tmp_path.glob("journal.log.torn-*.bak")
    assert backup.read_bytes() == whole[:-7]
    assert f"journal {path} ended in an incomplete record" in caplog.text and str(backup) in caplog.text
    assert path.read_bytes() == whole[: whole.rstrip(b"\n").rfind(b"\n") + 1]  # every complete record kept
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3 + [TrialState.RUNNING]

    study, report = _run(path, config, target=6)  # its worker is gone: the torn trial is re-run
    assert report.recovered == 1 and report.counted == 6
    assert study.trials[3].state == TrialState.FAIL
    assert next(t for t in study.trials if t.user_attrs.get("retry_of") == 3).state == TrialState.COMPLETE
    assert open_storage(path) and not list(tmp_path.glob("journal.log.torn-*"))[1:]  # whole now: no new backup


def test_a_journal_damaged_by_an_older_version_is_repaired_or_named(tmp_path, monkeypatch, capsys):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(journal(tmp_path))
    config = tiny_config()
    _run(path, config, target=2)
    os.truncate(path, path.stat().st_size - 7)
    raw = JournalStorage(JournalFileBackend(str(path)))  # no repair: the next record lands after the fragment
    study = optuna.load_study(study_name="tiny", storage=raw)
    study.set_user_attr("after_the_crash", 1)
    JournalFileBackend(str(path)).append_logs([{"op_code": 2, "worker_id": "w", "study_id": 0, "user_attr": {"and_another": 2}}])
    with pytest.raises(ValueError):  # what every command then failed with
        optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(path))))

    study = optuna.load_study(study_name="tiny", storage=open_storage(path))
    assert study.user_attrs["after_the_crash"] == 1 and study.user_attrs["and_another"] == 2
    assert len(study.trials) == 2 and len(list(tmp_path.glob("journal.log.torn-*.bak"))) == 1

    path.write_bytes(path.read_bytes() + b"not a record\n")
    with pytest.raises(StorageError, match=f"cannot read journal file {path}: line \\d+ is not a journal record"):
        open_storage(path)
    monkeypatch.chdir(tmp_path)
    result = run_cli(monkeypatch, capsys, "search", "status", "--storage", str(path), "--study", "tiny")
    assert result.returncode == 2 and result.stderr.startswith(f"error: cannot read journal file {path}: line ")


# ---- killed workers, and several runs on one machine ----------------------------------------------


def _kill_mid_measurement(storage, study_name, victim, log, sleep_s, deadline_s=60):
    """SIGKILL ``victim`` inside a latency measurement (announced in ``log`` as its ``sleep_s`` sleep
    starts), so the kill lands mid-trial, never between trials or before the trial is stamped with
    its owner; returns the trial it was running."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        complete = log.read_text().split("\n")[:-1] if log.exists() else []  # a line being written is left
        events = [e for e in map(json.loads, complete) if e.get("pid") == victim.pid]
        if events and "measuring" in events[-1] and time.time() - events[-1]["at"] < sleep_s / 2:
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the worker never started a measurement")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    study = optuna.load_study(study_name=study_name, storage=storage)
    (orphan,) = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                 if t.user_attrs.get("worker", {}).get("pid") == victim.pid]
    return orphan


def test_a_trial_whose_worker_died_before_stamping_it_is_failed_and_requeued_after_the_grace(tmp_path, monkeypatch):
    study = open_study(tiny_config(), open_storage(journal(tmp_path)))
    seed = study.get_trials(deepcopy=False)[0]  # the LFM2 seed, queued with its whole layout
    unstamped = study.ask()  # its worker took it (RUNNING) and died before stamping it or suggesting a thing
    assert unstamped.number == seed.number and unstamped.params == {}
    assert recover_orphans(study) == []  # younger than the grace: its worker may be writing the stamp
    monkeypatch.setattr(recovery, "UNSTAMPED_GRACE_S", 0)
    assert recover_orphans(study) == [unstamped.number]
    trials = study.get_trials(deepcopy=False)
    assert trials[unstamped.number].state == TrialState.FAIL
    assert trials[unstamped.number].user_attrs["fail_reason"] == "interrupted: worker died before recording itself"
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == unstamped.number]
    assert retry.state == TrialState.WAITING and retry.user_attrs["seed"] == seed.user_attrs["seed"]
    assert retry.system_attrs["fixed_params"] == seed.system_attrs["fixed_params"]  # the seed's layout, whole


def test_three_workers_two_kills_nothing_lost_nothing_measured_twice(tmp_path):
    """3 local workers x 12 trials on one journal, 2 of them killed with SIGKILL mid-trial."""
    path = Path(journal(tmp_path))
    config = tiny_config(**{"trials = 8": "trials = 12", "depth = [3, 6]": "depth = [3, 8]"})
    storage = open_storage(path)
    open_study(config, storage)
    log = tmp_path / "log.jsonl"
    workers = [_worker(path, "tiny", "--sleep", "0.4", log=log) for _ in range(3)]
    kills = []
    for victim in workers[:2]:
        orphan = _kill_mid_measurement(storage, "tiny", victim, log, sleep_s=0.4)
        kills.append((orphan.number, time.time()))
    survivor = workers[2]
    _, err = survivor.communicate(timeout=180)
    assert survivor.returncode == 0, err.decode()[-2000:]

    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    measured = Counter(json.loads(line)["spec_hash"] for line in log.read_text().splitlines() if "spec_hash" in line)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    lost = [n for n, _ in kills if trials[n].params not in [t.params for t in complete]]  # layout never measured
    recover_s = [trials[n].datetime_complete.timestamp() - killed_at for n, killed_at in kills]
    figures = {"finished": len(complete), "failed": len(failed), "lost": len(lost),
               "duplicated": sum(c - 1 for c in measured.values()), "recover_s": [round(s, 1) for s in recover_s]}
    print("figures (3 workers x 12 trials, 2 kills):", figures)
    assert counted_trials(trials) == 12 and len(complete) == 12
    assert len(failed) == 2 and all("stopped mid-trial" in t.user_attrs["fail_reason"] for t in failed)
    assert not lost and figures["duplicated"] == 0
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(s < 10 for s in recover_s)  # noticed by the survivor at its next trial


def test_local_runs_share_the_cpu_lock_by_default_and_never_measure_over_each_other(tmp_path):
    assert resolve_lock(None, journal(tmp_path)) == DEFAULT_LOCK
    assert resolve_lock(LOCK_OFF, journal(tmp_path)) is None
    assert resolve_lock("/x.lock", "postgresql://h/db") == "/x.lock" and resolve_lock(None, "postgresql://h/db") is None
    path = Path(journal(tmp_path))
    config = tiny_config(**{"trials = 8": "trials = 10", "depth = [3, 6]": "depth = [3, 8]"})
    open_study(config, open_storage(path))
    log = tmp_path / "log.jsonl"
    workers = [_worker(path, "tiny", "--locking", "--sleep", "0.1", log=log) for _ in range(2)]
    reports = []
    for w in workers:
        out, err = w.communicate(timeout=180)
        assert w.returncode == 0, err.decode()[-2000:]
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    phases = [json.loads(line) for line in log.read_text().splitlines() if "phase" in line]
    assert {p["pid"] for p in phases} == {w.pid for w in workers}  # both worked
    for p in phases:
        if p["phase"] == "profile":  # nobody else profiled or trained meanwhile
            assert not [q for q in phases if q["pid"] != p["pid"] and q["start"] < p["end"] and p["start"] < q["end"]]
    trials = optuna.load_study(study_name="tiny", storage=open_storage(path)).trials
    assert not [t for t in trials if t.state == TrialState.FAIL] and counted_trials(trials) == 10
    assert sum(r["failed"] for r in reports) == 0
