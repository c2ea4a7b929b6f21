import pytest

from lfm2_nas import cost
from lfm2_nas.registry import OFFICIAL_PARAMS, PEERS, VARIANTS, UnknownVariantError, get_spec, variant_names

NON_EMBEDDING = {
    "lfm2-350m": 287_375_104,
    "lfm2-700m": 641_826_048,
    "lfm2-1.2b": 1_036_122_880,
    "lfm2-2.6b": 2_435_054_592,
    "qwen3-0.6b": 440_467_456,
    "qwen3-1.7b": 1_409_410_048,
    "llama-3.2-1b": 973_146_112,
}
LFM2_SIZES = sorted(set(OFFICIAL_PARAMS) - set(PEERS))


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_official_parameter_counts_exact(name):
    spec = get_spec(name)
    assert cost.param_count(spec) == OFFICIAL_PARAMS[name]
    assert cost.non_embedding_params(spec) == NON_EMBEDDING[name]


def test_official_layouts():
    assert get_spec("lfm2-350m").pattern == "CCACCACCACACACAC"
    assert get_spec("lfm2-2.6b").attention_indices == (2, 5, 9, 13, 17, 21, 24, 27)
    assert [get_spec(n).ffn_dim for n in LFM2_SIZES] == [8192, 10752, 4608, 6912]


@pytest.mark.parametrize("name", LFM2_SIZES + ["lfm2-tiny"])
def test_all_attention_baselines_share_widths(name):
    base, attn = get_spec(name), get_spec(f"{name}-all-attn")
    assert set(attn.layer_types) == {"full_attention"}
    assert attn.num_layers == base.num_layers
    assert (attn.hidden_size, attn.num_heads, attn.num_kv_heads, attn.ffn_dim) == (
        base.hidden_size, base.num_heads, base.num_kv_heads, base.ffn_dim)


def test_tiny_first_and_unknown_name_lists_known():
    assert variant_names()[0] == "lfm2-tiny"
    with pytest.raises(UnknownVariantError, match="known variants: lfm2-tiny, lfm2-350m"):
        get_spec("lfm2-350M")


def test_overrides():
    spec = get_spec("lfm2-350m", pattern="CCAA" * 4, num_kv_heads=4)
    assert spec.pattern == "CCAA" * 4 and spec.num_kv_heads == 4 and spec.hidden_size == 1024


@pytest.mark.parametrize("name", LFM2_SIZES)
def test_dense_baselines_match_parameters_at_same_depth_and_widths(name):
    base, dense = get_spec(name), get_spec(f"{name}-dense")
    assert set(dense.layer_types) == {"full_attention"}
    assert (dense.num_layers, dense.hidden_size, dense.num_heads, dense.num_kv_heads) == (
        base.num_layers, base.hidden_size, base.num_heads, base.num_kv_heads)
    assert dense.ffn_dim > base.ffn_dim and dense.ffn_dim % base.multiple_of == 0
    assert abs(cost.param_count(dense) / OFFICIAL_PARAMS[name] - 1) < 0.02
    # the plain all-attention baseline is NOT parameter-matched: it is what the dense one corrects
    assert cost.param_count(get_spec(f"{name}-all-attn")) < 0.98 * OFFICIAL_PARAMS[name]


def test_peers_are_marked_and_have_their_published_shapes():
    assert set(PEERS) == {"qwen3-0.6b", "qwen3-1.7b", "llama-3.2-1b"} and set(PEERS) <= set(VARIANTS)
    assert not any(name.startswith("lfm2") for name in PEERS) and set(PEERS) <= set(OFFICIAL_PARAMS)
    shapes = {
        name: (s.hidden_size, s.num_layers, s.num_heads, s.num_kv_heads, s.head_dim, s.ffn_dim, s.vocab_size)
        for name in PEERS
        for s in [get_spec(name)]
    }
    assert shapes == {
        "qwen3-0.6b": (1024, 28, 16, 8, 128, 3072, 151936),
        "qwen3-1.7b": (2048, 28, 16, 8, 128, 6144, 151936),
        "llama-3.2-1b": (2048, 16, 32, 8, 64, 8192, 128256),
    }
    for name in PEERS:
        spec = get_spec(name)
        assert set(spec.layer_types) == {"full_attention"} and spec.tie_embeddings
        assert spec.qk_norm == name.startswith("qwen3")  # Qwen3 has QK-norm, Llama has none
        assert (spec.rope_scaling is not None) == name.startswith("llama")
    # the FFN is the published intermediate_size, not LFM2's 2/3 rule
    assert not any(get_spec(name).auto_adjust_ff_dim for name in PEERS)
