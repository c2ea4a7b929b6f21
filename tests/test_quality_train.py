import itertools
import math

import pytest
import torch

from lfm2_nas.model import build_model
from lfm2_nas.quality.train import TrainConfig, lr_factor, steps_for, train
from lfm2_nas.registry import get_spec


def _batches(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 8, (64, 4, 17), generator=generator)  # a small vocabulary: learnable unigram stats
    return ((x[:, :-1], x[:, 1:]) for x in itertools.cycle(data))


def test_schedule_warms_up_linearly_then_decays_along_a_cosine():
    config = TrainConfig(warmup_fraction=0.1, min_lr_fraction=0.1)
    factors = [lr_factor(s, 100, config) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)
    assert lr_factor(55, 100, config) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_budget_buys_whole_steps():
    assert steps_for(1000, 256) == 4 and steps_for(1, 256) == 1


def test_training_lowers_the_loss_and_is_deterministic_on_cpu():
    spec = get_spec("lfm2-tiny")
    config = TrainConfig(batch_size=4, lr=1e-2)
    first = train(build_model(spec, seed=1), _batches(), 12, config, progress=False)
    second = train(build_model(spec, seed=1), _batches(), 12, config, progress=False)
    assert first.ok and first.steps == 12 and first.tokens == 12 * 4 * 16
    assert first.losses == second.losses
    assert first.losses[-1] < first.losses[0] - 1.0
    assert first.tokens_per_s > 0


def test_divergence_is_a_failed_run_with_the_reason_not_a_crash():
    stats = train(build_model(get_spec("lfm2-tiny")), _batches(), 6, TrainConfig(batch_size=4, lr=1e30, warmup_fraction=0),
                  progress=False)
    assert not stats.ok and math.isnan(stats.final_loss)
    assert "diverged at step" in stats.reason and "lower the learning rate" in stats.reason
