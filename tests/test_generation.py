"""Generation: greedy, the sampling knobs against transformers' own processors, seeds, eos."""

import pytest
import torch
from conftest import randomize_, reference_of
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

from lfm2_nas.generation import SamplingConfig, apply_repetition_penalty, generate, next_token_probs, sample_next
from lfm2_nas.model import LFM2Model
from lfm2_nas.spec import ModelSpec

SPEC = ModelSpec.from_pattern(
    "CACA", vocab_size=53, hidden_size=32, num_heads=4, num_kv_heads=2, ff_dim=48, auto_adjust_ff_dim=False
)
PROMPT = torch.tensor([[5, 17, 3, 42], [8, 8, 1, 0]])


@pytest.fixture(scope="module")
def model():
    return randomize_(LFM2Model(SPEC), 3).eval()


def test_greedy_is_the_argmax_of_recomputation(model):
    out = generate(model, PROMPT, max_new_tokens=12)
    assert out.shape == (2, 16) and torch.equal(out[:, :4], PROMPT)
    sequence = PROMPT
    with torch.inference_mode():
        for _ in range(12):
            sequence = torch.cat((sequence, model(sequence)[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(out, sequence)


def test_greedy_equals_transformers_generate_with_repetition_penalty(model):
    reference = reference_of(model)
    for penalty in (1.0, 1.3):
        ours = generate(model, PROMPT, max_new_tokens=10, repetition_penalty=penalty)
        theirs = reference.generate(
            PROMPT,
            attention_mask=torch.ones_like(PROMPT),  # token 0 is also the pad id: say it is real
            max_new_tokens=10,
            do_sample=False,
            repetition_penalty=penalty,
            eos_token_id=None,
        )
        assert torch.equal(ours, theirs), penalty


@pytest.mark.parametrize("knob", [dict(top_k=1), dict(min_p=1.0)])
def test_top_k_1_and_min_p_1_reduce_to_greedy(model, knob):
    greedy = generate(model, PROMPT, max_new_tokens=10)
    for seed in range(3):
        assert torch.equal(generate(model, PROMPT, max_new_tokens=10, temperature=1.5, seed=seed, **knob), greedy)


def test_repetition_penalty_semantics():
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0, 0.5]])
    seen = torch.tensor([[0, 1, 1]])  # repeats count once
    out = apply_repetition_penalty(logits, seen, 2.0)
    assert torch.equal(out, torch.tensor([[1.0, -4.0, 1.0, -1.0, 0.5]]))
    assert apply_repetition_penalty(logits, seen, 1.0) is logits
    theirs = RepetitionPenaltyLogitsProcessor(2.0)(seen, logits.clone())
    assert torch.equal(out, theirs)


@pytest.mark.parametrize(
    "config",
    [
        SamplingConfig(temperature=0.7),
        SamplingConfig(temperature=1.3, top_k=5),
        SamplingConfig(temperature=0.3, min_p=0.15, repetition_penalty=1.05),  # LFM2's recommended settings
        SamplingConfig(temperature=1.0, top_k=10, min_p=0.05, repetition_penalty=1.5),
    ],
)
def test_sampling_distribution_matches_transformers_processors(config):
    generator = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(3, 40, generator=generator)
    seen = torch.randint(0, 40, (3, 6), generator=generator)
    scores = logits.clone()
    if config.repetition_penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(config.repetition_penalty)(seen, scores)
    scores = TemperatureLogitsWarper(config.temperature)(seen, scores)
    if config.top_k:
        scores = TopKLogitsWarper(config.top_k)(seen, scores)
    if config.min_p:
        scores = MinPLogitsWarper(config.min_p)(seen, scores)
    expected = torch.softmax(scores, dim=-1)
    assert torch.allclose(next_token_probs(logits, config, seen), expected, atol=1e-6)


def test_seeded_sampling_is_reproducible(model):
    kwargs = dict(max_new_tokens=12, temperature=1.0, top_k=20)
    a = generate(model, PROMPT, seed=7, **kwargs)
    assert torch.equal(a, generate(model, PROMPT, seed=7, **kwargs))
    others = [generate(model, PROMPT, seed=s, **kwargs) for s in range(8, 12)]
    assert any(not torch.equal(a, o) for o in others)


def test_sampling_follows_the_distribution():
    probs = torch.tensor([[0.1, 0.6, 0.3]])
    logits = probs.log()
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next(logits, SamplingConfig(temperature=1.0), generator=generator) for _ in range(4000)])
    frequency = torch.bincount(draws.flatten(), minlength=3) / 4000
    assert torch.allclose(frequency, probs[0], atol=0.03)


def test_generation_stops_at_eos_and_pads_finished_rows(model):
    free = generate(model, PROMPT, max_new_tokens=12)
    eos = int(free[0, 4 + 2])  # the third token row 0 generates
    out = generate(model, PROMPT, max_new_tokens=12, eos_token_id=eos)
    stops = []
    for row, free_row in zip(out, free):
        hits = (row[4:] == eos).nonzero()
        stop = int(hits[0]) if len(hits) else None
        stops.append(stop)
        end = out.shape[1] if stop is None else 4 + stop + 1
        assert torch.equal(row[:end], free_row[:end])  # identical up to and including eos
        assert (row[end:] == eos).all()  # then padded with eos
    assert stops[0] is not None and stops[0] <= 2
    if None not in stops:
        assert out.shape[1] == 4 + max(stops) + 1  # stopped as soon as every row finished
    else:
        assert out.shape[1] == 16


def test_zero_new_tokens_returns_the_prompt(model):
    assert torch.equal(generate(model, PROMPT, max_new_tokens=0), PROMPT)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=-2), "top_k"),
        (dict(min_p=1.5), "min_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
    ],
)
def test_bad_arguments_raise(model, kwargs, message):
    kwargs = {"max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(model, PROMPT, **kwargs)


def test_prompt_must_be_two_dimensional(model):
    with pytest.raises(ValueError, match="input_ids must be"):
        generate(model, PROMPT[0], max_new_tokens=2)


def test_no_distribution_at_temperature_zero():
    with pytest.raises(ValueError, match="greedy"):
        next_token_probs(torch.zeros(1, 4), SamplingConfig())
