"""Dominance, the non-dominated set and the exact hypervolume: the one definition every front uses.

Points are tuples with every objective minimised; :func:`minimised` turns a value of a maximised
objective into that form. ``a`` dominates ``b`` when it is no worse on every objective and strictly
better on one, as in optuna's ``optuna/study/_multi_objective.py`` (``_dominates``). The study's
Pareto front (:mod:`.trials`), the plotted 2-D front and the hypervolume history (:mod:`.study`) all
rank with :func:`dominates`.

The hypervolume is the volume of the region dominated by the points and bounded by the reference:
it grows when a search finds better trade-offs, which makes its history a measure of progress.
Computed by slicing along the first objective (exact; fine for the tens of non-dominated points a
layout study has, in 2-4 objectives); points not strictly better than the reference on every
objective add nothing.
"""

from __future__ import annotations

from typing import Sequence

Point = Sequence[float]


def minimised(value: float, direction: str) -> float:
    """``value`` of an objective with ``direction`` (``"minimize"`` / ``"maximize"``) as lower-is-better."""
    return -value if direction == "maximize" else value


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` on every (minimised) objective and strictly better on one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated(points: Sequence[Point]) -> list[tuple[float, ...]]:
    """The points no other point dominates; duplicates kept once."""
    unique = list(dict.fromkeys(tuple(float(v) for v in p) for p in points))
    return [p for p in unique if not any(dominates(q, p) for q in unique)]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """Volume dominated by ``points`` inside the box bounded by ``reference`` (minimisation)."""
    ref = tuple(float(v) for v in reference)
    if any(len(p) != len(ref) for p in points):
        raise ValueError(f"every point needs {len(ref)} objectives, like the reference point")
    inside = [p for p in non_dominated(points) if all(a < r for a, r in zip(p, ref))]
    return _slice(inside, ref)


def _slice(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in points)
    if len(ref) == 2:
        # sweep along x: each point adds the strip up to the next x, as high as the best y so far
        ordered = sorted(points)
        area, best_y = 0.0, ref[1]
        for i, (x, y) in enumerate(ordered):
            best_y = min(best_y, y)
            next_x = ordered[i + 1][0] if i + 1 < len(ordered) else ref[0]
            area += (next_x - x) * (ref[1] - best_y)
        return area
    ordered = sorted(points)
    volume = 0.0
    for i, p in enumerate(ordered):
        next_x = ordered[i + 1][0] if i + 1 < len(ordered) else ref[0]
        if next_x > p[0]:
            volume += (next_x - p[0]) * _slice(non_dominated([q[1:] for q in ordered[: i + 1]]), ref[1:])
    return volume
