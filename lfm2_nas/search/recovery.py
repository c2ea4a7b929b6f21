"""Keep a study consistent when workers die: orphaned trials are failed and their layouts re-queued.

A worker stamps each trial it runs with its owner record (host, pid, process start time). When a
run starts (and before each trial), RUNNING trials whose owner is a process of this host that no
longer exists are failed with the reason, and their parameters enqueued again, so a killed run
loses no layout and a resumed run finishes it. Trials owned by other hosts are left to the database
heartbeat (see :mod:`lfm2_nas.search.storage`), which calls :func:`requeue` the same way.

Claiming a trial (RUNNING -> FAIL) is atomic in every Optuna storage, so when two workers recover
the same orphan only one re-queues it. A layout that keeps killing its worker is retried at most
``MAX_RETRIES`` times.
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
#: A RUNNING trial with no owner record (its worker died between creating and stamping it) is
#: treated as orphaned after this long.
UNSTAMPED_GRACE_S = 600

log = logging.getLogger(__name__)


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


def requeue(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Enqueue ``trial``'s layout again (same parameters and seed label); False past the retry limit."""
    retries = int(trial.user_attrs.get("retries", 0)) + 1
    if retries > MAX_RETRIES:
        log.warning("trial %d: %s; not re-queued (already retried %d times)", trial.number, reason, MAX_RETRIES)
        return False
    attrs = {"retry_of": trial.number, "retries": retries, "retry_reason": reason}
    if "seed" in trial.user_attrs:
        attrs["seed"] = trial.user_attrs["seed"]
    study.enqueue_trial(trial.params, user_attrs=attrs)
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
    re-queued (the retry counts instead)."""
    replaced = replaced_numbers(trials)
    return sum(
        1
        for t in trials
        if t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and t.number not in replaced)
    )
