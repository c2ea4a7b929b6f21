"""A study's confirmation, read back: which layouts ``search confirm`` re-measures, and what its
measurements say (per-layout intervals, every pair decided objective by objective, the confirmed
front, and the sentence a user can act on).

The layouts are the study's seeds (the LFM2 layout first: the reference), its Pareto front
(:func:`lfm2_nas.report.trials.summarize_study`) and any trials the user names. The decisions use
:mod:`.confidence` (intervals, dominance with confidence) on the study's front objectives; a layout
whose re-measured mean breaks a ``[budget]`` limit of the study is not on the confirmed front. The
summary is stored on the study as the user attribute :data:`CONFIRM_ATTR`, so ``search status``,
``search export`` and ``report study`` show it without re-measuring anything.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from itertools import combinations
from typing import TYPE_CHECKING, Any

from lfm2_nas.report.confidence import (
    Interval,
    Signs,
    bootstrap_mean,
    confirmed_front,
    dominates_with_confidence,
    paired_ratio,
    t_mean,
    welch_difference,
)
from lfm2_nas.spec import ModelSpec

if TYPE_CHECKING:
    import optuna

    from lfm2_nas.search.config import SearchConfig
    from lfm2_nas.search.confirm import Candidate

#: The study user attribute holding the latest confirmation summary.
CONFIRM_ATTR = "confirmation"
#: What is measured again in every round (the objectives among them are decided on).
MEASURED = ("decode_ms", "prefill_ms", "peak_bytes")
#: How each measured figure reads in a sentence: (noun, what "lower" means).
_WORDS = {"decode_ms": ("decode", "faster"), "prefill_ms": ("prefill", "faster"), "peak_bytes": ("peak memory", "smaller")}
_METRIC_UNITS = {"val_bits_per_byte": "bits per byte"}


def confirm_candidates(config: SearchConfig, study: optuna.Study, trials: Sequence[int] = ()) -> list[Candidate]:
    """The study's seeds (LFM2 first), its Pareto front and the ``trials`` named, one per layout;
    raises ``LookupError`` for a named trial with no layout, or while the LFM2 seed has none."""
    from lfm2_nas.report.trials import summarize_study
    from lfm2_nas.search.confirm import Candidate
    from lfm2_nas.search.space import SearchSpace

    summary = summarize_study(config, study)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    bad = [n for n in trials if n not in by_number or "spec" not in by_number[n].user_attrs]
    if bad:
        raise LookupError(f"trial(s) {', '.join(map(str, bad))} have no layout to confirm "
                          f"(trials: 0..{len(by_number) - 1})")
    reference = next(iter(SearchSpace(config.space).seed_specs()))
    picked = [(s["trial"], s["seed"]) for s in sorted(summary["seeds"], key=lambda s: s["seed"] != reference)]
    picked += [(r["trial"], "front") for r in summary["pareto_front"]]
    picked += [(n, "named") for n in trials]
    out: dict[str, Candidate] = {}
    for number, role in picked:
        attrs = by_number[number].user_attrs
        if "spec" not in attrs:
            continue
        spec = ModelSpec.from_dict(attrs["spec"])
        out.setdefault(spec.spec_hash(), Candidate(number, role, spec))
    if not out or next(iter(out.values())).role != reference:
        raise LookupError(f"the study's {reference} seed has no layout yet to compare with: run 'lfm2-nas search run' first")
    return list(out.values())


def summarize_confirmation(records: Sequence[dict[str, Any]], candidates: Sequence[Candidate], config: SearchConfig,
                           raw_front: Sequence[int], confidence: float = 0.95,
                           moved_from: tuple[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """What ``records`` (from :func:`lfm2_nas.search.confirm.run_confirmation`) say about ``candidates``
    (the reference LFM2 seed first) under ``config``'s front objectives, at ``confidence``.

    ``moved_from``: ``(hardware, figures)`` when the confirmation runs on other hardware than the study
    did: the study's hardware and its figures for the reference (``decode_ms``, ...). A ``[budget]``
    limit in milliseconds or bytes holds for the machine it was set on, so each is then scaled by the
    reference's re-measured mean over its study figure (``limit_scale`` in the result)."""
    from lfm2_nas.report.trials import front_objectives

    objectives = [(o.name, o.direction.name.lower()) for o in front_objectives(config)]
    budget = config.quality.budget
    metric = next((r.get("metric") for r in records if r["kind"] == "quality" and r.get("metric")), "")
    latency = {c.trial: _rounds(records, c) for c in candidates}
    quality = {c.trial: _scores(records, c, budget) for c in candidates}
    budgets = sorted({float(r["budget"]) for r in records if r["kind"] == "quality"})
    reference = candidates[0].trial

    def compare(a: int, b: int, name: str) -> Interval | None:
        """``a`` against ``b`` on ``name``: ratio of figures (paired by round) or difference of scores."""
        if name == "quality":
            x, y = quality[a], quality[b]
            return welch_difference(x, y, confidence) if x and y else None
        shared = sorted(set(latency[a][name]) & set(latency[b][name]))
        if not shared:
            return None
        return paired_ratio([latency[a][name][r] for r in shared], [latency[b][name][r] for r in shared], confidence)

    def signs(a: int, b: int) -> Signs:
        out = []
        for name, direction in objectives:
            interval = compare(a, b, name)
            sign = 0 if interval is None else interval.sign(0.0 if name == "quality" else 1.0)
            out.append(-sign if direction == "maximize" else sign)
        return tuple(out)

    limits, scale = _limits(config), {}
    if moved_from is not None:
        for name, figure in moved_from[1].items():
            values = list(latency[reference][name].values()) if name in latency[reference] else []
            if name in limits and values and figure:
                scale[name] = statistics.fmean(values) / figure
                limits[name] *= scale[name]
    layouts, excluded = [], {}
    for c in candidates:
        entry: dict[str, Any] = {"trial": c.trial, "role": c.role, "pattern": c.spec.pattern,
                                 "spec_hash": c.spec.spec_hash(), "rounds": len(latency[c.trial]["decode_ms"]),
                                 "seeds": len(quality[c.trial])}
        for name in MEASURED:
            values = list(latency[c.trial][name].values())
            entry[name] = _safe(bootstrap_mean(values, confidence).to_dict()) if values else None
        entry["quality"] = _safe(t_mean(quality[c.trial], confidence).to_dict()) if quality[c.trial] else None
        entry["quality_by_budget"] = {f"{b:g}": _safe(t_mean(s, confidence).to_dict())
                                      for b in budgets if (s := _scores(records, c, b))}
        entry["vs_reference"] = {}
        for name in ("quality", *MEASURED):
            interval = compare(c.trial, reference, name)
            if interval is not None:
                null = 0.0 if name == "quality" else 1.0
                entry["vs_reference"][name] = _safe({**interval.to_dict(), "beyond_noise": interval.sign(null) != 0})
        missing = [name for name, _ in objectives if entry[name] is None]
        over = [name for name, limit in limits.items() if entry[name] and entry[name]["estimate"] > limit]
        if missing:
            excluded[c.trial] = f"not measured: {', '.join(missing)}"
        elif over:
            excluded[c.trial] = (f"over the study's limit on {', '.join(over)} (re-measured mean"
                                 f"{', limit scaled to this machine' if scale else ''})")
        layouts.append(entry)

    judged = [c.trial for c in candidates if c.trial not in excluded]
    front = confirmed_front(judged, signs, reference)
    pairs = []
    for a, b in combinations(judged, 2):
        s = signs(a, b)
        verdict = (f"{a} dominates {b}" if dominates_with_confidence(s)
                   else f"{b} dominates {a}" if dominates_with_confidence(tuple(-v for v in s)) else "neither dominates")
        pairs.append({"a": a, "b": b, **{name: v for (name, _), v in zip(objectives, s)}, "verdict": verdict})
    for entry in layouts:
        trial = entry["trial"]
        entry["confirmed"] = trial in front
        entry["beats_reference"] = trial != reference and trial in judged and dominates_with_confidence(signs(trial, reference))
        entry["note"] = excluded.get(trial) or _note(trial, front, judged, signs, reference)
    label = f"{candidates[0].role} (trial {reference})"
    statements = [_statement(e, label, objectives, metric) for e in layouts if e["beats_reference"]]
    if not statements:
        statements = [f"nothing here beats {label} beyond the noise"]
    if scale:
        statements.append(f"measured on other hardware than the study ({moved_from[0]}): its limits were scaled by "
                          f"{label}'s re-measured mean over its study figure ("
                          + ", ".join(f"{_WORDS[n][0]} x{v:.2f}" for n, v in scale.items()) + ")")
    trades = [e["trial"] for e in layouts if e["confirmed"] and {-1, 1} <= set(signs(e["trial"], reference))]
    if trades:
        statements.append(f"trial(s) {', '.join(map(str, trades))} trade one objective for another against {label} "
                          "beyond the noise (on the confirmed front, better on some objectives, worse on others)")
    cycles = non_transitive([(a, b) for a, b in combinations(judged, 2) if dominates_with_confidence(signs(a, b))]
                            + [(b, a) for a, b in combinations(judged, 2) if dominates_with_confidence(signs(b, a))])
    for group in cycles:
        statements.append(f"the decisions among trials {', '.join(map(str, group))} are not transitive (each is "
                          "dominated beyond the noise by another of them): their differences are at the edge of what "
                          "these rounds and seeds resolve; more rounds would settle them")
    return _safe({
        "confidence": confidence,
        "objectives": [{"name": n, "direction": d} for n, d in objectives],
        "reference": reference,
        "rounds": max((e["rounds"] for e in layouts), default=0),
        "processes": max((r.get("processes", 1) for r in records if r["kind"] == "latency"), default=0),
        "seeds": sorted({r["seed"] for r in records if r["kind"] == "quality"}),
        "budgets": budgets,
        "quality_metric": metric,
        "raw_front": list(raw_front),
        "confirmed_front": front,
        "layouts": layouts,
        "pairs": pairs,
        "non_transitive": cycles,
        "study_hardware": moved_from[0] if moved_from else None,
        "limit_scale": scale,
        "statements": statements,
    })


