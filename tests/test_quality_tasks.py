import numpy as np
import pytest

from lfm2_nas.quality.tasks import (
    DEFAULT_TASKS,
    IGNORE,
    MQAR,
    Compression,
    FuzzyRecall,
    InContextRecall,
    Memorization,
    SelectiveCopy,
)


@pytest.mark.parametrize("task", DEFAULT_TASKS + (MQAR(),), ids=lambda t: t.name)
def test_shapes_vocab_seeding_and_held_out_split(task):
    (x, y), (xt, yt) = task.split(16, 8, seed=3)
    assert x.shape[1] == task.seq_len and x.shape == (16, task.seq_len) and xt.shape[0] == 8
    assert x.min() >= 0 and x.max() < task.vocab_size
    scored = y[y != IGNORE]
    assert scored.size and scored.min() >= 0 and scored.max() < task.vocab_size
    again = task.split(16, 8, seed=3)
    assert np.array_equal(again[0][0], x) and np.array_equal(again[1][1], yt)  # seeded
    assert not np.array_equal(task.split(16, 8, seed=4)[0][0], x)
    train_rows = {r.tobytes() for r in x}
    assert not any(r.tobytes() in train_rows for r in xt)  # test sequences are held out


def _recall_oracle(x: np.ndarray, y: np.ndarray) -> float:
    """Answer every scored position by finding the query key's previous occurrence in the context."""
    right = total = 0
    for row, targets in zip(x, y):
        for t in np.flatnonzero(targets != IGNORE):
            earlier = np.flatnonzero(row[:t] == row[t])
            right += int(row[earlier[-1] + 1] == targets[t])
            total += 1
    return right / total


@pytest.mark.parametrize("task", [InContextRecall(), InContextRecall(noise_fraction=0.2), MQAR(num_pairs=12)])
def test_recall_targets_are_exactly_what_the_context_says(task):
    assert _recall_oracle(*task.split(32, 1, seed=0)[0]) == 1.0


def test_noisy_recall_holds_noise_between_pairs():
    task = InContextRecall(noise_fraction=0.2)
    (x, _), _ = task.split(8, 1, seed=0)
    noise = x >= task.num_keys + task.num_values
    assert noise.sum(1).max() <= task.num_noise and noise.sum() > 0


def test_fuzzy_recall_values_follow_keys_and_are_in_the_value_vocabulary():
    task = FuzzyRecall()
    (x, y), _ = task.split(16, 1, seed=0)
    scored = y[y != IGNORE]
    assert scored.min() > task.key_vocab  # only value tokens are ever scored


def test_selective_copy_targets_are_the_content_in_order():
    task = SelectiveCopy()
    (x, y), _ = task.split(4, 1, seed=0)
    for row, targets in zip(x, y):
        content = row[: task.region_len][row[: task.region_len] < task.num_content]
        assert np.array_equal(targets[task.region_len :], content)


def test_compression_targets_are_the_sequence_itself():
    task = Compression()
    (x, y), _ = task.split(4, 1, seed=0)
    assert np.array_equal(x[:, :-1], y) and (x[:, -1] == task.num_content).all()


def test_memorization_uses_one_fact_table_for_train_and_test():
    task = Memorization()
    (x, y), (xt, yt) = task.split(32, 32, seed=1)
    table = task.facts(1)
    for inputs, targets in ((x, y), (xt, yt)):
        mask = targets != IGNORE
        assert np.array_equal(table[inputs[mask]], targets[mask])
