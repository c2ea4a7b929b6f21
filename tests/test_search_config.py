"""The search file: valid files parse, every problem becomes one line naming the key."""

from pathlib import Path

import pytest
from search_helpers import TINY_TOML, tiny_config

from lfm2_nas.search import default_search_file, load_config
from lfm2_nas.search.config import SearchConfigError, parse_config, parse_count_range
from lfm2_nas.units import parse_bytes

ROOT = Path(__file__).resolve().parents[1]


def _problems(text: str) -> list[str]:
    with pytest.raises(SearchConfigError) as info:
        parse_config(text, source="s.toml")
    return info.value.problems


def test_tiny_file_parses_with_defaults():
    config = tiny_config()
    assert config.study.sampler == "random" and config.study.mode == "pareto"
    assert config.study.objectives == ("quality", "decode_ms", "prefill_ms")
    assert config.space.depth == (3, 6) and config.space.attention == (0, 6)
    assert config.target.batch == 1 and config.budget.params is None


@pytest.mark.parametrize("path", [default_search_file(), *sorted((ROOT / "experiments").glob("*.toml"))],
                         ids=lambda p: p.name)
def test_shipped_search_files_are_valid(path):
    config = load_config(path)
    assert config.study.trials >= 1


def test_malformed_toml_is_one_line():
    problems = _problems("[study\nname = 1")
    assert len(problems) == 1 and problems[0].startswith("not valid TOML")


def test_unknown_sampler_lists_choices():
    problems = _problems(TINY_TOML.replace('sampler = "random"', 'sampler = "cmaes"'))
    assert problems == ["[study] sampler: unknown value 'cmaes'; choose one of tpe, nsga2, random"]


def test_every_problem_reported_once_in_one_pass():
    text = TINY_TOML.replace('trials = 8', 'trials = 0').replace('depth = [3, 6]', 'depth = [6, 3]') + (
        '\n[budget]\nparams = "lots"\npeak_memory = "4 parsecs"\n[extra]\nx = 1\n'
    )
    problems = _problems(text)
    assert len(problems) == 5, problems
    assert any(p.startswith("unknown section [extra]") for p in problems)
    assert any(p.startswith("[study] trials: must be >= 1") for p in problems)
    assert any(p.startswith("[space] depth: must be [min, max]") for p in problems)
    assert any(p.startswith("[budget] params:") for p in problems)
    assert any(p.startswith("[budget] peak_memory:") for p in problems)
    assert all("\n" not in p for p in problems)


def test_unknown_key_names_known_keys():
    (problem,) = _problems(TINY_TOML.replace("seed = 1", "seed = 1\nsaampler = 'tpe'"))
    assert problem.startswith("[study] saampler: unknown key; known keys of [study]:") and "sampler" in problem


def test_heads_that_cannot_split_width_are_rejected():
    problems = _problems(TINY_TOML.replace("kv_heads = [1, 2]", "kv_heads = [3]"))
    assert problems == [
        "[space] kv_heads: none of [3] divides 2 heads (hidden_size 32 / head_dim 16)",
        "[space] kv_heads: none of [3] divides 4 heads (hidden_size 64 / head_dim 16)",
    ]


def test_base_layout_must_be_expressible():
    problems = _problems(TINY_TOML.replace("hidden_size = [32, 64]", "hidden_size = [32, 96]"))
    assert problems[0] == "[space] base: cannot seed lfm2-tiny: its hidden_size 64 is not among the hidden_size choices [32, 96]"
    assert problems[1].startswith("[space] base: cannot seed lfm2-tiny-all-attn:")


def test_single_mode_needs_a_limit():
    (problem,) = _problems(TINY_TOML.replace('seed = 1', 'seed = 1\nmode = "single"'))
    assert "single mode maximises quality under limits" in problem


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(SearchConfigError, match="no such search file"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize("text, expected", [
    ("350M ± 10%", (315_000_000, 385_000_000)),
    ("350M +- 10%", (315_000_000, 385_000_000)),
    ("1.2B +/- 100M", (1_100_000_000, 1_300_000_000)),
    ("300M..400M", (300_000_000, 400_000_000)),
    ([1e6, 2e6], (1_000_000, 2_000_000)),
])
def test_parameter_ranges(text, expected):
    assert parse_count_range(text) == expected


def test_sizes_binary_and_decimal():
    assert parse_bytes("4 GiB") == 4 * 2**30
    assert parse_bytes("500MB") == 500 * 10**6
    assert parse_bytes(1024) == 1024
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes("4 parsecs")


def test_fingerprint_ignores_target_count_but_not_space():
    a = tiny_config()
    assert a.fingerprint() == tiny_config(**{"trials = 8": "trials = 50", 'sampler = "random"': 'sampler = "tpe"'}).fingerprint()
    assert a.fingerprint() != tiny_config(**{"kv_heads = [1, 2]": "kv_heads = [2]"}).fingerprint()


def test_target_takes_every_profiler_setting_and_reports_each_problem():
    config = tiny_config(**{"[target]": '[target]\nmin_count = 3\nmin_duration_s = 0.2\nmemory_limit = "2 GiB"\nprocesses = 2'})
    t = config.target
    assert (t.min_count, t.min_duration_s, t.memory_limit_bytes, t.processes) == (3, 0.2, 2 * 2**30, 2)
    problems = _problems(TINY_TOML.replace("[target]", '[target]\nmin_count = 0\ncache_fill = "zeros"\nrepeat = 2'))
    assert [p.split(":")[0] for p in problems] == ["[target] min_count", "[target] cache_fill", "[target] repeat"]


def test_older_target_profiler_tables_still_read_and_mean_the_same():
    old = tiny_config('\n[target.profiler]\nmin_count = 3\nmin_duration_s = 0.2\nmemory_limit = "2 GiB"\n')
    new = tiny_config(**{"[target]": '[target]\nmin_count = 3\nmin_duration_s = 0.2\nmemory_limit = "2 GiB"'})
    assert old.target == new.target and old.fingerprint() == new.fingerprint()
    problems = _problems(TINY_TOML.replace("[target]", "[target]\nwarmup = 1") + "\n[target.profiler]\nwarmup = 2\n")
    assert problems == ["[target] profiler.warmup: warmup is also set in [target]; keep one"]


def test_a_deployment_backend_is_checked_with_its_scheme():
    config = tiny_config(**{"[target]": '[target]\nbackend = "llamacpp"\nquant = "q4_0"'})
    assert (config.target.backend, config.target.quant, config.target.fill) == ("llamacpp", "q4_0", "prefill")
    problems = _problems(TINY_TOML.replace("[target]", '[target]\nbackend = "executorch"\nquant = "q4_0"'))
    assert problems == ["[target] quant: the executorch backend has no scheme 'q4_0'; choose one of fp32, 8da4w"]
    problems = _problems(TINY_TOML.replace("[target]", '[target]\nbackend = "tflite"'))
    assert problems == ["[target] backend: unknown value 'tflite'; choose one of torch, executorch, llamacpp"]


def test_quality_options_checked():
    assert tiny_config(**{'tier = "analytic"': 'tier = "text"\n[quality.options]\ntokenizer = "bpe-4096"'}).quality.options == {"tokenizer": "bpe-4096"}
    problems = _problems(TINY_TOML + '\n[quality.options]\ntokenizer = "byte"\nlr = 0.1\ncorpus = "/no/such/dir"\n')
    assert [p.split(":")[0] for p in problems] == [
        "[quality] options.tokenizer", "[quality] options.lr", "[quality] options.corpus"]
    assert "analytic tier trains nothing" in problems[0]
