"""Proxy training: a fixed token budget, AdamW with linear warmup and cosine decay, seeded.

One loop serves every tier. It knows nothing about the data: the caller hands it an iterator of
``(inputs, targets)`` batches, the number of steps the token budget buys, and a loss function.
On CPU it runs in fp32 and is deterministic for a given seed and thread count; on CUDA it uses bf16
autocast. A loss or gradient norm that stops being finite ends training early with ``ok=False`` and
the reason, instead of raising: a diverged proxy is a failed evaluation, not a crash.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
IGNORE = -100  # target value that contributes no loss (F.cross_entropy's ignore_index)


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule. ``warmup_fraction`` of the steps warm up linearly from 0 to ``lr``;
    the rest decay along a cosine to ``min_lr_fraction * lr``. Weight decay applies to matrices only."""

    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_fraction: float = 0.1
    min_lr_fraction: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")


@dataclass(frozen=True)
class TrainStats:
    """What a training run did. ``tokens`` counts input tokens processed; ``final_loss`` is the mean
    loss over the last tenth of the steps (``nan`` when training failed)."""

    steps: int
    tokens: int
    seconds: float
    final_loss: float
    ok: bool
    reason: str | None = None
    losses: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing (fp32) elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def steps_for(tokens: int, tokens_per_step: int) -> int:
    """Optimiser steps a budget of ``tokens`` buys (at least one)."""
    return max(1, math.ceil(tokens / tokens_per_step))


def lm_loss(module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over targets that are not :data:`IGNORE`."""
    logits = module(inputs)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


def lr_factor(step: int, steps: int, config: TrainConfig) -> float:
    """Multiplier of ``config.lr`` at ``step`` (0-based): linear warmup, then cosine decay."""
    warmup = max(1, round(config.warmup_fraction * steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.min_lr_fraction + (1 - config.min_lr_fraction) * cosine


def make_optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on parameters with two or more dimensions only (not norms or biases)."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))


def train(
    module: nn.Module,
    batches: Iterator[Batch],
    steps: int,
    config: TrainConfig,
    loss_fn: LossFn = lm_loss,
    progress: bool = True,
    desc: str = "train",
) -> TrainStats:
    """Train ``module`` (already on its device) for ``steps`` batches drawn from ``batches``."""
    device = next(module.parameters()).device
    optimizer = make_optimizer(module, config)
    module.train()
    losses: list[float] = []
    tokens = 0
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not progress, leave=False)
    start = time.perf_counter()
    reason = None
    for step in range(steps):
        inputs, targets = next(batches)
        inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, steps, config)
        with autocast(device):
            loss = loss_fn(module, inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(module.parameters(), config.grad_clip)
        value = loss.item()
        if not (math.isfinite(value) and math.isfinite(grad_norm.item())):
            reason = (
                f"training diverged at step {step + 1} of {steps}: loss {value}, gradient norm {grad_norm.item()}; "
                f"lower the learning rate (was {config.lr:g})"
            )
            break
        optimizer.step()
        losses.append(value)
        tokens += inputs.numel()
        bar.update()
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{tokens / (time.perf_counter() - start):.0f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    bar.close()
    module.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    final = sum(tail) / len(tail) if tail and reason is None else math.nan
    stats = TrainStats(len(losses), tokens, seconds, final, reason is None, reason, losses)
    if reason is None:
        log.info("%s: %d steps, %d tokens in %.1f s (%.0f tokens/s), final loss %.4f",
                 desc, stats.steps, tokens, seconds, stats.tokens_per_s, final)
    else:
        log.warning("%s: %s", desc, reason)
    return stats
