"""Synthetic tier: train the proxy of a layout on each MAD-style task and score held-out accuracy.

Each task gets a fresh proxy (same seed), ``tokens_per_task * budget`` training tokens and the same
optimiser settings (MAD uses one small sweep; here one setting, to stay cheap). The score is the
mean held-out accuracy over the tasks (higher is better); per-task accuracies are in ``details``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lfm2_nas.model import LFM2Model, build_model
from lfm2_nas.quality.result import QualityResult
from lfm2_nas.quality.scaling import DEFAULT_RULE, ScaleRule, proxy_spec
from lfm2_nas.quality.tasks import DEFAULT_TASKS, IGNORE, Compression, Task
from lfm2_nas.quality.train import Batch, TrainConfig, autocast, default_device, steps_for, train
from lfm2_nas.spec import ModelSpec

log = logging.getLogger(__name__)

METRIC = "mean_accuracy"


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the synthetic tier. At ``budget=1`` each task trains on ``tokens_per_task`` input
    tokens; accuracy is measured on ``test_sequences`` held-out sequences per task."""

    tasks: tuple[Task, ...] = DEFAULT_TASKS
    tokens_per_task: int = 98_304
    test_sequences: int = 256
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=32, lr=3e-3))
    rule: ScaleRule = DEFAULT_RULE


@dataclass(frozen=True)
class TaskScore:
    """One task's outcome."""

    task: str
    accuracy: float
    tokens: int
    seconds: float
    ok: bool
    reason: str | None = None


class CompressionProbe(nn.Module):
    """The model plus MAD's compression decoder: position embeddings added to the final hidden state
    at the last (compress) position, then a two-layer MLP to the vocabulary; output ``(B, L, V)``."""

    def __init__(self, model: LFM2Model, length: int, vocab: int) -> None:
        super().__init__()
        h = model.spec.hidden_size
        device = model.head_weight.device
        self.model = model
        self.positions = nn.Parameter(0.02 * torch.randn(length, h, device=device))
        self.decoder = nn.Sequential(nn.Linear(h, 2 * h), nn.GELU(), nn.Linear(2 * h, vocab)).to(device)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        hook = self.model.model.embedding_norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            self.model(inputs, last_only=True)  # the final norm runs on the last position only: (B, 1, h)
        finally:
            hook.remove()
        return self.decoder(captured[0] + self.positions)  # (B, 1, h) + (L, h) -> (B, L, h) -> (B, L, V)


def synthetic_quality(
    spec: ModelSpec,
    budget: float = 1.0,
    seed: int = 0,
    config: SyntheticConfig | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> QualityResult:
    """Mean held-out accuracy of ``spec``'s proxy over the synthetic tasks (see module docstring)."""
    config = config or SyntheticConfig()
    if not budget > 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    device = torch.device(device) if device is not None else default_device()
    start = time.perf_counter()
    scores = [run_task(spec, task, budget, seed, config, device, progress) for task in config.tasks]
    seconds = time.perf_counter() - start
    tokens = sum(s.tokens for s in scores)
    details = {
        "tasks": {s.task: s.accuracy for s in scores},
        "task_seconds": {s.task: round(s.seconds, 2) for s in scores},
        "proxy": proxy_spec(spec, config.tasks[0].vocab_size, config.rule).to_dict(),
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "device": device.type,
    }
    failed = [s for s in scores if not s.ok]
    if failed:
        reason = "; ".join(f"{s.task}: {s.reason}" for s in failed)
        return QualityResult.failed(METRIC, True, seed, reason, tokens, seconds, details)
    mean = float(np.mean([s.accuracy for s in scores]))
    return QualityResult(mean, METRIC, True, tokens, seconds, seed, details=details)


def run_task(
    spec: ModelSpec,
    task: Task,
    budget: float,
    seed: int,
    config: SyntheticConfig,
    device: torch.device,
    progress: bool = True,
) -> TaskScore:
    """Train a fresh proxy of ``spec`` on ``task`` and score it on the held-out split."""
    start = time.perf_counter()
    proxy = proxy_spec(spec, task.vocab_size, config.rule)
    batch = config.train.batch_size
    steps = steps_for(round(budget * config.tokens_per_task), batch * task.seq_len)
    train_set, test_set = task.split(steps * batch, config.test_sequences, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = _objective(build_model(proxy, device=device, seed=seed), task)
    stats = train(module, _batches(train_set, batch), steps, config.train, progress=progress, desc=task.name)
    accuracy = accuracy_on(module, test_set, device) if stats.ok else float("nan")
    seconds = time.perf_counter() - start
    log.info("%s %s: accuracy %.3f (%d tokens, %.1f s)", spec.pattern, task.name, accuracy, stats.tokens, seconds)
    return TaskScore(task.name, accuracy, stats.tokens, seconds, stats.ok, stats.reason)


def _objective(model: LFM2Model, task: Task) -> nn.Module:
    """The module trained and scored: the model itself, or the model with a compression decoder."""
    if isinstance(task, Compression):
        return CompressionProbe(model, task.length, task.vocab_size)
    return model


def _batches(data: tuple[np.ndarray, np.ndarray], batch: int) -> Iterator[Batch]:
    inputs, targets = (torch.from_numpy(a) for a in data)
    for i in range(0, len(inputs), batch):
        yield inputs[i : i + batch], targets[i : i + batch]


@torch.no_grad()
def accuracy_on(module: nn.Module, data: tuple[np.ndarray, np.ndarray], device: torch.device, batch: int = 128) -> float:
    """Fraction of scored positions (targets not :data:`IGNORE`) whose argmax prediction is right."""
    module.eval()
    correct = total = 0
    for inputs, targets in _batches(data, batch):
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast(device):
            predictions = module(inputs).argmax(-1)
        scored = targets != IGNORE
        correct += int((predictions[scored] == targets[scored]).sum())
        total += int(scored.sum())
    return correct / total
