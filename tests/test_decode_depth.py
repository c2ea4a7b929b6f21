"""Decode at depth D: the step attends over the D cached positions, the profiler rewinds the cache to D
before every timed step, and a synthetic fill times like a real prefill to the same depth.

The recorded lfm2-350m comparison (depths 1024 and 8192) is ``benchmarks/decode_depth.py``; these
tests check the mechanism on small layouts."""

import statistics

import pytest
import torch
import torch.nn.functional as F

import lfm2_nas.generation as generation
from lfm2_nas.cache import HybridCache
from lfm2_nas.generation import decode_step, prefill
from lfm2_nas.model import build_model
from lfm2_nas.profiler.measure import _fill, measure_layout
from lfm2_nas.profiler.settings import Settings
from lfm2_nas.registry import get_spec
from lfm2_nas.spec import ModelSpec

#: Attention everywhere, no GQA sharing: at depth 8192 a step reads 128 MiB of K/V against 22 MiB of weights.
ATTENTION_HEAVY = ModelSpec.from_pattern(
    "AAAA", vocab_size=256, hidden_size=512, num_heads=8, num_kv_heads=8, ff_dim=384, multiple_of=32
)
DEEP = 8192


@pytest.fixture(autouse=True)
def one_thread():
    """measure_layout runs in-process here: one thread, as its settings say (the runner would set it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _timing(depth: int, **overrides) -> Settings:
    values = dict(prompt_len=4, context_depth=depth, threads=1, warmup=2, min_count=15, min_duration_s=0.0)
    return Settings(**{**values, **overrides})


def _decode_after(model, cache, snapshot, depth: int, token: torch.Tensor) -> torch.Tensor:
    cache.restore(snapshot)
    cache.seek(depth)
    return decode_step(model, token, cache)


@pytest.mark.parametrize("pattern, depth_matters", [("CCAC", True), ("CCCC", False)])
def test_the_logits_of_a_step_depend_on_the_depth_exactly_when_there_is_attention(pattern, depth_matters):
    model = build_model(get_spec("lfm2-tiny", pattern=pattern), seed=1)
    cache = model.new_cache(1, 80)
    token = torch.tensor([[5]])
    with torch.inference_mode():
        prefill(model, torch.randint(0, 256, (1, 64), generator=torch.Generator().manual_seed(0)), cache)
        snapshot = cache.snapshot()
        at = {depth: _decode_after(model, cache, snapshot, depth, token) for depth in (16, 64)}
        again = _decode_after(model, cache, snapshot, 16, token)
    assert torch.equal(at[16], again)  # same depth, same logits: the rewind restores the step exactly
    assert (not torch.equal(at[16], at[64])) == depth_matters  # conv layers alone keep no positions


def test_a_step_at_depth_d_attends_over_d_plus_one_positions(monkeypatch):
    """Spy on SDPA: every attention layer's keys at a step from depth D hold D + 1 positions."""
    model = build_model(get_spec("lfm2-tiny"), seed=1)
    cache = model.new_cache(1, 600)
    with torch.inference_mode():
        _fill(model, cache, 512, "synthetic", torch.Generator().manual_seed(0))
        seen = []
        real = F.scaled_dot_product_attention
        monkeypatch.setattr(F, "scaled_dot_product_attention", lambda q, k, v, **kw: seen.append(k.shape[-2]) or real(q, k, v, **kw))
        for depth in (0, 100, 512):
            cache.seek(depth)
            decode_step(model, torch.tensor([[3]]), cache)
    attention_layers = model.spec.layer_types.count("full_attention")
    assert seen == [1] * attention_layers + [101] * attention_layers + [513] * attention_layers


def test_the_profiler_rewinds_the_cache_to_the_depth_before_every_timed_step(monkeypatch):
    """A spy on HybridCache.seek and decode_step: each step (warm-ups included) follows a seek to the
    depth and runs at it, so every sample is a step at depth D, never D+1, D+2, ..."""
    events = []
    real_seek, real_step = HybridCache.seek, generation.decode_step

    def seek(cache, depth):
        events.append(("seek", depth))
        real_seek(cache, depth)

    def step(model, token, cache):
        events.append(("step", cache.seq_len))
        return real_step(model, token, cache)

    monkeypatch.setattr(HybridCache, "seek", seek)
    monkeypatch.setattr(generation, "decode_step", step)
    settings = _timing(40, prompt_len=8, warmup=2, min_count=5)
    value = measure_layout(get_spec("lfm2-tiny").to_dict(), settings.to_dict())
    decode_events = events[: max(i for i, e in enumerate(events) if e[0] == "step") + 1]
    steps = [i for i, e in enumerate(decode_events) if e[0] == "step"]
    assert len(steps) == settings.warmup + len(value["decode_ms"]) >= 7
    for i in steps:
        assert decode_events[i - 1] == ("seek", 40) and decode_events[i] == ("step", 40)


def test_a_step_at_depth_8192_takes_longer_than_at_depth_0():
    """Attention reads its K/V: at depth 8192 a step reads ~6x the bytes of a step at depth 0 and must be
    markedly slower. Generous bound (the machine is shared, per-op overhead is large at this size): 1.5x."""
    spec = ATTENTION_HEAVY.to_dict()
    medians = {}
    for depth in (0, DEEP, 0, DEEP):  # alternating, against drift
        ms = measure_layout(spec, _timing(depth).to_dict())["decode_ms"]
        medians.setdefault(depth, []).extend(ms)
    shallow, deep = statistics.median(medians[0]), statistics.median(medians[DEEP])
    assert deep > 1.5 * shallow, (shallow, deep)


def test_a_synthetic_fill_times_like_a_real_prefill_to_the_same_depth():
    """Same depth, same work: the two fills' decode medians agree within a generous factor (2x here,
    on a shared machine; the recorded lfm2-350m comparison is benchmarks/decode_depth.py)."""
    spec = ATTENTION_HEAVY.to_dict()
    samples = {"synthetic": [], "prefill": []}
    for fill in ("synthetic", "prefill", "prefill", "synthetic"):
        samples[fill] += measure_layout(spec, _timing(1024, cache_fill=fill).to_dict())["decode_ms"]
    ratio = statistics.median(samples["prefill"]) / statistics.median(samples["synthetic"])
    assert 0.5 < ratio < 2.0, ratio


def test_both_fills_leave_the_cache_at_the_depth():
    model = build_model(get_spec("lfm2-tiny"), seed=0)
    for how in ("synthetic", "prefill"):
        cache = model.new_cache(1, 300)
        with torch.inference_mode():
            _fill(model, cache, 256, how, torch.Generator().manual_seed(0))
        assert cache.seq_len == 256
        assert cache.k[:, :, :, :256].abs().sum() > 0 and cache.conv.abs().sum() > 0
