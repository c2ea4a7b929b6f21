"""Prefill, one cached decode step, sampling and a generate loop.

``prefill`` and ``decode_step`` are separate free functions because the profiler times them
separately; ``generate`` is only their composition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lfm2_nas.cache import HybridCache
from lfm2_nas.model import LFM2Model


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding knobs (LFM2's model card sets temperature 0.3, min_p 0.15, repetition_penalty 1.05).

    ``temperature == 0`` is greedy. ``top_k == 0`` and ``min_p == 0`` disable those filters;
    ``repetition_penalty == 1`` disables the penalty (CTRL-style: positive logits of seen tokens
    divided by it, negative ones multiplied).
    """

    temperature: float = 0.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")


@torch.inference_mode()
def prefill(model: LFM2Model, input_ids: torch.Tensor, cache: HybridCache) -> torch.Tensor:
    """Run the prompt ``(B, T)`` through the model into ``cache``; return last-position logits ``(B, V)``."""
    return model(input_ids, cache=cache, last_only=True)[:, -1]


@torch.inference_mode()
def decode_step(model: LFM2Model, token: torch.Tensor, cache: HybridCache) -> torch.Tensor:
    """Feed one token per sequence ``(B, 1)`` at the cache's position; return its logits ``(B, V)``."""
    return model(token, cache=cache)[:, -1]


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise tokens in ``seen`` ``(B, S)``: positive logits divided by ``penalty``, negative multiplied."""
    if penalty == 1.0:
        return logits
    picked = logits.gather(-1, seen)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.scatter(-1, seen, picked)


def next_token_probs(logits: torch.Tensor, config: SamplingConfig, seen: torch.Tensor | None = None) -> torch.Tensor:
    """The sampling distribution ``(B, V)`` for logits ``(B, V)``: repetition penalty over ``seen``,
    then temperature, top-k and min-p (the order transformers applies them). Needs ``temperature > 0``."""
    if config.temperature == 0.0:
        raise ValueError("temperature 0 is greedy decoding: there is no distribution to sample")
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
    logits = logits / config.temperature
    if config.top_k > 0:
        kth = torch.topk(logits, min(config.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if config.min_p > 0.0:
        floor = config.min_p * probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < floor, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample_next(
    logits: torch.Tensor,
    config: SamplingConfig,
    seen: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ``(B, 1)`` from logits ``(B, V)``: greedy (after the repetition penalty) at
    temperature 0, else a draw from :func:`next_token_probs`."""
    if config.temperature == 0.0:
        penalised = logits if seen is None else apply_repetition_penalty(logits.float(), seen, config.repetition_penalty)
        return penalised.argmax(-1, keepdim=True)
    return torch.multinomial(next_token_probs(logits, config, seen), 1, generator=generator)


@torch.inference_mode()
def generate(
    model: LFM2Model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int = 0,
    min_p: float = 0.0,
    repetition_penalty: float = 1.0,
    eos_token_id: int | None = None,
    seed: int | None = None,
) -> torch.Tensor:
    """Prompt ``(B, T)`` followed by up to ``max_new_tokens`` new tokens ``(B, T + n)``.

    Greedy at ``temperature=0``. Generation stops early once every sequence has produced
    ``eos_token_id``; sequences that finished earlier are padded with it.
    """
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be (batch, tokens) with tokens >= 1, got shape {tuple(input_ids.shape)}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    config = SamplingConfig(temperature, top_k, min_p, repetition_penalty)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    if max_new_tokens == 0:
        return input_ids
    cache = model.new_cache(input_ids.shape[0], input_ids.shape[1] + max_new_tokens)
    out = input_ids
    done = torch.zeros(input_ids.shape[0], 1, dtype=torch.bool, device=input_ids.device)
    logits = prefill(model, input_ids, cache)
    for step in range(max_new_tokens):
        token = sample_next(logits, config, out, generator)
        if eos_token_id is not None:
            token = torch.where(done, torch.full_like(token, eos_token_id), token)
            done |= token == eos_token_id
        out = torch.cat((out, token), dim=1)
        if step + 1 == max_new_tokens or bool(done.all()):
            break
        logits = decode_step(model, token, cache)
    return out
