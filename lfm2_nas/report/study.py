"""Open a stored study and compute the numbers behind its plots: trials, Pareto front, seeded layouts,
hypervolume history.

:func:`open_stored_study` is the one place a study is opened for reading (``search status``,
``search export`` and ``report study`` all go through it), and its rows, objectives and Pareto front
come from :mod:`.trials`, so the search's tables and a report never disagree about which trials are
on the front. Nothing is re-measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lfm2_nas.report.front import hypervolume, minimised, non_dominated
from lfm2_nas.spec import ModelSpec

if TYPE_CHECKING:  # optuna and the search are imported on use: a sweep report needs neither
    import optuna

    from lfm2_nas.search.config import SearchConfig

#: Axis labels of the trial-row measurements (the one label map of every Pareto plot; see :func:`axis_label`).
LABELS = {
    "quality": "quality",
    "decode_ms": "decode latency (ms/token)",
    "prefill_ms": "prefill latency (ms)",
    "peak_bytes": "peak memory (bytes)",
}
#: Reference point of the hypervolume, per objective, in units of the observed range (worst = 1).
REFERENCE = 1.1


@dataclass(frozen=True)
class StudyData:
    """One study, read back: trial rows (one per trial, with ``on_front``), its objectives as
    ``(name, "minimize" | "maximize")``, the seeded layouts' placement and provenance."""

    name: str
    objectives: tuple[tuple[str, str], ...]
    trials: pd.DataFrame
    seeds: tuple[dict[str, Any], ...]
    hardware: tuple[str, ...]
    dates: str
    specs: dict[int, ModelSpec] = field(default_factory=dict)
    confirmation: dict[str, Any] | None = None  # the latest ``search confirm`` result (:mod:`.confirmed`)

    @property
    def quality_metric(self) -> str:
        metrics = [m for m in self.trials.get("quality_metric", pd.Series(dtype=str)).dropna() if m]
        return metrics[0] if metrics else ""

    @property
    def provenance(self) -> str:
        return f"study {self.name} | hardware {', '.join(self.hardware) or 'unknown'} | trials {self.dates}"


def open_stored_study(location: str, study: str | None = None) -> tuple[SearchConfig, optuna.Study]:
    """An existing study and the search file stored in it, for reading: ``location`` is a journal
    file or a database URL (see :func:`lfm2_nas.search.storage.study_location`), ``study`` its name
    (default: the only study there). The one place ``search status``, ``search export`` and
    ``report study`` open a study."""
    import optuna

    from lfm2_nas.search.run import config_of
    from lfm2_nas.search.storage import is_url, open_storage

    if not is_url(location) and not Path(location).is_file():
        raise FileNotFoundError(f"no study journal at {location}: give the journal file (experiments/<study>/journal.log) or a URL")
    storage = open_storage(location)
    if study is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        if len(names) != 1:
            raise ValueError(f"{location} holds {len(names)} studies ({', '.join(names) or 'none'}): pick one with --study")
        study = names[0]
    config = config_of(storage, study)
    return config, optuna.load_study(study_name=study, storage=storage)


def load_study(location: str | Path, study: str | None = None) -> StudyData:
    """Read study ``study`` (default: the only one there) from a journal file, a database URL, or the
    search file (``.toml``) that created it (its storage, by default ``experiments/<study>/journal.log``)."""
    from lfm2_nas.report.trials import summarize_study
    from lfm2_nas.search.config import SearchConfigError, load_config
    from lfm2_nas.search.storage import study_location

    text = str(location)
    if text.endswith(".toml"):
        try:
            search = load_config(Path(text))
        except SearchConfigError as err:
            raise ValueError(f"{err.source}: {'; '.join(err.problems)}") from None
        study = study or search.study.name
        text = study_location(search.study.name, search.study.storage)  # its storage, else its journal
    config, loaded = open_stored_study(text, study)
    summary = summarize_study(config, loaded)
    if not summary["rows"]:
        raise ValueError(f"study {loaded.study_name!r} has no trials yet: run 'lfm2-nas search run' first")
    return read_study(loaded, summary)


def read_study(study: optuna.Study, summary: dict[str, Any]) -> StudyData:
    """``study`` as :class:`StudyData`, from its :func:`~lfm2_nas.report.trials.summarize_study` (with rows)."""
    trials = study.get_trials(deepcopy=False)
    rows = summary["rows"]
    on_front = {r["trial"] for r in summary["pareto_front"]}
    frame = pd.DataFrame(rows)
    frame["on_front"] = frame["trial"].isin(on_front)
    finished = sorted(t.datetime_complete for t in trials if t.datetime_complete is not None)
    dates = (f"{finished[0]:%Y-%m-%d} to {finished[-1]:%Y-%m-%d}" if finished[0].date() != finished[-1].date()
             else f"{finished[0]:%Y-%m-%d}") if finished else "not finished"
    hardware = []
    for t in trials:
        profile = t.user_attrs.get("hardware") or {}
        slug = profile.get("slug") or t.user_attrs.get("hardware_slug")
        if slug:
            hardware.append(f"{slug}@{profile['date']}" if profile.get("date") else slug)
    return StudyData(
        name=study.study_name,
        objectives=tuple((o["name"], o["direction"]) for o in summary["objectives"]),
        trials=frame,
        seeds=tuple(summary["seeds"]),
        hardware=tuple(dict.fromkeys(hardware)),
        dates=dates,
        specs={t.number: ModelSpec.from_dict(t.user_attrs["spec"]) for t in trials if "spec" in t.user_attrs},
        confirmation=summary.get("confirmation"),
    )


