"""Whether two layouts differ beyond the noise: intervals over repeated measurements, and dominance
decided on them (the statistics of ``search confirm``; pure functions, deterministic).

Latency and memory are measured again in *rounds*: every layout once per round, so a slow stretch of
the machine hits all layouts of that round alike. Two layouts are compared through the per-round
ratio of their figures; the interval of the geometric mean ratio comes from a percentile bootstrap
over rounds (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13), resampling whole
rounds so the pairing is kept. The plain percentile interval is too narrow with few rounds (it
behaves like z * sd / sqrt(n) with the biased sd), so its percentiles are widened as Hesterberg's
*expanded percentile* interval does (Hesterberg, "What Teachers Should Know About the Bootstrap",
*The American Statistician* 69(4), 2015, sec. 5.2): at ``alpha' = 2 Phi(-sqrt(n / (n - 1)) t(alpha / 2, n - 1))``
instead of ``alpha``, which matches the t interval's width for normal data.

Quality comes from proxies retrained with a few independent seeds: too few for a bootstrap (three
values give ten distinct resamples), so the interval of a mean is Student's t interval and the
difference of two layouts Welch's t interval (Welch, *Biometrika* 34, 1947), which does not assume
equal spreads. Layouts are not paired by seed: a seed fixes data order and initialisation, whose
effect differs between architectures, so pairing would claim a correlation nobody measured.

A difference is *beyond the noise* when its interval excludes "no difference". Layout ``a``
*dominates* ``b`` *with confidence* when it is better beyond the noise on at least one objective and
worse beyond the noise on none: :func:`lfm2_nas.report.front.dominates` applied to the signs of the
differences (-1 better, 0 within the noise, +1 worse), so dominance keeps its one definition.
Intervals are per comparison, with no correction for the many comparisons a front makes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lfm2_nas.report.front import dominates

#: Bootstrap resamples per interval, and the generator's seed (fixed: the same data give the same interval).
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Interval:
    """An estimate and its confidence interval ``[low, high]``; infinite bounds when the data cannot
    bound it (fewer than two values)."""

    estimate: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def sign(self, null: float) -> int:
        """-1 when the whole interval lies below ``null``, +1 when above it, 0 when it holds ``null``."""
        if self.high < null:
            return -1
        if self.low > null:
            return 1
        return 0

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def _values(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("an interval needs at least one value")
    if not np.isfinite(array).all():
        raise ValueError("an interval needs finite values")
    return array


def bootstrap_mean(values: Sequence[float], confidence: float = 0.95, resamples: int = RESAMPLES,
                   seed: int = BOOTSTRAP_SEED) -> Interval:
    """The mean of ``values`` (one per round) with its expanded percentile-bootstrap interval."""
    x = _values(values)
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, -math.inf, math.inf)
    from scipy import stats

    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    n = x.size
    expanded = 2 * stats.norm.cdf(-math.sqrt(n / (n - 1)) * stats.t.ppf(0.5 + confidence / 2, n - 1))
    low, high = np.quantile(means, [expanded / 2, 1 - expanded / 2])
    return Interval(mean, float(low), float(high))


def paired_ratio(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, resamples: int = RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> Interval:
    """Geometric mean over rounds of ``a[r] / b[r]`` (positive figures measured in the same rounds),
    with the bootstrap interval over rounds: below 1 means ``a`` is lower."""
    x, y = _values(a), _values(b)
    if x.shape != y.shape:
        raise ValueError(f"paired figures need one value per round each ({x.size} and {y.size} given)")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("a ratio needs positive figures")
    logs = bootstrap_mean(np.log(x) - np.log(y), confidence, resamples, seed)
    return Interval(math.exp(logs.estimate), math.exp(logs.low), math.exp(logs.high))


def t_mean(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """The mean of ``values`` (one per independent seed) with Student's t interval."""
    from scipy import stats

    x = _values(values)
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, -math.inf, math.inf)
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half)


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Interval:
    """``mean(a) - mean(b)`` of two independent samples with Welch's t interval (no equal spread assumed)."""
    from scipy import stats

    x, y = _values(a), _values(b)
    difference = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return Interval(difference, -math.inf, math.inf)
    va, vb = float(x.var(ddof=1)) / x.size, float(y.var(ddof=1)) / y.size
    if va + vb == 0:  # no spread at all (a deterministic score): the difference is exact
        return Interval(difference, difference, difference)
    dof = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1))  # Welch-Satterthwaite
    half = float(stats.t.ppf(0.5 + confidence / 2, dof)) * math.sqrt(va + vb)
    return Interval(difference, difference - half, difference + half)


Signs = tuple[int, ...]


def dominates_with_confidence(signs: Signs) -> bool:
    """Whether a layout whose differences from another have these ``signs`` (per objective, minimised:
    -1 better beyond the noise, 0 within it, +1 worse) dominates it with confidence."""
    return dominates(signs, (0,) * len(signs))


def confirmed_front(layouts: Sequence[str], signs: Callable[[str, str], Signs], reference: str) -> list[str]:
    """The layouts no other one dominates with confidence, less those within the noise of ``reference``
    (the LFM2 seed) on every objective: they offer nothing the reference does not, beyond the noise.

    ``signs(a, b)``: the signs of ``a``'s differences from ``b`` per objective (see
    :func:`dominates_with_confidence`). ``reference`` itself stays unless something dominates it.
    """
    kept = []
    for a in layouts:
        if any(dominates_with_confidence(signs(b, a)) for b in layouts if b != a):
            continue
        if a != reference and reference in layouts and not any(signs(a, reference)):
            continue
        kept.append(a)
    return kept
