"""The static hybrid cache: size, layout, reset, static (graph) mode, chunked prefill, causality."""

import pytest
import torch
from conftest import max_diff, random_spec, randomize_

from lfm2_nas import cost
from lfm2_nas.cache import HybridCache
from lfm2_nas.generation import decode_step, generate, prefill
from lfm2_nas.model import LFM2Model
from lfm2_nas.registry import get_spec
from lfm2_nas.spec import ModelSpec

TOLERANCE = 1e-4  # logits reach ~30 with these weights: a few ulps of fp32 summation order
HYBRID = ModelSpec.from_pattern(
    "CACCA", vocab_size=97, hidden_size=48, num_heads=6, num_kv_heads=2, ff_dim=40, auto_adjust_ff_dim=False,
    conv_kernel=4, max_position_embeddings=64,
)
ALL_CONV = HYBRID.replace(pattern="CCC")
ALL_ATTENTION = HYBRID.replace(pattern="AAA")


def _model(spec, seed=0):
    return randomize_(LFM2Model(spec), seed).eval()


def _prompt(spec, batch=2, tokens=7, seed=0):
    return torch.randint(0, spec.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["lfm2-tiny", "lfm2-350m", "lfm2-2.6b", "lfm2-1.2b-all-attn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch, max_len", [(1, 4096), (3, 100)])
def test_allocated_bytes_equal_cost_model(name, dtype, batch, max_len):
    spec = get_spec(name)
    cache = HybridCache(spec, batch, max_len, dtype, device="meta")  # sizes without allocating
    assert cache.nbytes == cost.cache_bytes(spec, max_len, batch, dtype)
    assert cache.nbytes == cost.kv_cache_bytes(spec, max_len, batch, dtype) + cost.conv_state_bytes(spec, batch, dtype)


def test_official_cache_figures():
    spec = get_spec("lfm2-350m")
    assert cost.kv_bytes_per_token(spec, "bf16") == 12 * 1024
    assert cost.conv_state_bytes(spec, 1, "bf16") == 40_960
    assert cost.kv_bytes_per_token(get_spec("lfm2-2.6b"), "bf16") == 16 * 1024


@pytest.mark.parametrize("spec", [HYBRID, ALL_CONV, ALL_ATTENTION], ids=["hybrid", "all-conv", "all-attention"])
def test_state_only_where_the_layer_type_needs_it(spec):
    cache = HybridCache(spec, batch=2, max_len=9)
    assert cache.k.shape == (spec.num_attention_layers, 2, spec.num_kv_heads, 9, spec.head_dim)
    assert cache.v.shape == cache.k.shape
    assert cache.conv.shape == (spec.num_conv_layers, 2, spec.hidden_size, spec.conv_kernel - 1)
    assert sorted(cache.slot_of) == list(range(spec.num_layers))
    for layer in spec.conv_indices:
        assert cache.conv_state(layer).shape == (2, spec.hidden_size, spec.conv_kernel - 1)


@pytest.mark.parametrize("static", [False, True])
def test_reset_keeps_buffers_and_repeats_the_generation(static):
    model = _model(HYBRID)
    prompt = _prompt(HYBRID)
    cache = model.new_cache(2, 30, static=static)
    pointers = (cache.k.data_ptr(), cache.v.data_ptr(), cache.conv.data_ptr())

    def run():
        logits = [prefill(model, prompt, cache)]
        for _ in range(8):
            logits.append(decode_step(model, logits[-1].argmax(-1, keepdim=True), cache))
        return torch.stack(logits)

    first = run()
    assert cache.seq_len == prompt.shape[1] + 8
    cache.reset()
    assert cache.seq_len == 0 and int(cache.position) == 0
    assert torch.equal(run(), first)
    assert (cache.k.data_ptr(), cache.v.data_ptr(), cache.conv.data_ptr()) == pointers


@pytest.mark.parametrize("spec", [HYBRID, ALL_CONV, ALL_ATTENTION], ids=["hybrid", "all-conv", "all-attention"])
def test_static_cache_gives_the_eager_logits(spec):
    """The static mode (device-side position, whole-buffer masked attention) is what a CUDA graph
    captures; on CPU it must give what the eager cache gives."""
    model = _model(spec)
    prompt = _prompt(spec)
    eager, static = model.new_cache(2, 40), model.new_cache(2, 40, static=True)
    a, b = prefill(model, prompt, eager), prefill(model, prompt, static)
    assert max_diff(a, b) <= TOLERANCE
    for _ in range(16):
        token = a.argmax(-1, keepdim=True)
        a, b = decode_step(model, token, eager), decode_step(model, token, static)
        assert max_diff(a, b) <= TOLERANCE
    assert int(static.position) == static.seq_len == eager.seq_len


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("chunks", [(1, 6), (3, 4), (2, 2, 3), (1,) * 7])
def test_chunked_prefill_equals_one_shot(chunks, static):
    model = _model(HYBRID)
    prompt = _prompt(HYBRID)
    whole, pieces = model.new_cache(2, 20, static=static), model.new_cache(2, 20, static=static)
    expected = prefill(model, prompt, whole)
    start = 0
    for size in chunks:
        got = prefill(model, prompt[:, start : start + size], pieces)
        start += size
    assert max_diff(got, expected) <= TOLERANCE
    assert max_diff(pieces.conv, whole.conv) <= TOLERANCE
    filled = prompt.shape[1]
    assert max_diff(pieces.k[..., :filled, :], whole.k[..., :filled, :]) <= TOLERANCE
    token = expected.argmax(-1, keepdim=True)
    assert max_diff(decode_step(model, token, pieces), decode_step(model, token, whole)) <= TOLERANCE


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 13, 22])
def test_cached_decode_equals_uncached_recomputation(seed):
    spec = random_spec(seed)
    model = _model(spec, seed)
    sequence = _prompt(spec, batch=3, tokens=5, seed=seed)
    cache = model.new_cache(3, 25)
    logits = prefill(model, sequence, cache)
    for _ in range(16):
        with torch.inference_mode():
            assert max_diff(logits, model(sequence)[:, -1]) <= TOLERANCE
        token = logits.argmax(-1, keepdim=True)
        sequence = torch.cat((sequence, token), dim=1)
        logits = decode_step(model, token, cache)


