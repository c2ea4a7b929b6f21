import pytest

from lfm2_nas.quality.scaling import ScaleRule, proxy_spec
from lfm2_nas.registry import get_spec


def test_lfm2_350m_proxy_keeps_pattern_depth_head_group_and_ffn_ratio():
    full = get_spec("lfm2-350m")
    proxy = proxy_spec(full, vocab_size=4096)
    assert proxy.pattern == full.pattern == "CCACCACCACACACAC"
    assert (proxy.hidden_size, proxy.num_heads, proxy.num_kv_heads, proxy.head_dim) == (128, 8, 4, 16)
    assert proxy.ffn_dim == 576  # 4608 / 1024 = 4.5 x 128
    assert proxy.vocab_size == 4096
    assert (proxy.conv_kernel, proxy.tie_embeddings, proxy.rope_theta) == (full.conv_kernel, True, full.rope_theta)


def test_lfm2_2_6b_proxy_keeps_30_layers_group_4_and_ffn_ratio_5_25():
    full = get_spec("lfm2-2.6b")
    proxy = proxy_spec(full, vocab_size=257)
    assert proxy.pattern == full.pattern and proxy.num_layers == 30
    assert (proxy.num_heads, proxy.num_kv_heads) == (8, 2)
    assert proxy.ffn_dim == 672


@pytest.mark.parametrize("name", ["lfm2-350m", "lfm2-1.2b", "lfm2-2.6b", "lfm2-350m-all-attn", "lfm2-tiny"])
def test_ffn_ratio_and_head_group_are_preserved(name):
    full = get_spec(name)
    proxy = proxy_spec(full, vocab_size=300)
    assert abs(proxy.ffn_dim / proxy.hidden_size - full.ffn_dim / full.hidden_size) <= 4 / proxy.hidden_size
    assert proxy.num_heads // proxy.num_kv_heads == full.num_heads // full.num_kv_heads


def test_keep_head_count_policy_shrinks_head_dim():
    proxy = proxy_spec(get_spec("lfm2-350m"), 257, ScaleRule(hidden_size=128, head_dim=None))
    assert (proxy.num_heads, proxy.num_kv_heads, proxy.head_dim) == (16, 8, 8)


def test_rule_never_scales_up():
    tiny = get_spec("lfm2-tiny")  # 64 wide
    assert proxy_spec(tiny, 256).hidden_size == 64


def test_group_that_does_not_divide_proxy_heads_says_which_widths_work():
    with pytest.raises(ValueError, match=r"group of 3 .* multiple of 48 \(96 or 144\)"):
        proxy_spec(get_spec("lfm2-700m"), 257)
    assert proxy_spec(get_spec("lfm2-700m"), 257, ScaleRule(hidden_size=96)).num_kv_heads == 2


def test_width_that_heads_no_longer_divide_is_refused_with_a_fix():
    with pytest.raises(ValueError, match=r"multiple of 48 \(96 or 144\)"):
        proxy_spec(get_spec("lfm2-700m"), 257, ScaleRule(hidden_size=128, head_dim=None))  # 24 heads
    with pytest.raises(ValueError, match="not a multiple of the proxy head_dim 16"):
        proxy_spec(get_spec("lfm2-350m"), 257, ScaleRule(hidden_size=120))


def test_odd_head_dim_rule_is_refused():
    with pytest.raises(ValueError, match="even"):
        ScaleRule(head_dim=15)


@pytest.mark.parametrize("name", ["qwen3-0.6b", "llama-3.2-1b"])
def test_peer_proxies_take_the_rule_head_dim_and_keep_their_attention_kind(name):
    spec = get_spec(name)
    proxy = proxy_spec(spec, 257)
    assert proxy.head_dim == 16 and proxy.num_heads == 8  # 128 wide, the rule's head dim 16
    assert proxy.num_heads // proxy.num_kv_heads == spec.num_heads // spec.num_kv_heads
    assert (proxy.qk_norm, proxy.rope_scaling) == (spec.qk_norm, spec.rope_scaling)
