"""Weights in one huge-page buffer: same values, one copy, still an ordinary trainable, savable model."""

import sys

import pytest
import torch
from conftest import randomize_

from lfm2_nas import hugepages
from lfm2_nas.checkpoint import load_pretrained, save_pretrained
from lfm2_nas.model import build_model
from lfm2_nas.spec import ModelSpec

SPEC = ModelSpec.from_pattern(
    "CACA", vocab_size=300, hidden_size=64, num_heads=4, num_kv_heads=2, ff_dim=96, tie_embeddings=False
)
PROMPT = torch.tensor([[1, 5, 9, 2, 200]])
pytestmark = pytest.mark.skipif(not hugepages.hugepages_enabled(), reason="needs Linux MADV_HUGEPAGE")


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(hugepages, "MIN_BYTES", 0)  # so a test-sized model takes the huge-page path


def _storages(model) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in model.parameters()}


def test_parameters_are_views_of_one_aligned_buffer(small_threshold):
    model = build_model(SPEC)
    assert len(_storages(model)) == 1
    assert min(p.data_ptr() for p in model.parameters()) % hugepages.HUGE_PAGE_BYTES == 0
    assert all(p.data_ptr() % 64 == 0 and p.is_leaf for p in model.parameters())
    assert hugepages.huge_page_bytes(model.parameters()) is not None


def test_same_weights_and_logits_as_ordinary_storage(small_threshold, monkeypatch):
    huge = build_model(SPEC, seed=3)
    monkeypatch.setenv("LFM2_NAS_HUGEPAGES", "0")
    ordinary = build_model(SPEC, seed=3)
    assert len(_storages(ordinary)) == len(list(ordinary.parameters()))
    for (name, a), (_, b) in zip(huge.state_dict().items(), ordinary.state_dict().items()):
        assert torch.equal(a, b), name
    with torch.inference_mode():
        assert torch.equal(huge(PROMPT), ordinary(PROMPT))


def test_small_models_keep_ordinary_storage():
    model = build_model(SPEC)  # far below MIN_BYTES
    assert len(_storages(model)) == len(list(model.parameters()))


def test_save_load_and_train_with_shared_buffer(small_threshold, tmp_path):
    model = randomize_(build_model(SPEC), 1)
    save_pretrained(model, tmp_path)  # safetensors accepts non-overlapping views of one buffer
    loaded = load_pretrained(tmp_path)
    assert len(_storages(loaded)) == 1
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    loaded.train()
    optimizer = torch.optim.AdamW(loaded.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in loaded.named_parameters()}
    loss = torch.nn.functional.cross_entropy(loaded(PROMPT[:, :-1])[0], PROMPT[0, 1:])
    loss.backward()
    optimizer.step()
    changed = [n for n, p in loaded.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)  # every weight trained, none clobbered a neighbour's values


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/smaps")
def test_huge_page_bytes_counts_each_mapping_once(small_threshold):
    model = build_model(SPEC)
    once = hugepages.huge_page_bytes([model.head_weight])
    assert hugepages.huge_page_bytes(model.parameters()) == once


def test_an_existing_model_moves_into_one_buffer_with_ties_and_outputs_kept(monkeypatch):
    """move_to_huge_pages (used for the reference in benchmarks/decode_speed.py): same logits, one
    buffer, a tied head still tied."""
    monkeypatch.setenv("LFM2_NAS_HUGEPAGES", "0")
    from dataclasses import replace

    model = build_model(replace(SPEC, tie_embeddings=True), seed=3)
    with torch.inference_mode():
        before = model(PROMPT)
    assert len(_storages(model)) > 1
    monkeypatch.delenv("LFM2_NAS_HUGEPAGES")
    hugepages.move_to_huge_pages(model)
    assert len(_storages(model)) == 1 and min(p.data_ptr() for p in model.parameters()) % hugepages.HUGE_PAGE_BYTES == 0
    assert model.head_weight is model.model.embed_tokens.weight
    with torch.inference_mode():
        assert torch.equal(model(PROMPT), before)
