"""Peer-model attention (explicit head dim, QK-norm on or off, Llama 3 RoPE scaling) against
transformers' Qwen3ForCausalLM and LlamaForCausalLM on the same weights (fp32, CPU), prefill and
cached decode, as tests/test_parity.py checks LFM2 against Lfm2ForCausalLM."""

import logging

import pytest
import torch
from conftest import max_diff, randomize_

from lfm2_nas.generation import decode_step, prefill
from lfm2_nas.model import LFM2Model
from lfm2_nas.registry import PEERS, get_spec
from lfm2_nas.spec import Llama3RopeScaling, ModelSpec

TOLERANCE = 1e-4
DECODE_STEPS = 12
# A short original context so that all three bands of the rescaling (kept, interpolated, divided)
# fall on the few frequencies of a 16-wide head, and the scaled ones turn within a short prompt.
TINY_LLAMA3 = Llama3RopeScaling(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=40)

# Qwen3-style: head_dim 16 with width 40 / 4 heads (not 10); Llama-style: no QK-norm, Llama 3 RoPE.
CASES = {
    "qwen3": ModelSpec.from_pattern("AAA", vocab_size=97, hidden_size=40, num_heads=4, num_kv_heads=2, attn_head_dim=16,
                                    ff_dim=72, auto_adjust_ff_dim=False, norm_eps=1e-6, rope_theta=1_000_000.0),
    "qwen3_untied_mqa": ModelSpec.from_pattern("AA", vocab_size=61, hidden_size=32, num_heads=4, num_kv_heads=1,
                                               attn_head_dim=12, ff_dim=50, auto_adjust_ff_dim=False, norm_eps=1e-6,
                                               tie_embeddings=False),
    "llama": ModelSpec.from_pattern("AAA", vocab_size=89, hidden_size=64, num_heads=4, num_kv_heads=2, ff_dim=96,
                                    auto_adjust_ff_dim=False, qk_norm=False, rope_theta=500_000.0, rope_scaling=TINY_LLAMA3),
    "llama_head_dim_24": ModelSpec.from_pattern("AA", vocab_size=70, hidden_size=48, num_heads=3, num_kv_heads=3,
                                                attn_head_dim=24, ff_dim=64, auto_adjust_ff_dim=False, qk_norm=False),
}

# Our parameter names -> the peers' (transformers models/qwen3 and models/llama).
_RENAMES = {
    "operator_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "self_attn.out_proj": "self_attn.o_proj",
    "q_layernorm": "q_norm", "k_layernorm": "k_norm", "feed_forward.w1": "mlp.gate_proj",
    "feed_forward.w3": "mlp.up_proj", "feed_forward.w2": "mlp.down_proj", "model.embedding_norm": "model.norm",
}


def reference_of(model: LFM2Model):
    """``Qwen3ForCausalLM`` (QK-norm) or ``LlamaForCausalLM`` (none) with ``model``'s shapes and weights."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    logging.getLogger("transformers").setLevel(logging.ERROR)
    spec = model.spec
    rope = {"rope_type": "default", "rope_theta": spec.rope_theta}
    if spec.rope_scaling is not None:
        rope = {**rope, "rope_type": "llama3", **vars(spec.rope_scaling)}
    fields = dict(
        vocab_size=spec.vocab_size, hidden_size=spec.hidden_size, intermediate_size=spec.ffn_dim,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        head_dim=spec.head_dim, rms_norm_eps=spec.norm_eps, rope_parameters=rope,
        max_position_embeddings=spec.max_position_embeddings, tie_word_embeddings=spec.tie_embeddings,
    )
    config_cls, model_cls = (Qwen3Config, Qwen3ForCausalLM) if spec.qk_norm else (LlamaConfig, LlamaForCausalLM)
    reference = model_cls(config_cls(**fields)).to(torch.float32).eval()
    state = {}
    for name, tensor in model.state_dict().items():
        for ours, theirs in _RENAMES.items():
            name = name.replace(ours, theirs)
        state[name] = tensor
    if spec.tie_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    reference.load_state_dict(state, strict=True)
    return reference


def _case(name: str, seed: int = 0):
    spec = CASES[name]
    model = randomize_(LFM2Model(spec), seed).eval()
    prompt = torch.randint(0, spec.vocab_size, (2, 9), generator=torch.Generator().manual_seed(seed))
    return model, prompt


@pytest.mark.parametrize("name", sorted(CASES))
def test_prefill_and_cached_decode_match_the_peer_reference(name):
    model, prompt = _case(name)
    reference = reference_of(model)
    cache = model.new_cache(prompt.shape[0], prompt.shape[1] + DECODE_STEPS)
    with torch.inference_mode():
        full = model(prompt)
        theirs = reference(prompt, use_cache=False).logits
        assert theirs.abs().max() > 0.5 and max_diff(full, theirs) <= TOLERANCE
        ours = prefill(model, prompt, cache)
        out = reference(prompt, use_cache=True)
        ref_cache = out.cache
        assert max_diff(ours, out.logits[:, -1]) <= TOLERANCE
        for step in range(DECODE_STEPS):
            token = ours.argmax(-1, keepdim=True)
            ours = decode_step(model, token, cache)
            theirs = reference(token, cache=ref_cache, use_cache=True).logits[:, -1]
            assert max_diff(ours, theirs) <= TOLERANCE, f"cached step {step}"


def _copy(model: LFM2Model, **changes) -> LFM2Model:
    other = LFM2Model(model.spec.replace(**changes))
    other.load_state_dict(model.state_dict())
    return other.eval()


def test_the_llama3_scaling_matters_here():
    """Negative control: the same weights with plain RoPE must NOT match the Llama 3 reference."""
    model, prompt = _case("llama")
    reference = reference_of(model)
    with torch.inference_mode():
        assert max_diff(_copy(model, rope_scaling=None)(prompt), reference(prompt).logits) > 1e-2


def test_qk_norm_matters_here():
    """Negative control: a Qwen3-style model without its QK-norm weights must NOT match."""
    model, prompt = _case("qwen3")
    reference = reference_of(model)
    plain = LFM2Model(model.spec.replace(qk_norm=False))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "layernorm" not in k})
    with torch.inference_mode():
        assert max_diff(plain.eval()(prompt), reference(prompt).logits) > 1e-2


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_sizes_build_with_the_published_parameter_count(name):
    """The peers built (on the meta device) have as many parameters as their transformers twin."""
    from lfm2_nas.registry import OFFICIAL_PARAMS

    spec = get_spec(name)
    with torch.device("meta"):
        model = LFM2Model(spec)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMS[name]
