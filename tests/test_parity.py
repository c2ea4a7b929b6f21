"""Parity with transformers' Lfm2ForCausalLM on the same weights (fp32, CPU) over many random layouts."""

import pytest
import torch
from conftest import max_diff, random_spec, randomize_, reference_of

from lfm2_nas.generation import decode_step, prefill
from lfm2_nas.model import LFM2Model
from lfm2_nas.spec import ATTENTION

TOLERANCE = 1e-4
DECODE_STEPS = 16
SEEDS = range(32)  # random_spec cycles layout kind, kernel 2..5 and kv heads over these
HYBRID_SEED = 7  # alternating conv/attention layers, kernel 3


def _case(seed: int):
    spec = random_spec(seed)
    model = randomize_(LFM2Model(spec), seed).eval()
    generator = torch.Generator().manual_seed(seed)
    batch = 1 + seed % 3
    prompt = torch.randint(0, spec.vocab_size, (batch, 3 + seed % 10), generator=generator)
    return spec, model, reference_of(model), prompt


def test_random_specs_cover_the_space():
    specs = [random_spec(s) for s in SEEDS]
    assert any(set(s.layer_types) == {ATTENTION} for s in specs)
    assert any(ATTENTION not in s.layer_types for s in specs)
    assert {s.conv_kernel for s in specs} == {2, 3, 4, 5}
    assert any(s.num_kv_heads == 1 < s.num_heads for s in specs)
    assert any(s.num_kv_heads == s.num_heads > 1 for s in specs)
    assert any(1 < s.num_kv_heads < s.num_heads for s in specs)
    assert any(not s.tie_embeddings for s in specs) and any(s.conv_bias for s in specs)
    assert any(not s.auto_adjust_ff_dim and s.ffn_dim % 2 for s in specs)  # explicit odd FFN width
    assert any(s.hidden_size % 8 for s in specs)  # widths off the usual multiples
    assert len({s.rope_theta for s in specs}) > 2
    assert len(set(random_spec(HYBRID_SEED).layer_types)) == 2


@pytest.mark.parametrize("seed", SEEDS)
def test_full_sequence_logits_match_reference(seed):
    _, model, reference, prompt = _case(seed)
    with torch.inference_mode():
        ours = model(prompt)
        theirs = reference(prompt, use_cache=False).logits
    assert ours.shape == theirs.shape
    assert theirs.abs().max() > 0.5  # logits of order one: the tolerance is meaningful
    assert max_diff(ours, theirs) <= TOLERANCE


@pytest.mark.parametrize("seed", SEEDS)
def test_cached_greedy_decode_matches_reference_at_every_step(seed):
    """Our prefill + cached decode against the reference's recomputation of the whole sequence at
    every step and, where its cache works (any attention layer), against its own cached decode."""
    spec, model, reference, prompt = _case(seed)
    reference_caches = ATTENTION in spec.layer_types  # transformers 5.24 cannot cache an all-conv layout
    cache = model.new_cache(prompt.shape[0], prompt.shape[1] + DECODE_STEPS)
    sequence = prompt
    with torch.inference_mode():
        ours = prefill(model, prompt, cache)
        if reference_caches:
            out = reference(prompt, use_cache=True)
            ref_cache, theirs_cached = out.cache, out.logits[:, -1]
            assert max_diff(ours, theirs_cached) <= TOLERANCE
        for step in range(DECODE_STEPS):
            theirs = reference(sequence, use_cache=False).logits[:, -1]
            assert max_diff(ours, theirs) <= TOLERANCE, f"step {step}"
            token = ours.argmax(-1, keepdim=True)  # both continue with our greedy token
            sequence = torch.cat((sequence, token), dim=1)
            if reference_caches:
                theirs_cached = reference(token, cache=ref_cache, use_cache=True).logits[:, -1]
            ours = decode_step(model, token, cache)
            if reference_caches:
                assert max_diff(ours, theirs_cached) <= TOLERANCE, f"cached step {step}"
        assert max_diff(ours, reference(sequence, use_cache=False).logits[:, -1]) <= TOLERANCE


def _copy(model, **changes):
    other = LFM2Model(model.spec.replace(**changes))
    other.load_state_dict(model.state_dict())
    return other.eval()


def _wrong_rope_theta(model):
    return _copy(model, rope_theta=10.0)


def _wrong_norm_eps(model):
    return _copy(model, norm_eps=0.5)


def _conv_kernel_reversed_in_time(model):
    other = _copy(model)
    with torch.no_grad():
        for layer in other.model.layers:
            if not layer.is_attention:
                layer.conv.conv.weight.copy_(layer.conv.conv.weight.flip(-1))
    return other


@pytest.mark.parametrize("mutate", [_wrong_rope_theta, _wrong_norm_eps, _conv_kernel_reversed_in_time])
def test_parity_check_detects_a_wrong_model(mutate):
    """Negative control: a reference differing in one detail must NOT match (the check has teeth)."""
    _, model, _, prompt = _case(HYBRID_SEED)
    with torch.inference_mode():
        assert max_diff(model(prompt), reference_of(mutate(model))(prompt, use_cache=False).logits) > 1e-2


@pytest.mark.parametrize("seed", [0, 5, 10, 15])
def test_onednn_projections_match_reference(seed):
    """A measured kernel table may send any projection through oneDNN: force it for every key."""
    from lfm2_nas import kernels

    if "onednn" not in kernels.KERNELS:
        pytest.skip("this torch has no oneDNN")
    kernels.set_choice(dict.fromkeys(kernels.keys_for(["float32"]), "onednn"))
    try:
        _check_cached_decode_against_reference(seed)
        assert set(kernels.used().values()) == {"onednn"}
    finally:
        kernels.set_choice(None)


def _check_cached_decode_against_reference(seed: int) -> None:
    spec, model, reference, prompt = _case(seed)
    cache = model.new_cache(prompt.shape[0], prompt.shape[1] + 4)
    with torch.inference_mode():
        assert max_diff(model(prompt), reference(prompt, use_cache=False).logits) <= TOLERANCE
        ours = prefill(model, prompt, cache)
        for _ in range(4):
            token = ours.argmax(-1, keepdim=True)
            prompt = torch.cat((prompt, token), dim=1)
            ours = decode_step(model, token, cache)
            assert max_diff(ours, reference(prompt, use_cache=False).logits[:, -1]) <= TOLERANCE
