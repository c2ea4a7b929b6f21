"""A study's trials as rows: one tidy row per trial, the Pareto front, where the seeded LFM2 layouts land.

Pure functions over Optuna's ``FrozenTrial`` records (no torch, no plotting), shared by
``search status``, ``search export``, ``report study`` and the tests. Values come from the
measurements stored on each trial, never recomputed; ranking uses :func:`lfm2_nas.report.front.dominates`.

The front holds feasible, fully measured trials that no other such trial dominates. Trials measured
on different hardware are never compared: the front is computed per hardware profile.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lfm2_nas.report.front import dominates, minimised
from lfm2_nas.search.config import SearchConfig
from lfm2_nas.search.objectives import Objective, objectives_for
from lfm2_nas.search.recovery import OWNER_ATTR, TARGET_ATTR, counted_trials, replaced_numbers
from lfm2_nas.spec import ModelSpec

#: Columns of ``trials.csv`` / ``pareto.csv``, in order.
COLUMNS = [
    "trial", "status", "seed", "pattern", "layers", "attention_layers", "attention_at", "hidden_size",
    "heads", "kv_heads", "head_dim", "ffn_dim", "conv_kernel", "vocab_size", "params",
    "non_embedding_params", "quality", "quality_metric", "decode_ms", "prefill_ms", "peak_bytes",
    "feasible", "reason", "hardware", "worker", "seconds", "retry_of", "spec_hash",
]


def front_objectives(config: SearchConfig) -> list[Objective]:
    """Objectives the front is drawn on: the study's in pareto mode; in single mode quality against
    the measured latencies, so the trade-off stays visible."""
    if config.study.mode == "pareto":
        return objectives_for(config)
    pareto_view = replace(config.study, mode="pareto", objectives=("quality", "decode_ms", "prefill_ms"))
    return objectives_for(replace(config, study=pareto_view))


def _status(t: FrozenTrial) -> str:
    if t.state == TrialState.COMPLETE:
        if "screened" in t.user_attrs or "buildable" in t.constraints:
            return "screened"
        return "infeasible" if "infeasible" in t.user_attrs else "measured"
    if t.state == TrialState.PRUNED and "duplicate" in t.user_attrs:
        return "duplicate"
    return t.state.name.lower()


def trial_row(t: FrozenTrial) -> dict[str, Any]:
    """One trial as a flat dict with the :data:`COLUMNS` keys."""
    u = t.user_attrs
    spec = u.get("spec") or {}
    pattern = u.get("pattern", "")
    hidden, heads = spec.get("hidden_size"), spec.get("num_heads")
    reason = u.get("screened") or u.get("infeasible") or u.get("fail_reason") or u.get("duplicate") or ""
    if t.state == TrialState.FAIL and not reason:
        reason = "worker stopped without finishing the trial"
    seconds = None
    if t.datetime_start and t.datetime_complete:
        seconds = round((t.datetime_complete - t.datetime_start).total_seconds(), 2)
    return {
        "trial": t.number,
        "status": _status(t),
        "seed": u.get("seed", ""),
        "pattern": pattern,
        "layers": len(pattern) or None,
        "attention_layers": pattern.count("A") if pattern else None,
        "attention_at": ",".join(str(i) for i, c in enumerate(pattern) if c == "A"),
        "hidden_size": hidden,
        "heads": heads,
        "kv_heads": spec.get("num_kv_heads"),
        "head_dim": spec.get("attn_head_dim") or (hidden // heads if hidden and heads else None),
        "ffn_dim": _ffn_dim(spec),
        "conv_kernel": spec.get("conv_kernel"),
        "vocab_size": spec.get("vocab_size"),
        "params": u.get("param_count"),
        "non_embedding_params": u.get("non_embedding_params"),
        "quality": u.get("quality"),
        "quality_metric": u.get("quality_metric", ""),
        "decode_ms": u.get("decode_ms"),
        "prefill_ms": u.get("prefill_ms"),
        "peak_bytes": u.get("peak_bytes"),
        "feasible": t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values()),
        "reason": reason,
        "hardware": u.get("hardware_slug", ""),
        "worker": (u.get(OWNER_ATTR) or {}).get("host", ""),
        "seconds": seconds,
        "retry_of": u.get("retry_of"),
        "spec_hash": u.get("spec_hash", ""),
    }


def _ffn_dim(spec: dict[str, Any]) -> int | None:
    if not spec:
        return None
    return ModelSpec.from_dict(spec).ffn_dim


def trial_rows(trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    return [trial_row(t) for t in trials]


def _measured(row: dict[str, Any], objectives: list[Objective]) -> bool:
    return all(isinstance(row.get(o.name), (int, float)) and math.isfinite(row[o.name]) for o in objectives)


def _point(row: dict[str, Any], objectives: list[Objective]) -> tuple[float, ...]:
    """``row``'s objective values, each minimised (see :mod:`lfm2_nas.report.front`)."""
    return tuple(minimised(row[o.name], o.direction.name.lower()) for o in objectives)


