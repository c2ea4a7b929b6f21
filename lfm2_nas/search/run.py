"""Run a study: create or resume it, or join it as an extra worker (reading one back: :mod:`lfm2_nas.report`).

A study stores its own search file (the TOML text, as a study attribute), so a worker started with
nothing but ``--storage URL --study NAME`` evaluates exactly the same space, and re-running
``search run FILE`` resumes: the study is loaded, orphaned trials recovered, and trials run until
the study-wide target is met. A changed search file (other than the trial target, sampler, seed,
storage or lock) is refused: trials measured under different rules must not share a front.

The official LFM2 layout of the base size and its all-attention baseline are enqueued when the
study is created, so they are trials 0 and 1 of every study.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from lfm2_nas.search.config import SearchConfig, SearchConfigError, parse_config
from lfm2_nas.search.measurements import Evaluator
from lfm2_nas.search.objectives import objectives_for
from lfm2_nas.search.recovery import (
    TARGET_ATTR,
    counted_trials,
    is_transient,
    missing_seeds,
    recover_orphans,
    requeue,
    retry_failed,
)
from lfm2_nas.search.space import SearchSpace
from lfm2_nas.search.trial import TrialFailed, TrialRunner

log = logging.getLogger(__name__)

CONFIG_ATTR = "search_config"
FINGERPRINT_ATTR = "search_fingerprint"
#: Stop a worker after this many failed trials in a row: something is broken beyond one layout.
MAX_CONSECUTIVE_FAILURES = 5
#: Stop after this many proposals in a row of layouts the study already holds: nothing new is left.
MAX_CONSECUTIVE_DUPLICATES = 25
#: How often a run whose remaining trials are running elsewhere checks on them (and on heartbeats).
WAIT_POLL_S = 1.0
#: Reasons a run stops having done what it was asked; any other stop is short of the target.
DONE_REASONS = ("target reached", "this worker's --trials reached")


class StudyError(ValueError):
    """A study that cannot be created, loaded or joined; the message is one line."""


def make_sampler(config: SearchConfig, seed: int) -> BaseSampler:
    """The configured sampler (constraints are read from each trial by all of them)."""
    s = config.study
    if s.sampler == "tpe":
        return TPESampler(seed=seed, n_startup_trials=s.startup_trials)
    if s.sampler == "nsga2":
        return NSGAIISampler(seed=seed, population_size=max(2, s.startup_trials))
    return RandomSampler(seed=seed)


def sampler_seed(config: SearchConfig, trials_so_far: int, worker: bool) -> int:
    """A fresh study runs on the file's seed; a resumed one (and every extra worker) on a seed
    derived from it, so a restart or a second worker does not re-propose the same layouts."""
    if not worker and trials_so_far == 0:
        return config.study.seed
    salt = f"{config.study.seed}:{trials_so_far}:{os.getpid() if worker else ''}"
    return zlib.crc32(salt.encode())


def open_study(config: SearchConfig, storage: BaseStorage, worker: bool = False) -> optuna.Study:
    """Create the study of ``config`` in ``storage`` (seeding it) or resume it."""
    objectives = objectives_for(config)
    name = config.study.name
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    trials_so_far = existing[name].n_trials if name in existing else 0
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=[o.direction for o in objectives],
        sampler=make_sampler(config, sampler_seed(config, trials_so_far, worker)),
        load_if_exists=True,
    )
    if list(study.directions) != [o.direction for o in objectives]:
        raise StudyError(f"study {name!r} exists with other objectives; pick a new [study] name")
    stored = study.user_attrs.get(FINGERPRINT_ATTR)
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, config.text)
        study.set_user_attr(FINGERPRINT_ATTR, config.fingerprint())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.label for o in objectives])  # names shown by optuna-dashboard
        space = SearchSpace(config.space)
        for seed_name, spec in space.seed_specs().items():
            study.enqueue_trial(space.params_for(spec), user_attrs={"seed": seed_name}, skip_if_exists=True)
    elif stored != config.fingerprint() and not _same_meaning(study.user_attrs.get(CONFIG_ATTR), config):
        raise StudyError(
            f"study {name!r} was created from a different search file (space, target, budgets or "
            "quality changed); resume it with the original file or give this one a new [study] name"
        )
    return study


def _same_meaning(stored_text: str | None, config: SearchConfig) -> bool:
    """Whether the search file stored in a study means what ``config`` means, read by today's parser
    (a study created before a change of the fingerprint's form, e.g. the settings becoming one
    table, still resumes with its own file)."""
    if stored_text is None:
        return False
    try:
        return parse_config(stored_text, default_name=config.study.name).fingerprint() == config.fingerprint()
    except SearchConfigError:
        return False


def config_of(storage: BaseStorage, study_name: str) -> SearchConfig:
    """The search file stored in an existing study (what ``search worker`` evaluates)."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise StudyError(
            f"no study {study_name!r} in this storage (studies there: {', '.join(names) or 'none'}); "
            "create it with: lfm2-nas search run FILE --storage URL"
        ) from None
    text = study.user_attrs.get(CONFIG_ATTR)
    if text is None:
        raise StudyError(f"study {study_name!r} was not created by lfm2-nas search (no search file stored)")
    return parse_config(text, source=f"study {study_name}", default_name=study_name)


