"""Many workers on one study in a REAL PostgreSQL server: every trial ends exactly once.

The fixture starts its own server (``initdb`` + ``pg_ctl`` in a temporary folder, as the
``postgres`` user when run as root) on a free port, or uses ``LFM2_NAS_TEST_POSTGRES_URL``.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import tiny_config

from lfm2_nas.search.recovery import counted_trials
from lfm2_nas.search.storage import StorageError, open_storage
from lfm2_nas.search.run import open_study

pytestmark = pytest.mark.postgres
optuna.logging.set_verbosity(optuna.logging.ERROR)
WORKER = Path(__file__).resolve().parent / "search_worker.py"


def _server_binaries() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    if os.environ.get("LFM2_NAS_TEST_POSTGRES_URL"):
        yield os.environ["LFM2_NAS_TEST_POSTGRES_URL"]
        return
    bindir = _server_binaries()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install the 'postgresql' "
                    "package (.ci/run does) or set LFM2_NAS_TEST_POSTGRES_URL")
    base = Path(tempfile.mkdtemp(prefix="lfm2-nas-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-o", options,
                    "-w", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _workers(url, study, log, n=2, *extra):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return [subprocess.Popen([sys.executable, str(WORKER), url, study, "--log", str(log), *extra], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(n)]


def _lines(log):
    return [json.loads(line) for line in Path(log).read_text().splitlines()]


def test_two_worker_processes_end_every_trial_exactly_once(postgres_url, tmp_path):
    config = tiny_config(**{'name = "tiny"': 'name = "pg-two-workers"', "trials = 8": "trials = 10"})
    study = open_study(config, open_storage(postgres_url))  # created and seeded here; workers join
    log = tmp_path / "log.jsonl"
    workers = _workers(postgres_url, "pg-two-workers", log, 2, "--sleep", "0.15")
    for w in workers:
        _, err = w.communicate(timeout=120)
        assert w.returncode == 0, err.decode()[-2000:]

    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # a layout drawn again (by either worker) is a pruned duplicate, never measured twice
    assert all(t.state == TrialState.COMPLETE or "duplicate" in t.user_attrs for t in trials), [t.state for t in trials]
    assert 10 <= counted_trials(trials) == len(complete) <= 11  # the target, plus at most one started in a race
    assert [t.user_attrs.get("seed") for t in trials[:2]] == ["lfm2-tiny", "lfm2-tiny-all-attn"]

    ended = [e for e in _lines(log) if "trial" in e]
    measured = [e for e in _lines(log) if "spec_hash" in e]
    assert sorted(e["trial"] for e in ended) == [t.number for t in trials]  # each trial ended once
    assert len(measured) == len(complete) == len({e["spec_hash"] for e in measured})  # each layout measured once
    assert len({e["pid"] for e in ended}) == 2  # both processes did work
    owners = Counter(t.user_attrs["worker"]["pid"] for t in trials)
    assert owners == Counter(e["pid"] for e in ended)


def test_trial_of_a_vanished_remote_worker_is_failed_by_heartbeat_and_requeued(postgres_url, tmp_path):
    config = tiny_config(**{'name = "tiny"': 'name = "pg-heartbeat"', "trials = 8": "trials = 4"})
    storage = open_storage(postgres_url)
    study = open_study(config, storage)
    (worker,) = _workers(postgres_url, "pg-heartbeat", tmp_path / "log.jsonl", 1, "--sleep", "30", "--grace", "2")
    deadline = time.time() + 60
    while time.time() < deadline:
        running = [t for t in study.get_trials(states=(TrialState.RUNNING,)) if "non_embedding_params" in t.user_attrs]
        if running:
            break
        time.sleep(0.1)
    worker.kill()
    worker.communicate()
    (orphan,) = running
    # Pretend it ran on another machine: this host cannot check its pid, only the heartbeat can.
    storage.set_trial_user_attr(orphan._trial_id, "worker", {**orphan.user_attrs["worker"], "host": "elsewhere"})
    time.sleep(3)  # past the 2 s grace period

    (again,) = _workers(postgres_url, "pg-heartbeat", tmp_path / "log2.jsonl", 1, "--grace", "2")
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()[-2000:]
    trials = study.trials
    assert trials[orphan.number].state == TrialState.FAIL
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == orphan.number)
    assert retry.user_attrs["retry_reason"] == "worker stopped sending heartbeats"
    assert retry.state == TrialState.COMPLETE and retry.params == orphan.params
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_unreachable_server_is_one_line():
    port = _free_port()  # nothing listens there
    start = time.time()
    with pytest.raises(StorageError) as info:
        open_storage(f"postgresql://user:secret@127.0.0.1:{port}/db")
    message = str(info.value)
    assert message.startswith(f"cannot open storage postgresql://user:***@127.0.0.1:{port}/db: ")
    assert "\n" not in message and "secret" not in message
    assert time.time() - start < 15


def _unshare_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--uts", "sh", "-c", "hostname other"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs root and 'unshare --uts' (a worker under another host name)")
def test_orphan_of_a_worker_on_another_host_is_requeued_within_the_grace_and_the_run_waits_for_it(postgres_url, tmp_path):
    """2 workers x 6 trials on PostgreSQL; the one on host "other" is killed with SIGKILL mid-trial
    (the seed); the worker on this host does not stop at 5/6 but re-runs the seed once its heartbeat
    is 2 s stale."""
    config = tiny_config(**{'name = "tiny"': 'name = "pg-remote-orphan"', "trials = 8": "trials = 6"})
    storage = open_storage(postgres_url)
    study = open_study(config, storage)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    worker = [sys.executable, str(WORKER), postgres_url, "pg-remote-orphan", "--grace", "2"]
    remote = subprocess.Popen(["unshare", "--uts", "sh", "-c", 'hostname other && exec "$@"', "sh", *worker,
                               "--sleep", "60", "--log", str(tmp_path / "remote.jsonl")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    running = []
    while time.time() < deadline and not running:
        running = [t for t in study.get_trials(states=(TrialState.RUNNING,)) if "non_embedding_params" in t.user_attrs]
        time.sleep(0.1)
    (orphan,) = running
    assert orphan.user_attrs["worker"]["host"] == "other" and orphan.user_attrs["seed"] == "lfm2-tiny"
    remote.kill()  # SIGKILL: no goodbye, no database update
    remote.communicate()
    killed_at = time.time()

    local = subprocess.Popen([*worker, "--sleep", "0.05", "--log", str(tmp_path / "local.jsonl")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = local.communicate(timeout=120)
    assert local.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    trials = study.trials
    dead = trials[orphan.number]
    recover_s = dead.datetime_complete.timestamp() - killed_at
    print(f"remote orphan failed by heartbeat {recover_s:.1f} s after SIGKILL (grace 2 s, beat 1 s); worker: {report}")
    assert dead.state == TrialState.FAIL and recover_s < 2 + 1 + 5
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == orphan.number)
    assert retry.state == TrialState.COMPLETE and retry.params == orphan.params and retry.user_attrs["seed"] == "lfm2-tiny"
    assert report["stopped"] == "target reached" and counted_trials(trials) == 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