def axis_label(data: StudyData, column: str) -> str:
    """The axis label of a trial-row column: :data:`LABELS`, quality with its metric and direction."""
    if column != "quality":
        return LABELS[column]
    metric = data.quality_metric
    direction = dict(data.objectives).get("quality", "maximize")
    return f"quality{': ' + metric if metric else ''} ({'higher' if direction == 'maximize' else 'lower'} is better)"


def front_layouts(data: StudyData, most: int = 6) -> list[tuple[str, ModelSpec]]:
    """The seeded layouts and up to ``most`` Pareto-front trials (best quality first), labelled."""
    rows = data.trials
    seeded = rows[rows["seed"].fillna("") != ""].drop_duplicates("seed")
    direction = dict(data.objectives).get("quality", "maximize")
    front = rows[rows["on_front"] & (rows["seed"].fillna("") == "")]
    front = front.sort_values("quality", ascending=direction != "maximize").head(most)
    picked = [(f"trial {int(r.trial)} ({r.seed})", int(r.trial)) for r in seeded.itertuples()]
    picked += [(f"trial {int(r.trial)} (front)", int(r.trial)) for r in front.itertuples()]
    return [(label, data.specs[number]) for label, number in picked if number in data.specs]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pareto_points(data: StudyData, x: str = "decode_ms", y: str = "quality") -> pd.DataFrame:
    """Measured trials with both ``x`` and ``y``: columns trial, seed, pattern, params, x, y,
    peak_bytes, feasible, on_front (the study's front over all its objectives) and on_plot_front
    (not dominated in the plotted pair among feasible trials)."""
    for column in (x, y):
        if column not in LABELS:
            raise ValueError(f"unknown column {column!r} for a Pareto plot; use one of {', '.join(LABELS)}")
    rows = data.trials
    measured = rows[(rows["status"].isin(["measured", "infeasible"])) & rows[x].map(_finite) & rows[y].map(_finite)]
    points = pd.DataFrame({
        "trial": measured["trial"].astype(int),
        "seed": measured["seed"].fillna("").astype(str),
        "pattern": measured["pattern"],
        "params": measured["params"],
        "x": measured[x].astype(float),
        "y": measured[y].astype(float),
        "peak_bytes": measured["peak_bytes"].astype(float),
        "feasible": measured["feasible"].astype(bool),
        "on_front": measured["on_front"].astype(bool),
    }).reset_index(drop=True)
    directions = dict(data.objectives)
    orient = [directions.get(x, "minimize"), directions.get(y, "maximize" if y == "quality" else "minimize")]
    feasible = points[points["feasible"]]
    keys = [(minimised(a, orient[0]), minimised(b, orient[1])) for a, b in zip(feasible["x"], feasible["y"])]
    best = set(non_dominated(keys))
    points["on_plot_front"] = [
        bool(f) and (minimised(a, orient[0]), minimised(b, orient[1])) in best
        for f, a, b in zip(points["feasible"], points["x"], points["y"])
    ]
    return points


def confirmed_points(data: StudyData, x: str = "decode_ms", y: str = "quality") -> pd.DataFrame:
    """The re-measured layouts of the study's confirmation (empty before one ran): columns trial, role,
    x, x_low, x_high, y, y_low, y_high (means and interval bounds) and confirmed (on the confirmed front)."""
    columns = ["trial", "role", "x", "x_low", "x_high", "y", "y_low", "y_high", "confirmed"]
    rows = []
    for e in (data.confirmation or {}).get("layouts", []):
        if not e.get(x) or not e.get(y):
            continue
        rows.append([e["trial"], e["role"], e[x]["estimate"], e[x]["low"], e[x]["high"], e[y]["estimate"],
                     e[y]["low"], e[y]["high"], e["confirmed"]])
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("x_low", "x_high", "y_low", "y_high"):  # an unbounded interval (one value) has no bar
        frame[column] = frame[column].astype(float)
    return frame


def hypervolume_history(data: StudyData) -> tuple[pd.DataFrame, dict[str, tuple[float, float]]]:
    """Hypervolume of the feasible measured trials finished up to each trial number.

    Objectives are oriented to "lower is better" and scaled to [0, 1] over every feasible measured
    trial of the study (best observed = 0, worst = 1); the reference point is 1.1 on each. Returns
    the history (trial, hypervolume, feasible_trials) and the scaling used, per objective the
    (best, worst) observed value in its own units.
    """
    names = [name for name, _ in data.objectives]
    rows = data.trials.sort_values("trial")
    usable = rows[(rows["status"] == "measured") & rows["feasible"].astype(bool)]
    usable = usable[usable[names].apply(lambda r: all(_finite(v) for v in r), axis=1)] if not usable.empty else usable
    bounds: dict[str, tuple[float, float]] = {}
    scaled = pd.DataFrame(index=usable.index)
    for name, direction in data.objectives:
        values = usable[name].astype(float).map(lambda v, d=direction: minimised(v, d))
        low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 1.0)
        scaled[name] = (values - low) / ((high - low) or 1.0)
        bounds[name] = (minimised(low, direction), minimised(high, direction))
    history, points = [], []
    for _, row in rows.iterrows():
        if row.name in scaled.index:
            points.append(tuple(scaled.loc[row.name, names]))
        history.append({"trial": int(row["trial"]), "hypervolume": hypervolume(points, [REFERENCE] * len(names)),
                        "feasible_trials": len(points)})
    return pd.DataFrame(history, columns=["trial", "hypervolume", "feasible_trials"]), bounds
