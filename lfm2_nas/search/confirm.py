"""``search confirm``: measure a study's chosen layouts again, so their differences can be told from noise.

Latency and memory: ``rounds`` rounds; in each, every layout is profiled afresh on the study's own
workload (never answered from a cache) with ``processes`` measuring processes, the layouts in
trial order in even rounds and in reverse order in odd ones, so a slow stretch of the machine hits
every layout alike. Quality: the study's proxy trained again with ``seeds`` (seeds other than the
study's: the front was picked on the study's seed, so its own scores would favour the front), at
the study's budget and optionally a larger one.

Every finished measurement is one JSON line appended to ``<study folder>/confirm/measurements.jsonl``
(:class:`lfm2_nas.io.LineStore`: one locked write, fsynced), whose first line records the search
file's fingerprint and the hardware. Re-running resumes: what is recorded is not measured again,
more rounds or seeds extend it, and a file from another search file or other hardware is refused.
Failed measurements are recorded with their reason and tried again by the next run. The statistics
over these records are :mod:`lfm2_nas.report.confidence`'s (read by :mod:`lfm2_nas.report.confirmed`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lfm2_nas.io import LineStore
from lfm2_nas.search.measurements import LatencyResult, QualityScore
from lfm2_nas.spec import ModelSpec

#: The file of measurements inside the confirm folder, and the folder's name inside a study's folder.
MEASUREMENTS = "measurements.jsonl"
FOLDER = "confirm"


class ConfirmError(ValueError):
    """A confirmation that cannot run or resume; the message is one line."""


@dataclass(frozen=True)
class Candidate:
    """A layout to confirm: its trial in the study, why it is there (a seed's name, ``front`` or
    ``named``) and its layout."""

    trial: int
    role: str
    spec: ModelSpec


@dataclass(frozen=True)
class Plan:
    """What to measure: rounds of latency, measuring processes per layout per round, quality seeds
    and budgets (the study's first)."""

    rounds: int
    processes: int
    seeds: tuple[int, ...]
    budgets: tuple[float, ...]


class ConfirmMeasurer(Protocol):
    """What a confirmation measures with; the real one is :class:`lfm2_nas.search.evaluate.Measurer`."""

    def hardware(self) -> dict[str, Any]:
        """This machine's hardware profile (``slug`` included)."""
        ...

    def remeasure(self, spec: ModelSpec, processes: int, store: str | Path) -> LatencyResult:
        """A fresh full-size profile of ``spec`` on the study's workload (no cache), its row kept in ``store``."""
        ...

    def quality(self, spec: ModelSpec, seed: int | None = None, budget: float | None = None) -> QualityScore:
        """The study's quality proxy of ``spec`` trained with ``seed`` at ``budget``."""
        ...


def confirm_seeds(study_seed: int, count: int) -> tuple[int, ...]:
    """``count`` quality seeds other than the study's own: the next ones after it."""
    return tuple(study_seed + i for i in range(1, count + 1))


def round_order(candidates: Sequence[Candidate], round_: int) -> list[Candidate]:
    """The measuring order of round ``round_``: by trial number, reversed in odd rounds."""
    ordered = sorted(candidates, key=lambda c: c.trial)
    return ordered if round_ % 2 == 0 else ordered[::-1]


def load_records(folder: Path, fingerprint: str, hardware: str) -> list[dict[str, Any]]:
    """The measurements recorded in ``folder`` so far (none for a new folder); raises
    :class:`ConfirmError` when they were made for another search file or on other hardware."""
    records = list(LineStore(folder / MEASUREMENTS).records())
    meta = next((r for r in records if r.get("kind") == "meta"), None)
    if meta is not None and (meta.get("fingerprint"), meta.get("hardware")) != (fingerprint, hardware):
        raise ConfirmError(f"{folder / MEASUREMENTS} holds measurements of another search file or other hardware "
                           f"({meta.get('hardware')}); move it aside to confirm afresh")
    return [r for r in records if r.get("kind") != "meta"]


def run_confirmation(candidates: Sequence[Candidate], plan: Plan, measurer: ConfirmMeasurer, folder: Path,
                     fingerprint: str, on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Measure what ``plan`` asks that ``folder`` does not hold yet (latency rounds first, then quality
    seeds); returns every successful record, the earlier ones included."""
    hardware = measurer.hardware().get("slug", "unknown")
    records = load_records(folder, fingerprint, hardware)
    store = LineStore(folder / MEASUREMENTS)
    if not (folder / MEASUREMENTS).exists():
        store.append({"kind": "meta", "fingerprint": fingerprint, "hardware": hardware})
    done = {_key(r) for r in records if r["ok"]}

    def keep(record: dict[str, Any]) -> None:
        store.append(record, default=str)
        records.append(record)
        if on_record is not None:
            on_record(record)

    profiles = folder / "profiles.jsonl"  # the profiler's own rows of these measurements
    for round_ in range(plan.rounds):
        for c in round_order(candidates, round_):
            base = {"kind": "latency", "round": round_, "trial": c.trial, "spec_hash": c.spec.spec_hash()}
            if _key(base) in done:
                continue
            result = measurer.remeasure(c.spec, plan.processes, profiles)
            keep({**base, "processes": plan.processes, "ok": result.ok, "reason": result.reason,
                  "decode_ms": result.decode_ms, "prefill_ms": result.prefill_ms, "peak_bytes": result.peak_bytes,
                  "unstable": result.unstable})
    for budget in plan.budgets:
        for seed in plan.seeds:
            for c in sorted(candidates, key=lambda c: c.trial):
                base = {"kind": "quality", "budget": budget, "seed": seed, "trial": c.trial,
                        "spec_hash": c.spec.spec_hash()}
                if _key(base) in done:
                    continue
                score = measurer.quality(c.spec, seed=seed, budget=budget)
                keep({**base, "ok": score.ok, "reason": score.reason, "score": score.score, "metric": score.metric,
                      "seconds": score.seconds})
    return [r for r in records if r["ok"]]


def _key(record: dict[str, Any]) -> tuple[Any, ...]:
    if record["kind"] == "latency":
        return ("latency", record["round"], record["spec_hash"])
    return ("quality", float(record["budget"]), record["seed"], record["spec_hash"])
