"""The space: every trial gives a valid spec that its parameters rebuild; the seeds are the
official layouts, exactly."""

import optuna
import pytest
from search_helpers import tiny_config

from lfm2_nas.registry import get_spec
from lfm2_nas.search.config import parse_config
from lfm2_nas.search.space import SearchSpace

SPACE_350M = """
[space]
base = "lfm2-350m"
depth = [12, 18]
hidden_size = [768, 1024, 1280]
kv_heads = [4, 8]
ffn_ratio = [4.0, 5.0, 6.5, 8.0]
"""


def test_random_trials_give_valid_specs_that_round_trip():
    config = tiny_config()
    space = SearchSpace(config.space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        spec = space.suggest(trial)
        assert config.space.depth[0] <= spec.num_layers <= config.space.depth[1]
        assert spec.hidden_size in (32, 64) and spec.head_dim == 16 and spec.num_kv_heads in (1, 2)
        assert space.spec_from_params(trial.params) == spec
        assert space.params_for(spec) == trial.params
        seen.add(spec.pattern)
        study.tell(trial, 0.0)
    assert len(seen) > 20  # positions really vary


@pytest.mark.parametrize("base", ["lfm2-350m", "lfm2-1.2b"])
def test_seeds_rebuild_the_official_layouts_exactly(base):
    config = parse_config(SPACE_350M.replace("lfm2-350m", base).replace("[768, 1024, 1280]", "[1024, 2048]")
                          .replace("6.5, 8.0]", "6.0, 6.5, 8.0]"))
    space = SearchSpace(config.space)
    seeds = space.seed_specs()
    assert list(seeds) == [base, f"{base}-all-attn"]
    for name, spec in seeds.items():
        assert spec == get_spec(name)
        assert space.spec_from_params(space.params_for(spec)) == get_spec(name)


def test_lfm2_ffn_rule_keeps_config_value_and_width_rule_sets_width():
    config = parse_config(SPACE_350M)
    space = SearchSpace(config.space)
    params = space.params_for(get_spec("lfm2-350m"))
    assert params["ffn_ratio"] == 6.5
    spec = space.spec_from_params(dict(params, ffn_ratio=8.0, hidden_size=768, kv_heads=4))
    assert (spec.ff_dim, spec.ffn_dim, spec.auto_adjust_ff_dim) == (6144, 4096, True)
    width = SearchSpace(parse_config(SPACE_350M.replace("[4.0, 5.0, 6.5, 8.0]", "[4.5, 3.0]") + 'ffn_rule = "width"\n').space)
    spec = width.spec_from_params(dict(params, ffn_ratio=3.0, hidden_size=768, kv_heads=4))
    assert (spec.ffn_dim, spec.auto_adjust_ff_dim) == (2304, False)
    assert width.spec_from_params(width.params_for(get_spec("lfm2-350m"))) == get_spec("lfm2-350m")


def test_pattern_family_mode():
    config = parse_config('[space]\nbase = "lfm2-tiny"\npatterns = ["CACA", "ccacc"]\n')
    assert config.space.patterns == ("CACA", "CCACC", "CCAC", "AAAA")  # seeds always in the family
    space = SearchSpace(config.space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    patterns = {space.suggest(study.ask()).pattern for _ in range(40)}
    assert patterns == set(config.space.patterns)


def test_attention_range_violation_is_measured_not_enforced():
    space = SearchSpace(tiny_config(**{"depth = [3, 6]": "depth = [3, 6]\nattention = [1, 2]"}).space)
    assert space.attention_violation(get_spec("lfm2-tiny")) == 0
    assert space.attention_violation(get_spec("lfm2-tiny-all-attn")) == 2
    assert space.attention_violation(get_spec("lfm2-tiny", pattern="CCC")) == 1