@pytest.mark.parametrize("spec", [HYBRID, ALL_CONV, ALL_ATTENTION], ids=["hybrid", "all-conv", "all-attention"])
def test_causality(spec):
    """Changing token t+1 leaves the logits of positions <= t exactly as they were."""
    model = _model(spec)
    tokens = _prompt(spec, batch=1, tokens=12)
    changed = tokens.clone()
    t = 6
    changed[0, t + 1 :] = (changed[0, t + 1 :] + 1) % spec.vocab_size
    with torch.inference_mode():
        a, b = model(tokens), model(changed)
    assert torch.equal(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


@pytest.mark.parametrize("static", [False, True])
def test_full_cache_raises_a_clear_error(static):
    model = _model(HYBRID)
    cache = model.new_cache(1, 5, static=static)
    prefill(model, _prompt(HYBRID, batch=1, tokens=4), cache)
    decode_step(model, torch.tensor([[1]]), cache)  # position 4: the last slot
    with pytest.raises(ValueError, match="cache is full: 5 \\+ 1 tokens exceed max_len 5"):
        decode_step(model, torch.tensor([[1]]), cache)
    with pytest.raises(ValueError, match="cache is full"):
        prefill(model, _prompt(HYBRID, batch=1, tokens=6), model.new_cache(1, 5, static=static))


def test_cache_arguments_are_checked():
    with pytest.raises(ValueError, match="batch >= 1"):
        HybridCache(HYBRID, batch=0, max_len=4)
    with pytest.raises(ValueError, match="exceeds the layout's max_position_embeddings"):
        HybridCache(get_spec("lfm2-tiny"), batch=1, max_len=200_000)


def test_generate_uses_a_cache_sized_to_the_request():
    model = _model(HYBRID)
    prompt = _prompt(HYBRID, batch=1, tokens=3)
    out = generate(model, prompt, max_new_tokens=HYBRID.max_position_embeddings - 3)
    assert out.shape[1] == HYBRID.max_position_embeddings
