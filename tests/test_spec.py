import sys
import subprocess

import pytest

from lfm2_nas.spec import ATTENTION, CONV, Llama3RopeScaling, ModelSpec, ffn_width, format_pattern, parse_pattern

BASE = dict(vocab_size=256, hidden_size=64, num_heads=4, num_kv_heads=2, ff_dim=128)
LLAMA3 = dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)


def test_pattern_round_trip():
    types = parse_pattern("CCACCACCACACACAC")
    assert types[:3] == (CONV, CONV, ATTENTION)
    assert format_pattern(types) == "CCACCACCACACACAC"
    assert parse_pattern("cc-a a") == (CONV, CONV, ATTENTION, ATTENTION)


def test_spec_accepts_pattern_string_and_derives_values():
    spec = ModelSpec(layer_types="CAC", **BASE)
    assert spec.pattern == "CAC"
    assert spec.num_layers == 3 and spec.head_dim == 16
    assert spec.attention_indices == (1,) and spec.conv_indices == (0, 2)


@pytest.mark.parametrize(
    "ff, auto, mult, multiple, expected",
    [(6656, True, 1.0, 256, 4608), (10240, True, 1.0, 256, 6912), (12288, True, 1.0, 256, 8192),
     (10752, False, 1.0, 256, 10752), (64, True, 1.0, 256, 256), (300, True, 1.5, 32, 320)],
)
def test_ffn_width_rule(ff, auto, mult, multiple, expected):
    assert ffn_width(ff, auto, mult, multiple) == expected


def test_explicit_ffn_width():
    spec = ModelSpec(layer_types="CA", **BASE).with_ffn_dim(100)
    assert spec.ffn_dim == 100 and not spec.auto_adjust_ff_dim


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(hidden_size=66), "not divisible by num_heads"),
        (dict(num_kv_heads=3), "not divisible by num_kv_heads"),
        (dict(conv_kernel=1), "conv_kernel must be >= 2"),
        (dict(layer_types=()), "empty"),
        (dict(layer_types="CXA"), "unknown letters"),
        (dict(hidden_size=24, num_heads=8, num_kv_heads=2), "odd"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(num_kv_heads=0), "num_kv_heads must be >= 1"),
        (dict(norm_eps=0.0), "norm_eps"),
        (dict(ffn_dim_multiplier=-1.0), "ffn_dim_multiplier"),
        (dict(hidden_size=64.0), "must be an integer"),
        (dict(attn_head_dim=7), "attn_head_dim = 7 is odd"),
        (dict(attn_head_dim=0), "attn_head_dim must be >= 2"),
        (dict(qk_norm=1), "qk_norm must be true or false"),
        (dict(rope_scaling={"factor": 8.0}), "rope_scaling needs exactly the keys"),
        (dict(rope_scaling={**LLAMA3, "low_freq_factor": 4.0}), "low_freq_factor < high_freq_factor"),
        (dict(rope_scaling=(32.0, 1.0, 4.0, 8192)), "rope_scaling must be null"),
    ],
)
def test_invalid_specs_say_what_to_change(changes, message):
    fields = {**BASE, "layer_types": "CA", **changes}
    with pytest.raises(ValueError, match=message):
        ModelSpec(**fields)


def test_spec_is_frozen_and_keyword_only():
    spec = ModelSpec(layer_types="CA", **BASE)
    with pytest.raises(AttributeError):
        spec.hidden_size = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        ModelSpec(256, 64, "CA", 4, 2, 128)  # type: ignore[misc]


def test_dict_round_trip_and_hash():
    spec = ModelSpec(layer_types="CAC", conv_kernel=4, tie_embeddings=False, **BASE)
    data = spec.to_dict()
    assert data["pattern"] == "CAC" and "layer_types" not in data
    assert ModelSpec.from_dict(data) == spec
    assert spec.spec_hash() == ModelSpec.from_dict(data).spec_hash()
    assert spec.spec_hash() != spec.replace(pattern="CAA").spec_hash()
    with pytest.raises(ValueError, match="unknown spec field"):
        ModelSpec.from_dict({**data, "bogus": 1})
    with pytest.raises(ValueError, match="unknown spec field"):
        spec.replace(bogus=1)


def test_spec_registry_and_cost_import_without_torch():
    code = "import sys, lfm2_nas, lfm2_nas.spec, lfm2_nas.registry, lfm2_nas.cost; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_known_lfm2_spec_hashes_are_unchanged():
    """Results and caches are keyed by these hashes: adding spec fields must not change them."""
    from lfm2_nas.registry import get_spec

    hashes = {name: get_spec(name).spec_hash() for name in ("lfm2-350m", "lfm2-tiny", "lfm2-1.2b-dense")}
    assert hashes == {"lfm2-350m": "c5f3e3990b80b92e", "lfm2-tiny": "a4ef64d8f5414456", "lfm2-1.2b-dense": "d2139f8b7a853eb8"}
    assert not {"attn_head_dim", "qk_norm", "rope_scaling"} & set(get_spec("lfm2-350m").to_dict())


def test_peer_attention_fields():
    """Explicit head dim (need not divide the width), QK-norm off, Llama 3 RoPE: round trip and hash."""
    spec = ModelSpec(layer_types="AA", **{**BASE, "hidden_size": 70}, attn_head_dim=32,
                     qk_norm=False, rope_scaling=Llama3RopeScaling(**LLAMA3))
    assert spec.head_dim == 32 and spec.hidden_size % spec.num_heads  # 70 / 4 heads is no integer
    data = spec.to_dict()
    assert data["attn_head_dim"] == 32 and data["qk_norm"] is False and data["rope_scaling"] == LLAMA3
    assert ModelSpec.from_dict(data) == spec and ModelSpec.from_dict(data).spec_hash() == spec.spec_hash()
    hashes = {spec.spec_hash(), spec.replace(attn_head_dim=None, hidden_size=64).spec_hash(),
              spec.replace(qk_norm=True).spec_hash(), spec.replace(rope_scaling=None).spec_hash()}
    assert len(hashes) == 4
    # a field set back to its default leaves the dict (and the hash) as if it had never existed
    plain = ModelSpec(layer_types="AA", **BASE)
    assert spec.replace(hidden_size=64, attn_head_dim=None, qk_norm=True, rope_scaling=None).to_dict() == plain.to_dict()
