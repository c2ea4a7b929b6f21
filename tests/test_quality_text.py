import math

import pytest
import torch

from lfm2_nas.quality.corpus import load_corpus
from lfm2_nas.quality.text import TextConfig, bits_per_byte, prepare, text_quality
from lfm2_nas.quality.tokenizer import ByteTokenizer
from lfm2_nas.quality.train import TrainConfig
from lfm2_nas.registry import get_spec
from quality_helpers import TINY_TEXT, write_corpus


@pytest.fixture
def corpus(tmp_path):
    return load_corpus(write_corpus(tmp_path / "corpus"))


class Uniform(torch.nn.Module):
    """Equal logits over ``vocab`` ids: costs log2(vocab) bits per token."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, inputs):
        return torch.zeros(*inputs.shape, self.vocab)


def test_bits_per_byte_of_a_uniform_byte_model_is_log2_of_the_vocabulary(corpus, tmp_path):
    data = prepare(corpus, ByteTokenizer(), seq_len=32, val_bytes=1000, cache_dir=tmp_path)
    share = 1000 // len(corpus.validation)
    assert data.val_bytes == sum(min(share, d.num_bytes) for d in corpus.validation)
    assert bits_per_byte(Uniform(257), data, torch.device("cpu")) == pytest.approx(math.log2(257))


def test_text_tier_trains_and_scores_bits_per_byte_deterministically(corpus, tmp_path):
    spec = get_spec("lfm2-tiny")
    first = text_quality(spec, budget=1.0, seed=0, corpus=corpus, tokenizer="byte", config=TINY_TEXT, progress=False,
                         cache_dir=tmp_path)
    assert first.ok and first.metric == "val_bits_per_byte" and not first.higher_is_better
    assert 0 < first.score < math.log2(257) + 0.5
    assert first.tokens == 2048 and first.seconds > 0 and first.seed == 0
    assert first.details["corpus"]["content_hash"] == corpus.content_hash
    assert first.details["proxy"]["hidden_size"] == 32 and first.details["proxy"]["pattern"] == "CCAC"
    again = text_quality(spec, budget=1.0, seed=0, corpus=corpus, tokenizer="byte", config=TINY_TEXT, progress=False,
                         cache_dir=tmp_path)
    assert again.score == first.score
    other_seed = text_quality(spec, budget=1.0, seed=1, corpus=corpus, tokenizer="byte", config=TINY_TEXT,
                              progress=False, cache_dir=tmp_path)
    assert other_seed.score != first.score


def test_corpus_too_small_for_the_budget_says_how_far_to_lower_it(corpus, tmp_path):
    with pytest.raises(ValueError, match=r"corpus too small for budget 1000.*lower --budget to"):
        text_quality(get_spec("lfm2-tiny"), budget=1000, corpus=corpus, tokenizer="byte", config=TINY_TEXT,
                     progress=False, cache_dir=tmp_path)


def test_unscalable_spec_fails_before_any_text_is_read(tmp_path):
    with pytest.raises(ValueError, match="cannot scale"):
        text_quality(get_spec("lfm2-700m"), corpus=tmp_path / "missing", progress=False)


def test_diverging_training_is_a_failed_evaluation(corpus, tmp_path):
    config = TextConfig(tokens=2048, seq_len=32, val_bytes=1024, train=TrainConfig(batch_size=4, lr=1e30, warmup_fraction=0),
                        rule=TINY_TEXT.rule)
    result = text_quality(get_spec("lfm2-tiny"), corpus=corpus, tokenizer="byte", config=config, progress=False,
                          cache_dir=tmp_path)
    assert not result.ok and math.isnan(result.score) and "diverged" in result.reason
    assert result.to_dict()["score"] is None
