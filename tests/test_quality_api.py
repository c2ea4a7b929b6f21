import subprocess
import sys

import pytest

from lfm2_nas.quality import QualityResult, analytic_quality, evaluate
from lfm2_nas.registry import get_spec


def test_importing_the_package_and_the_analytic_tier_loads_no_torch():
    code = "import sys, lfm2_nas.quality as q; q.analytic_quality(q.proxy_spec.__globals__['ModelSpec'].from_pattern('CA', vocab_size=8, hidden_size=32, num_heads=2, num_kv_heads=1, ff_dim=64)); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_analytic_tier_is_the_non_embedding_parameter_count():
    result = analytic_quality(get_spec("lfm2-1.2b"))
    assert result.score == 1_036_122_880 and result.higher_is_better and result.tokens == 0
    assert result.details["num_attention_layers"] == 6


def test_evaluate_dispatches_and_rejects_unknown_tiers_and_options():
    assert evaluate(get_spec("lfm2-350m"), "analytic", progress=False).metric == "non_embedding_params"
    with pytest.raises(ValueError, match="unknown quality tier 'perplexity'"):
        evaluate(get_spec("lfm2-350m"), "perplexity")
    with pytest.raises(ValueError, match="takes no options"):
        evaluate(get_spec("lfm2-350m"), "analytic", corpus="x")


def test_result_round_trips_through_a_dict_and_signs_goodness():
    failed = QualityResult.failed("val_bits_per_byte", False, 3, "diverged")
    again = QualityResult.from_dict(failed.to_dict())
    assert again.reason == "diverged" and not again.ok and again.score != again.score  # nan
    assert QualityResult(1.5, "val_bits_per_byte", False, 1, 1.0, 0).goodness == -1.5
