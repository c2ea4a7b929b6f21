"""Keep a study consistent when workers die: orphaned trials are failed and their layouts re-queued.

A worker stamps each trial it runs with its owner record (host, pid, process start time). When a
run starts (and before each trial), RUNNING trials whose owner is a process of this host that no
longer exists are failed with the reason, and their parameters enqueued again, so a killed run
loses no layout and a resumed run finishes it. Trials owned by other hosts are left to the database
heartbeat (see :mod:`lfm2_nas.search.storage`), which calls :func:`requeue` the same way.

Claiming a trial (RUNNING -> FAIL) is atomic in every Optuna storage, so when two workers recover
the same orphan only one re-queues it. A layout that keeps killing its worker is retried at most
``MAX_RETRIES`` times (a seed layout always, see :func:`missing_seeds`).

A failure is *transient* when it says nothing about the layout (the machine was busy, the worker
was killed or interrupted, a measurement timed out): it never counts towards the study's target.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import optuna
import psutil
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

OWNER_ATTR = "worker"
#: Study attribute: the number of finished trials the study is run to (set by the latest ``run``).
TARGET_ATTR = "target_trials"
MAX_RETRIES = 2
#: A RUNNING trial with no owner record (its worker died between creating and stamping it, one
#: storage write apart) is treated as orphaned after this long: twice the 30 s after which Optuna's
#: journal lock is forcibly taken from a dead holder (``JournalFileSymlinkLock(grace_period=30)``,
#: optuna/storages/journal/_file.py), so a live worker waiting on that lock is never mistaken for dead.
UNSTAMPED_GRACE_S = 60

log = logging.getLogger(__name__)


#: Substrings of a failure reason that mark it transient (see module docstring).
TRANSIENT_MARKERS = ("machine busy", "timed out", "interrupted:", "stopped sending heartbeats", "died of signal")


def is_transient(trial: FrozenTrial) -> bool:
    """Whether a failed trial failed for a reason that says nothing about its layout. A failed trial
    with no recorded reason was failed from outside (the database heartbeat): its worker vanished."""
    reason = trial.user_attrs.get("fail_reason")
    return reason is None or any(marker in reason for marker in TRANSIENT_MARKERS)


def owner_record() -> dict[str, Any]:
    """Who runs a trial: host name, pid and that process's start time (guards against pid reuse)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """True/False for an owner on this host; None when it runs elsewhere (cannot tell from here)."""
    if owner.get("host") != socket.gethostname():
        return None
    try:
        process = psutil.Process(int(owner["pid"]))
        return abs(process.create_time() - float(owner["started"])) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return False


def requeue(study: optuna.Study, trial: FrozenTrial, reason: str, force: bool = False) -> bool:
    """Enqueue ``trial``'s layout again (same parameters and seed label); False past the retry limit
    (which a seed layout and ``force`` ignore)."""
    retries = int(trial.user_attrs.get("retries", 0)) + 1
    if retries > MAX_RETRIES and not (force or "seed" in trial.user_attrs):
        log.warning("trial %d: %s; not re-queued (already retried %d times)", trial.number, reason, MAX_RETRIES)
        return False
    attrs = {"retry_of": trial.number, "retries": retries, "retry_reason": reason}
    if "seed" in trial.user_attrs:
        attrs["seed"] = trial.user_attrs["seed"]
    # a trial stopped before it suggested every parameter holds the rest only as the fixed parameters
    # it was enqueued with (Optuna's "fixed_params" system attribute): keep both
    study.enqueue_trial({**trial.system_attrs.get("fixed_params", {}), **trial.params}, user_attrs=attrs)
    log.warning("trial %d: %s; its layout is queued again", trial.number, reason)
    return True


def on_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Heartbeat callback of database storages: the trial is already failed; re-queue its layout."""
    requeue(study, trial, "worker stopped sending heartbeats")


def recover_orphans(study: optuna.Study) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker on this host is gone; returns their numbers."""
    recovered = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(OWNER_ATTR)
        if owner is None:
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            if now - started < UNSTAMPED_GRACE_S:
                continue
            reason = "worker died before recording itself"
        elif owner_alive(owner) is False:
            reason = f"worker process {owner['pid']} on {owner['host']} stopped mid-trial"
        else:
            continue
        if _claim(study, trial, reason):
            requeue(study, trial, reason)
            recovered.append(trial.number)
    return recovered


def _claim(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Mark an orphan failed; False when another worker finished or claimed it first."""
    storage = study._storage  # noqa: SLF001 - Optuna has no public API to fail another worker's trial
    try:
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"interrupted: {reason}")  # noqa: SLF001
        return storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # noqa: SLF001
    except UpdateFinishedTrialError:
        return False


def replaced_numbers(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of failed trials whose layout was re-queued (they do not count towards the target)."""
    return {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}


def counted_trials(trials: list[FrozenTrial]) -> int:
    """Trials that count towards a study's target: finished ones, except failures whose layout was
    re-queued (the retry counts instead) and transient failures (:func:`is_transient`)."""
    replaced = replaced_numbers(trials)
    return sum(
        1
        for t in trials
        if t.state == TrialState.COMPLETE
        or (t.state == TrialState.FAIL and t.number not in replaced and not is_transient(t))
    )


def missing_seeds(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The last trial of each seed layout that has no result yet and nothing pending: every trial of
    it failed transiently and none is queued or running. Such a seed must be queued again."""
    by_seed: dict[str, list[FrozenTrial]] = {}
    for t in trials:
        if "seed" in t.user_attrs:
            by_seed.setdefault(t.user_attrs["seed"], []).append(t)
    missing = []
    for tried in by_seed.values():
        settled = any(
            t.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
            or (t.state == TrialState.FAIL and not is_transient(t))
            for t in tried
        )
        if not settled:
            missing.append(tried[-1])
    return missing


def retry_failed(study: optuna.Study) -> list[int]:
    """Queue again the layout of every failed trial not already replaced (``search run --retry-failed``);
    returns the numbers of the failed trials."""
    trials = study.get_trials(deepcopy=False)
    replaced = replaced_numbers(trials)
    numbers = []
    for t in trials:
        if t.state == TrialState.FAIL and t.number not in replaced and t.params:
            requeue(study, t, f"retried on request (was: {t.user_attrs.get('fail_reason', 'failed')})", force=True)
            numbers.append(t.number)
    return numbers
