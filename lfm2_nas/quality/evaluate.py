"""One entry point for all tiers: ``evaluate(spec, tier, budget, seed, **options)``."""

from __future__ import annotations

from typing import Any

from lfm2_nas.quality.analytic import analytic_quality
from lfm2_nas.quality.result import TIERS, QualityResult
from lfm2_nas.spec import ModelSpec

# Options the trained tiers take that mean nothing to the analytic one; accepted and ignored there
# so that one options dict serves every tier.
_RUN_OPTIONS = {"progress", "device", "cache_dir"}


def evaluate(spec: ModelSpec, tier: str, budget: float = 1.0, seed: int = 0, **options: Any) -> QualityResult:
    """Quality of ``spec`` from ``tier`` ("analytic", "synthetic" or "text").

    ``options`` go to :func:`~lfm2_nas.quality.synthetic.synthetic_quality` or
    :func:`~lfm2_nas.quality.text.text_quality` (``corpus``, ``tokenizer``, ``config``, ``device``,
    ``progress``, ``cache_dir``).
    """
    if tier == "analytic":
        unknown = sorted(set(options) - _RUN_OPTIONS)
        if unknown:
            raise ValueError(f"the analytic tier takes no options {unknown}")
        return analytic_quality(spec, seed=seed)
    if tier == "synthetic":
        from lfm2_nas.quality.synthetic import synthetic_quality

        options.pop("cache_dir", None)
        return synthetic_quality(spec, budget=budget, seed=seed, **options)
    if tier == "text":
        from lfm2_nas.quality.text import text_quality

        return text_quality(spec, budget=budget, seed=seed, **options)
    raise ValueError(f"unknown quality tier {tier!r}: use one of {', '.join(TIERS)}")