@dataclass
class RunReport:
    """What one call of :func:`run_study` did."""

    ran: int = 0
    failed: int = 0
    transient: int = 0  # failures that say nothing about the layout (busy, killed, timed out)
    duplicates: int = 0  # proposals of a layout the study already held (not measured, not counted)
    recovered: int = 0
    retried: int = 0  # failed layouts queued again by ``retry_failed``
    counted: int = 0
    target: int = 0
    stopped_reason: str = ""

    @property
    def short(self) -> bool:
        """Whether the run stopped before doing what it was asked (too many failures, nothing left)."""
        return self.stopped_reason not in DONE_REASONS


def run_study(
    study: optuna.Study,
    config: SearchConfig,
    evaluator: Evaluator,
    target: int | None = None,
    max_trials: int | None = None,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    retry_failed_layouts: bool = False,
) -> RunReport:
    """Run trials until the study holds ``target`` finished trials or this call has run ``max_trials``.

    ``target`` is stored in the study, so workers (which pass none) run to the latest target set,
    else to ``[study] trials``. Transient failures (:func:`~lfm2_nas.search.recovery.is_transient`)
    are re-queued and never count; a seed layout with no result is queued again until it has one.
    While the trials still missing are running in other workers, the run waits for them (checking
    the database heartbeat, so a dead remote worker's trial is failed and re-run here).
    ``retry_failed_layouts`` first queues again every failed layout. Ctrl-C fails the trial in
    progress, re-queues its layout and re-raises; finished trials are already stored.
    """
    runner = TrialRunner(config, SearchSpace(config.space), evaluator, objectives_for(config))
    if target is not None:
        study.set_user_attr(TARGET_ATTR, target)
    report = RunReport(target=target or study.user_attrs.get(TARGET_ATTR, config.study.trials))
    if retry_failed_layouts:
        report.retried = len(retry_failed(study))
    consecutive_failures = duplicates = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # database heartbeat: re-queues dead workers' trials
        report.recovered += len(recover_orphans(study))
        for seed in missing_seeds(study.get_trials(deepcopy=False)):
            requeue(study, seed, "seed layout has no result yet")
        trials = study.get_trials(deepcopy=False)
        report.counted = counted_trials(trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        waiting_seed = any(t.state == TrialState.WAITING and "seed" in t.user_attrs for t in trials)
        if report.counted >= report.target and not waiting_seed and not _seed_running(trials):
            report.stopped_reason = "target reached"
            break
        if max_trials is not None and report.ran >= max_trials:
            report.stopped_reason = "this worker's --trials reached"
            break
        if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            report.stopped_reason = f"{consecutive_failures} trials failed in a row"
            break
        if duplicates >= MAX_CONSECUTIVE_DUPLICATES:
            report.stopped_reason = (f"nothing left to do: the sampler proposed {duplicates} already measured "
                                     "layouts in a row (the search space is exhausted)")
            break
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and (report.counted + running >= report.target or _seed_running(trials)):
            time.sleep(WAIT_POLL_S)  # the rest is running elsewhere: wait for it to end or be re-queued
            continue
        runner.current = None
        try:
            study.optimize(runner, n_trials=1, catch=(TrialFailed,))
        except KeyboardInterrupt:
            if runner.current is not None:
                _requeue_interrupted(study, runner.current)
            raise
        done = _trial(study, runner.current)
        if done.state == TrialState.PRUNED and "duplicate" in done.user_attrs:
            report.duplicates += 1
            duplicates += 1
            if on_trial is not None:
                on_trial(done)
            continue
        duplicates = 0
        report.ran += 1
        if done.state == TrialState.FAIL:
            report.failed += 1
            consecutive_failures += 1
            if is_transient(done):
                report.transient += 1
                requeue(study, done, done.user_attrs.get("fail_reason", "failed"))
        else:
            consecutive_failures = 0
        if on_trial is not None:
            on_trial(done)
    report.counted = counted_trials(study.get_trials(deepcopy=False))
    return report


def _seed_running(trials: list[FrozenTrial]) -> bool:
    return any(t.state == TrialState.RUNNING and "seed" in t.user_attrs for t in trials)


def _trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number`` (trial numbers are positions in the study); the last one for None."""
    trials = study.get_trials(deepcopy=False)
    return trials[-1 if number is None else number]


def _requeue_interrupted(study: optuna.Study, number: int) -> None:
    trial = _trial(study, number)
    if trial.state == TrialState.FAIL:
        requeue(study, trial, "run interrupted")
