"""The one bridge between the search and the measuring packages: :mod:`lfm2_nas.profiler` (latency
and memory at full size, on this machine) and :mod:`lfm2_nas.quality` (the quality proxy).

:class:`Measurer` turns their results into the search's plain records
(:class:`~lfm2_nas.search.measurements.LatencyResult`, :class:`~lfm2_nas.search.measurements.QualityScore`).
Both are cached by their packages' own result stores, so a layout seen again (re-sampled, retried,
or measured by a sweep or an earlier study) costs nothing: profiles by spec, hardware profile,
workload and timing settings (``profiles/cache/<hardware>.jsonl``); quality results by spec, tier,
budget, seed and options (``<study folder>/cache/quality.jsonl``; successful ones only, a failure
may be transient). ``search confirm`` measures again through :meth:`Measurer.remeasure` (never from a
cache, into its own store) and trains other seeds and budgets through :meth:`Measurer.quality`.

Profiling holds the run's CPU lock exclusively (like ``flock -x``) and training holds it shared,
so timings are not disturbed by other work that respects the lock (:func:`~lfm2_nas.search.lock.resolve_lock`:
on by default for journal studies). Inside the lock, each measurement first waits for the machine to
be quiet (:func:`lfm2_nas.profiler.contention.wait_for_quiet`, bounded): other people's work that
ignores the lock delays a measurement instead of failing it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any

from lfm2_nas import cost
from lfm2_nas.search.config import SearchConfig
from lfm2_nas.search.lock import cpu_lock
from lfm2_nas.quality.result import HIGHER_IS_BETTER
from lfm2_nas.search.measurements import LatencyResult, QualityScore
from lfm2_nas.spec import ModelSpec

#: Measurements repeated when the profiler flags one busy (other processes used the CPU meanwhile)
#: before the trial fails with that reason.
BUSY_RETRIES = 2

log = logging.getLogger(__name__)


def _scalar_row(row: dict[str, Any]) -> dict[str, Any]:
    """A profiler row without its raw-sample lists and with non-finite floats as None (JSON-safe)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, (list, tuple, dict)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[key] = value
    return out


