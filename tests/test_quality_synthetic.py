import math

import torch

from lfm2_nas.model import build_model
from lfm2_nas.quality.scaling import ScaleRule, proxy_spec
from lfm2_nas.quality.synthetic import CompressionProbe, SyntheticConfig, synthetic_quality
from lfm2_nas.quality.tasks import Compression, InContextRecall, Memorization
from lfm2_nas.quality.train import TrainConfig
from lfm2_nas.registry import get_spec

TINY = SyntheticConfig(
    tasks=(InContextRecall(num_pairs=8), Compression(length=4), Memorization(num_facts=8, num_values=4, num_pairs=4)),
    tokens_per_task=4096,
    test_sequences=32,
    train=TrainConfig(batch_size=8, lr=1e-2),
    rule=ScaleRule(32, 16),
)


def test_synthetic_tier_reports_each_task_and_the_mean():
    result = synthetic_quality(get_spec("lfm2-tiny"), budget=1.0, seed=0, config=TINY, progress=False)
    tasks = result.details["tasks"]
    assert result.ok and result.metric == "mean_accuracy" and result.higher_is_better
    assert list(tasks) == ["in_context_recall", "compression", "memorization"]
    assert all(0 <= a <= 1 for a in tasks.values())
    assert result.score == sum(tasks.values()) / 3
    assert tasks["memorization"] > 0.6  # 8 facts over 4 values: chance is 0.25, the table is learnt
    assert result.tokens > 3 * 4000 and result.seconds > 0
    again = synthetic_quality(get_spec("lfm2-tiny"), budget=1.0, seed=0, config=TINY, progress=False)
    assert again.score == result.score


def test_compression_probe_decodes_every_position_from_the_last_hidden_state():
    task = Compression(length=5)
    model = build_model(proxy_spec(get_spec("lfm2-tiny"), task.vocab_size, ScaleRule(32, 16)))
    probe = CompressionProbe(model, task.length, task.vocab_size)
    inputs = torch.randint(0, task.vocab_size, (3, task.seq_len))
    assert probe(inputs).shape == (3, 5, task.vocab_size)
    changed = inputs.clone()
    changed[:, 0] = (changed[:, 0] + 1) % task.num_content
    assert not torch.equal(probe(inputs), probe(changed))  # the first token reaches the last position


def test_a_diverging_task_fails_the_evaluation_with_its_reason():
    config = SyntheticConfig(tasks=TINY.tasks[:1], tokens_per_task=1024, test_sequences=8,
                             train=TrainConfig(batch_size=8, lr=1e30, warmup_fraction=0), rule=TINY.rule)
    result = synthetic_quality(get_spec("lfm2-tiny"), config=config, progress=False)
    assert not result.ok and math.isnan(result.score) and result.reason.startswith("in_context_recall: training diverged")
