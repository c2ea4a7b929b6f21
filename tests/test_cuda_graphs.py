"""The graph-captured decode step. Without CUDA the same static step runs eagerly (capture=False)."""

import pytest
import torch
from conftest import max_diff, randomize_

from lfm2_nas.cuda_graphs import GraphedDecoder
from lfm2_nas.generation import decode_step, prefill
from lfm2_nas.model import LFM2Model, build_model
from lfm2_nas.registry import get_spec
from lfm2_nas.spec import ModelSpec

SPEC = ModelSpec.from_pattern(
    "CCACA", vocab_size=71, hidden_size=48, num_heads=6, num_kv_heads=2, ff_dim=64, conv_kernel=3, multiple_of=16
)
PROMPT = torch.tensor([[4, 8, 15, 16, 23, 42], [1, 2, 3, 5, 8, 13]])


def _run_both(model, device, capture, steps=16, max_len=40):
    """Greedy-decode with the eager cache and with a GraphedDecoder; return both logit streams."""
    prompt = PROMPT.to(device)
    eager, static = model.new_cache(2, max_len), model.new_cache(2, max_len, static=True)
    a, b = prefill(model, prompt, eager), prefill(model, prompt, static)
    decoder = GraphedDecoder(model, static, capture=capture)
    assert static.seq_len == prompt.shape[1] and int(static.position) == prompt.shape[1]  # warm-up undone
    ours, theirs = [b.clone()], [a]
    for _ in range(steps):
        token = a.argmax(-1, keepdim=True)
        a = decode_step(model, token, eager)
        theirs.append(a)
        ours.append(decoder.step(token).clone())
    assert static.seq_len == eager.seq_len == int(static.position)
    return torch.stack(ours), torch.stack(theirs), decoder


def test_static_step_without_graph_matches_eager_decode():
    model = randomize_(LFM2Model(SPEC), 0).eval()
    ours, theirs, _ = _run_both(model, "cpu", capture=False)
    assert max_diff(ours, theirs) <= 1e-4


def test_reset_and_new_prompt_reuse_the_decoder():
    model = randomize_(LFM2Model(SPEC), 1).eval()
    cache = model.new_cache(2, 30, static=True)
    decoder = GraphedDecoder(model, cache, capture=False)

    def run():
        cache.reset()
        logits = prefill(model, PROMPT, cache)
        out = []
        for _ in range(5):
            logits = decoder.step(logits.argmax(-1, keepdim=True)).clone()
            out.append(logits)
        return torch.stack(out)

    assert torch.equal(run(), run())


def test_needs_a_static_cache_and_room():
    model = build_model(SPEC)
    with pytest.raises(ValueError, match="static cache"):
        GraphedDecoder(model, model.new_cache(1, 8), capture=False)
    full = model.new_cache(1, 8, static=True)
    prefill(model, PROMPT[:1], full)
    with pytest.raises(ValueError, match="cache is full"):
        GraphedDecoder(model, full, capture=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_capture_without_cuda_says_so():
    model = build_model(SPEC)
    with pytest.raises(ValueError, match="needs the model and cache on a CUDA device"):
        GraphedDecoder(model, model.new_cache(1, 8, static=True))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-3), (torch.bfloat16, 0.0)])
def test_graph_replay_matches_eager_decode_on_cuda(dtype, tolerance):
    """fp32: graph replay vs the eager cache (different attention kernels, TF32-free fp32 noise);
    bf16: the replay runs the very kernels of the eager static step, so results are identical."""
    model = randomize_(LFM2Model(SPEC), 2).eval().to("cuda", dtype)
    ours, theirs, decoder = _run_both(model, "cuda", capture=True)
    if dtype == torch.float32:
        assert max_diff(ours, theirs) <= tolerance
    else:
        eager_static, _, _ = _run_both(model, "cuda", capture=False)
        assert max_diff(ours, eager_static) <= tolerance
    before = torch.cuda.memory_allocated()
    for _ in range(4):
        decoder.step(torch.ones(2, 1, dtype=torch.long, device="cuda"))
    assert torch.cuda.memory_allocated() == before  # replays allocate nothing


@pytest.mark.gpu
def test_graph_decode_of_an_official_size_runs():
    model = build_model(get_spec("lfm2-350m"), dtype=torch.bfloat16, device="cuda")
    cache = model.new_cache(1, 64, static=True)
    logits = prefill(model, torch.ones(1, 16, dtype=torch.long, device="cuda"), cache)
    decoder = GraphedDecoder(model, cache)
    for _ in range(8):
        logits = decoder.step(logits.argmax(-1, keepdim=True))
    assert torch.isfinite(logits).all() and cache.seq_len == 24
