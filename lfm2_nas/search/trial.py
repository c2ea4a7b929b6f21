"""One trial, start to end: layout -> screening -> full-size profile -> quality proxy -> values.

Order matters for cost: the cost model and the latency predictor run first (free); a layout they
rule out is recorded as infeasible with the reason and never built. A layout whose measured
latency or memory already breaks a limit is not trained either. Anything that goes wrong while
measuring (a crash, an out-of-memory, a diverged training run) fails the trial with its reason;
the study continues.

A layout the study already measured (or another worker is measuring) is not measured again: the
trial is pruned with a ``duplicate`` note, does not count towards the target, and the sampler is
asked again.

Everything a user needs to read a trial later is stored on it as user attributes (spec, pattern,
parameter count, measurements, hardware profile, worker, reasons), so ``status``, ``export`` and
optuna-dashboard show it without re-running anything.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import optuna

from lfm2_nas import cost
from lfm2_nas.search.config import SearchConfig
from lfm2_nas.search.measurements import Evaluator
from lfm2_nas.search.objectives import Objective, trial_values
from lfm2_nas.search.recovery import OWNER_ATTR, owner_record
from lfm2_nas.search.screening import Verdict, judge, screen
from lfm2_nas.search.space import SearchSpace
from lfm2_nas.spec import ModelSpec

log = logging.getLogger(__name__)


class TrialFailed(Exception):
    """A trial whose measurement failed; the message is the reason recorded on the trial."""


class TrialRunner:
    """The objective function handed to ``study.optimize``."""

    def __init__(
        self, config: SearchConfig, space: SearchSpace, evaluator: Evaluator, objectives: list[Objective]
    ) -> None:
        self.config = config
        self.space = space
        self.evaluator = evaluator
        self.objectives = objectives
        self.current: int | None = None  # number of the trial in progress (for interrupt handling)
        self._predictor_rows = 0

    def __call__(self, trial: optuna.Trial) -> list[float]:
        self.current = trial.number
        trial.set_user_attr(OWNER_ATTR, owner_record())
        hardware = self.evaluator.hardware()
        trial.set_user_attr("hardware_slug", hardware.get("slug", "unknown"))
        trial.set_user_attr("hardware", hardware)
        start = time.perf_counter()
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted: run stopped (Ctrl-C or SIGTERM)")
            raise
        except optuna.TrialPruned:
            raise
        except TrialFailed as err:
            trial.set_user_attr("fail_reason", str(err))
            raise
        except Exception as err:  # a crash inside measuring fails this trial only
            reason = f"crashed: {type(err).__name__}: {err}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason) from err
        finally:
            trial.set_user_attr("trial_seconds", round(time.perf_counter() - start, 3))

    def _run(self, trial: optuna.Trial) -> list[float]:
        seed = trial.user_attrs.get("seed")
        try:
            spec = self.space.suggest(trial)
        except ValueError as err:  # e.g. kv heads that do not divide this width's heads
            trial.set_constraint("buildable", 1.0)
            return self._infeasible(trial, f"not buildable: {err}", latency=None)
        self._record_spec(trial, spec)
        original = _measured_before(trial, spec.spec_hash())
        if original is not None:  # a slot is for a new layout: the sampler is asked again
            trial.set_user_attr("duplicate", f"same layout as trial {original} (not measured again)")
            log.info("trial %d repeats trial %d's layout; skipped", trial.number, original)
            raise optuna.TrialPruned()
        self._refresh_predictor(trial.study)
        attention_excess = 0 if seed else self.space.attention_violation(spec)
        verdict = screen(spec, self.config, self.evaluator, attention_excess)
        _record(trial, verdict.estimates)
        if not verdict.feasible:
            self._set_constraints(trial, verdict)
            return self._infeasible(trial, "screened: " + "; ".join(verdict.reasons), latency=None, key="screened")

        latency = self.evaluator.latency(spec)
        if not latency.ok:
            raise TrialFailed(f"profiling failed: {latency.reason}")
        _record(trial, {
            "prefill_ms": latency.prefill_ms, "decode_ms": latency.decode_ms, "peak_bytes": latency.peak_bytes,
            "latency_unstable": latency.unstable, "profile_row": latency.row,
        })
        self._set_constraints(trial, judge(latency, self.config, verdict))
        if not verdict.feasible:
            return self._infeasible(trial, "; ".join(verdict.reasons) + " (quality not trained)", latency=latency)

        quality = self.evaluator.quality(spec)
        if not quality.ok:
            raise TrialFailed(f"quality proxy failed: {quality.reason}")
        _record(trial, {
            "quality": quality.score, "quality_metric": quality.metric, "quality_tokens": quality.tokens,
            "quality_seconds": quality.seconds, "quality_details": quality.details,
        })
        return trial_values(self.objectives, latency, quality)

    def _infeasible(self, trial: optuna.Trial, reason: str, latency: Any, key: str = "infeasible") -> list[float]:
        trial.set_user_attr(key, reason)
        log.info("trial %d %s", trial.number, reason)
        return trial_values(self.objectives, latency, None)

    @staticmethod
    def _set_constraints(trial: optuna.Trial, verdict: Verdict) -> None:
        for name, value in verdict.constraints.items():
            trial.set_constraint(name, value)

    @staticmethod
    def _record_spec(trial: optuna.Trial, spec: ModelSpec) -> None:
        _record(trial, {
            "spec": spec.to_dict(), "spec_hash": spec.spec_hash(), "pattern": spec.pattern,
            "param_count": cost.param_count(spec), "non_embedding_params": cost.non_embedding_params(spec),
        })

    def _refresh_predictor(self, study: optuna.Study) -> None:
        """Refit the latency predictor from this hardware's measured trials when new ones arrived."""
        slug = self.evaluator.hardware().get("slug")
        rows = [
            t.user_attrs["profile_row"]
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if "profile_row" in t.user_attrs and t.user_attrs.get("hardware_slug") == slug
        ]
        if len(rows) >= self.config.screening.min_rows and len(rows) != self._predictor_rows:
            self.evaluator.update_predictor(rows)
            self._predictor_rows = len(rows)


def _measured_before(trial: optuna.Trial, spec_hash: str) -> int | None:
    """The number of a trial of the same layout that finished, or that an earlier-numbered trial is
    running now (so of two workers drawing one layout at once, the later one gives way)."""
    for other in trial.study.get_trials(deepcopy=False):
        if other.number == trial.number or other.user_attrs.get("spec_hash") != spec_hash:
            continue
        state = other.state
        if state == optuna.trial.TrialState.COMPLETE or (state == optuna.trial.TrialState.RUNNING and other.number < trial.number):
            return other.number
    return None


def _record(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Store ``attrs`` as user attributes, skipping empty values (None, empty dicts)."""
    for key, value in attrs.items():
        if value is not None and value != {}:
            trial.set_user_attr(key, value)