def pareto_front(rows: list[dict[str, Any]], objectives: list[Objective]) -> list[dict[str, Any]]:
    """Feasible measured rows that no other such row on the same hardware dominates (one row per
    distinct layout: a re-measured layout keeps its first trial)."""
    candidates, seen = [], set()
    for r in rows:
        if r["status"] == "measured" and r["feasible"] and _measured(r, objectives):
            key = (r["hardware"], r["spec_hash"])
            if key not in seen:
                seen.add(key)
                candidates.append(r)
    points = [_point(r, objectives) for r in candidates]
    return [
        r for r, p in zip(candidates, points)
        if not any(dominates(q, p) for o, q in zip(candidates, points) if o["hardware"] == r["hardware"])
    ]


def seed_placement(
    rows: list[dict[str, Any]], front: list[dict[str, Any]], objectives: list[Objective]
) -> list[dict[str, Any]]:
    """For each seeded layout (LFM2 and its baseline): on the front, dominated (and by whom), or why
    it has no place (screened, infeasible, failed)."""
    out = []
    front_keys = {(r["hardware"], r["spec_hash"]) for r in front}
    for seed in dict.fromkeys(r["seed"] for r in rows if r["seed"]):
        tried = [r for r in rows if r["seed"] == seed]
        row = next((r for r in tried if r["status"] == "measured"), tried[-1])
        entry: dict[str, Any] = {"seed": seed, "trial": row["trial"], "status": row["status"], "pattern": row["pattern"]}
        entry.update({o.name: row.get(o.name) for o in objectives})
        if row["status"] != "measured" or not row["feasible"] or not _measured(row, objectives):
            entry["placement"] = f"not on the front: {row['status']}" + (f" ({row['reason']})" if row["reason"] else "")
            entry["dominated_by"] = []
        elif (row["hardware"], row["spec_hash"]) in front_keys:
            entry["placement"] = "on the Pareto front"
            entry["dominated_by"] = []
        else:
            point = _point(row, objectives)
            better = [f["trial"] for f in front
                      if f["hardware"] == row["hardware"] and dominates(_point(f, objectives), point)]
            entry["placement"] = f"dominated by {len(better)} front trial(s): {', '.join(map(str, better))}"
            entry["dominated_by"] = better
        out.append(entry)
    return out


def progress(trials: list[FrozenTrial], target: int) -> dict[str, Any]:
    """Counts by status, how many count towards the target, and the failures with their reasons."""
    rows = trial_rows(trials)
    replaced = replaced_numbers(trials)
    counts = Counter(r["status"] for r in rows)
    return {
        "target": target,
        "finished": counted_trials(trials),
        "measured": counts["measured"],
        "feasible": sum(1 for r in rows if r["status"] == "measured" and r["feasible"]),
        "screened": counts["screened"],
        "infeasible": counts["infeasible"],
        "failed": counts["fail"],
        "requeued": len(replaced),
        "running": counts["running"],
        "waiting": counts["waiting"],
        "hardware": sorted({r["hardware"] for r in rows if r["hardware"]}),
        "failures": [{"trial": r["trial"], "reason": r["reason"]} for r in rows if r["status"] == "fail"],
    }


def hardware_profiles(trials: list[FrozenTrial]) -> dict[str, dict[str, Any]]:
    """The hardware profile of every machine that measured a trial, by slug."""
    return {t.user_attrs["hardware_slug"]: t.user_attrs["hardware"] for t in trials if "hardware" in t.user_attrs}


def summarize_study(config: SearchConfig, study: optuna.Study) -> dict[str, Any]:
    """Everything ``status`` shows and ``summary.json`` holds: progress towards the study's target,
    the front (trial rows), where the seeded layouts land, the hardware that measured, and the latest
    ``search confirm`` result (:mod:`.confirmed`; None before one ran)."""
    from lfm2_nas.report.confirmed import CONFIRM_ATTR

    trials = study.get_trials(deepcopy=False)
    objectives = front_objectives(config)
    rows = trial_rows(trials)
    front = pareto_front(rows, objectives)
    return {
        "study": config.study.name,
        "objectives": [{"name": o.name, "direction": o.direction.name.lower()} for o in objectives],
        "progress": progress(trials, study.user_attrs.get(TARGET_ATTR, config.study.trials)),
        "pareto_front": front,
        "seeds": seed_placement(rows, front, objectives),
        "hardware": hardware_profiles(trials),
        "confirmation": study.user_attrs.get(CONFIRM_ATTR),
        "rows": rows,
    }