def non_transitive(wins: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The groups of layouts whose "``a`` dominates ``b``" decisions (``wins``) go round in a cycle: the
    strongly connected parts of the decision graph with more than one member, each sorted. Dominance
    between true values is transitive, so a cycle means some decision in it was made on noise."""
    nodes = sorted({n for pair in wins for n in pair})
    reach = {a: {b for x, b in wins if x == a} for a in nodes}
    for k in nodes:  # Warshall's transitive closure; fronts are a handful of layouts
        for a in nodes:
            if k in reach[a]:
                reach[a] |= reach[k]
    groups = {tuple(sorted(b for b in nodes if b in reach[a] and a in reach[b])) for a in nodes if a in reach[a]}
    return [list(g) for g in sorted(groups)]


def describe(confirmation: dict[str, Any]) -> str:
    """How a stored confirmation measured: ``6 rounds x 2 processes, quality seeds 1, 2, 3, 95% intervals``."""
    c = confirmation
    processes = f"{c['processes']} process{'es' if c['processes'] != 1 else ''}"
    return (f"{c['rounds']} rounds x {processes}, quality seeds {', '.join(map(str, c['seeds']))}, "
            f"{c['confidence']:.0%} intervals")


def _rounds(records: Sequence[dict[str, Any]], c: Candidate) -> dict[str, dict[int, float]]:
    """``c``'s measured figures by name, then by round (its latest successful record of each round)."""
    out: dict[str, dict[int, float]] = {name: {} for name in MEASURED}
    for r in records:
        if r["kind"] == "latency" and r["spec_hash"] == c.spec.spec_hash() and r["ok"]:
            for name in MEASURED:
                if isinstance(r.get(name), (int, float)) and r[name] > 0:
                    out[name][r["round"]] = float(r[name])
    return out


def _scores(records: Sequence[dict[str, Any]], c: Candidate, budget: float) -> list[float]:
    """``c``'s quality scores at ``budget``, one per seed."""
    by_seed = {r["seed"]: float(r["score"]) for r in records
               if r["kind"] == "quality" and r["spec_hash"] == c.spec.spec_hash() and r["ok"]
               and math.isclose(float(r["budget"]), budget) and r.get("score") is not None}
    return [by_seed[s] for s in sorted(by_seed)]


def _limits(config: SearchConfig) -> dict[str, float]:
    b = config.budget
    limits = {"decode_ms": b.decode_ms, "prefill_ms": b.prefill_ms, "peak_bytes": b.peak_bytes}
    return {name: float(v) for name, v in limits.items() if v is not None}


def _note(trial: int, front: list[int], judged: list[int], signs: Any, reference: int) -> str:
    if trial in front:
        return "confirmed: no other layout dominates it beyond the noise"
    better = [b for b in judged if b != trial and dominates_with_confidence(signs(b, trial))]
    if better:
        return f"dominated beyond the noise by trial(s) {', '.join(map(str, better))}"
    return f"within the noise of the reference (trial {reference}) on every objective"


def _percent(interval: dict[str, float]) -> tuple[float, float]:
    """A ratio's interval as (how much lower in %, half-width in %; infinite when unbounded)."""
    if interval["low"] is None or interval["high"] is None:
        return (1 - interval["estimate"]) * 100, math.inf
    return (1 - interval["estimate"]) * 100, (interval["high"] - interval["low"]) / 2 * 100


def _statement(entry: dict[str, Any], reference: str, objectives: list[tuple[str, str]], metric: str) -> str:
    """``layout X is faster than REF by a% ± b% in decode ... at equal quality within c UNIT``."""
    unit = _METRIC_UNITS.get(metric, metric or "quality units")
    vs = entry["vs_reference"]
    better: dict[str, list[str]] = {}
    noise = []
    for name, _ in objectives:
        if name == "quality" or name not in vs:
            continue
        noun, adjective = _WORDS[name]
        lower, half = _percent(vs[name])
        if vs[name]["beyond_noise"]:
            better.setdefault(adjective, []).append(f"{lower:.1f}% ± {half:.1f}% in {noun}")
        else:
            noise.append(f"{noun} within the noise ({-lower:+.1f}% ± {half:.1f}%)")
    head = f"layout {entry['pattern']} (trial {entry['trial']})"
    if better:
        head += " is " + " and ".join(f"{adj} than {reference} by {' and '.join(parts)}" for adj, parts in better.items())
    else:
        head += f" matches {reference} in speed"
    if noise:
        head += ", with " + " and ".join(noise)
    q = vs.get("quality")
    if q is None:
        return head
    if not q["beyond_noise"]:
        within = math.inf if q["low"] is None else max(abs(q["low"]), abs(q["high"]))  # None: one seed only
        return f"{head}, at equal quality within {within:.3g} {unit}"
    return f"{head}, with quality {abs(q['estimate']):.3g} ± {(q['high'] - q['low']) / 2:.2g} {unit} better"


def _safe(value: Any) -> Any:
    """``value`` with every non-finite float as None (JSON and every study storage accept it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return value