class Measurer:
    """Measures layouts for one search file on this machine (see module docstring)."""

    def __init__(self, config: SearchConfig, folder: str | Path, lock: str | None = None) -> None:
        """``lock``: the CPU lock file ("" for none; default: the search file's ``cpu_lock``, none for ``"off"``)."""
        from lfm2_nas.profiler import LatencyPredictor, load_or_measure_hardware
        from lfm2_nas.profiler.hardware import has_saved_profile
        from lfm2_nas.quality import QualityStore
        from lfm2_nas.search.lock import LOCK_OFF

        self.config = config
        self.settings = config.target
        if lock is None:
            lock = None if config.study.cpu_lock == LOCK_OFF else config.study.cpu_lock
        self.lock = lock or None
        self.quiet_waits: list[Any] = []  # one QuietWait per measurement (for reports and tests)
        if self.settings.backend != "torch":
            from lfm2_nas.runtimes import installed_version

            installed_version(self.settings.backend)  # a missing runtime stops the run before any trial
        device = self.settings.device
        lock = contextlib.nullcontext() if has_saved_profile(device) else cpu_lock(self.lock, exclusive=True)
        with lock:
            self.profile = load_or_measure_hardware(device, threads=self.settings.threads)
        self._predictor_cls = LatencyPredictor
        self.predictor = LatencyPredictor.load(config.screening.predictor) if config.screening.predictor else None
        self._predictor_from_file = self.predictor is not None
        self.quality_store = QualityStore(Path(folder) / "cache" / "quality.jsonl")
        self.quality_hits = 0  # evaluations the store saved

    def hardware(self) -> dict[str, Any]:
        return self.profile.to_dict()

    def latency(self, spec: ModelSpec) -> LatencyResult:
        from lfm2_nas.profiler.profile import is_measured

        refused = self._refused(spec)
        if refused is not None:
            return refused
        measured = is_measured(spec, self.settings, self.profile)
        return self._profile(spec, self.settings, exclusive=not measured)

    def remeasure(self, spec: ModelSpec, processes: int, store: str | Path) -> LatencyResult:
        """Profile ``spec`` afresh on the study's workload, never answered from a cache, with
        ``processes`` measuring processes, under the exclusive CPU lock; the profile goes to ``store``
        (``search confirm``'s own, so the search's cache keeps the figures its trials were given)."""
        from dataclasses import replace

        refused = self._refused(spec)
        if refused is not None:
            return refused
        return self._profile(spec, replace(self.settings, processes=processes), exclusive=True, use_cache=False,
                             store=store)

    def _refused(self, spec: ModelSpec) -> LatencyResult | None:
        """A failed result when the study's deployment backend cannot run ``spec``; None when it can."""
        from lfm2_nas.runtimes import get_runtime
        from lfm2_nas.runtimes.base import ExportError

        if self.settings.backend != "torch":
            try:
                get_runtime(self.settings.backend).check(spec, self.settings.quant_scheme, self.settings.max_len)
            except ExportError as err:
                return LatencyResult(ok=False, reason=f"the {self.settings.backend} backend cannot run this layout: {err}")
        return None

    def _profile(self, spec: ModelSpec, settings: Any, exclusive: bool, **options: Any) -> LatencyResult:
        """:func:`~lfm2_nas.profiler.profile_layout` under the CPU lock (when ``exclusive``: not for
        an answer from the cache), measured again while the machine was busy (:data:`BUSY_RETRIES`)."""
        from lfm2_nas.profiler import profile_layout

        with cpu_lock(self.lock, exclusive=True) if exclusive else contextlib.nullcontext():
            if exclusive:
                self._wait_for_quiet()
            result = profile_layout(spec, settings, self.profile, **options)
            for _ in range(BUSY_RETRIES):  # a figure measured while other processes ran is not kept
                if not (result.ok and result.busy):
                    break
                self._wait_for_quiet()
                result = profile_layout(spec, settings, self.profile, retry_failed=True, **options)
        if not result.ok:
            return LatencyResult(ok=False, reason=result.reason or "unknown profiler failure")
        if result.busy:
            other = result.environment.get("other_cpu_cores", 0.0)
            waited = sum(w.waited_s for w in self.quiet_waits[-(1 + BUSY_RETRIES):])
            return LatencyResult(ok=False, reason=f"machine busy while measuring, in all {1 + BUSY_RETRIES} attempts "
                                                  f"(other processes used {other:.2f} CPU cores in the last; "
                                                  f"waited {waited:.0f} s for quiet in all)")
        return LatencyResult(
            ok=True,
            prefill_ms=result.prefill_ms.median,
            decode_ms=result.decode_ms_per_token.median,
            peak_bytes=result.peak_bytes,
            unstable=result.prefill_ms.unstable or result.decode_ms_per_token.unstable,
            row=_scalar_row(result.to_row()),
        )

    def _wait_for_quiet(self) -> None:
        """Wait (bounded) until other processes leave the CPU to this measurement; reported in the log."""
        from lfm2_nas.profiler import contention
        from lfm2_nas.profiler import result as result_module

        wait = contention.wait_for_quiet(result_module.BUSY_OTHER_CORES)
        self.quiet_waits.append(wait)
        if wait.waited_s and wait.quiet:
            log.warning("machine quiet again after %.0f s; measuring", wait.waited_s)
        elif not wait.quiet:
            log.warning("machine still busy after %.0f s (other processes use %.2f CPU cores); measuring anyway",
                        wait.waited_s, wait.other_cores)

    def quality(self, spec: ModelSpec, seed: int | None = None, budget: float | None = None) -> QualityScore:
        """The study's quality proxy of ``spec`` (``seed``, ``budget``: another seed or budget than the
        search file's, as ``search confirm`` trains; cached under their own keys)."""
        from lfm2_nas.quality import evaluate, result_key

        q = self.config.quality
        seed = q.seed if seed is None else seed
        budget = q.budget if budget is None else budget
        key = result_key(spec, q.tier, budget, seed, q.options)
        result = self.quality_store.get(key)
        if result is not None:
            self.quality_hits += 1
        else:
            options = {"progress": False, **q.options}  # one progress line per trial is the CLI's
            try:
                with cpu_lock(self.lock, exclusive=False):
                    result = evaluate(spec, q.tier, budget=budget, seed=seed, **options)
            except ValueError as err:  # e.g. a layout the proxy's scale-down rule cannot shrink
                return QualityScore(ok=False, reason=f"cannot evaluate this layout: {err}")
            if result.ok:
                self.quality_store.put(key, result, layout=spec.pattern)
        if result.higher_is_better != HIGHER_IS_BETTER[q.tier]:
            raise RuntimeError(f"quality tier {q.tier} reports higher_is_better={result.higher_is_better}; "
                               "the study's objective direction disagrees")
        ok = result.ok and math.isfinite(result.score)
        return QualityScore(
            ok=ok,
            reason="" if ok else (result.reason or f"score is {result.score}"),
            score=result.score if ok else None,
            metric=result.metric,
            higher_is_better=result.higher_is_better,
            tokens=result.tokens,
            seconds=result.seconds,
            details=result.details,
        )

    def predict_latency(self, spec: ModelSpec) -> tuple[float, float] | None:
        if self.predictor is None:
            return None
        try:
            return self.predictor.predict(spec, self.settings.resolved())
        except LookupError:  # fitted for another setup (threads, dtype): no prediction
            return None

    def decode_floor_ms(self, spec: ModelSpec) -> float | None:
        """The fastest a decode step could be: bytes it must read at least over the measured bandwidth
        (weights at the backend's scheme's minimum bits, the cache at its dtype)."""
        t = self.settings
        bandwidth = self.profile.read_bandwidth_bytes_per_s
        if not bandwidth:
            return None
        weights = cost.decode_read_bytes(spec, 0, t.batch, t.dtype) - cost.conv_state_bytes(spec, t.batch, t.dtype)
        state = cost.kv_cache_bytes(spec, t.context_depth, t.batch, t.cache_dtype)
        state += cost.conv_state_bytes(spec, t.batch, t.cache_dtype)
        return (weights * t.weight_fraction + state) / bandwidth * 1e3

    def update_predictor(self, rows: list[dict[str, Any]]) -> None:
        if self._predictor_from_file:  # a predictor the user chose stays as it is
            return
        try:
            self.predictor = self._predictor_cls().fit(rows)
        except ValueError:  # too few rows for this setup yet
            self.predictor = None


def make_evaluator(config: SearchConfig, folder: str | Path, location: str | None = None) -> Measurer:
    """The evaluator a search run uses; ``folder`` (the study's) holds its quality cache; ``location``
    (the study's storage) decides the default CPU lock (:func:`~lfm2_nas.search.lock.resolve_lock`)."""
    from lfm2_nas.search.lock import resolve_lock

    return Measurer(config, folder, lock=resolve_lock(config.study.cpu_lock, location or "journal.log") or "")
