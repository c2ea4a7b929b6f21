"""Tokenizers for the real-text tier: raw bytes, or a byte-level BPE trained locally.

Both map text to integer ids and reserve one id, ``doc_token``, that starts every document. Bits
per byte is computed from the UTF-8 bytes of the text, never from token counts, so scores are
comparable across tokenizers. A BPE is trained with the ``tokenizers`` library on the corpus's
TRAINING split only and cached as JSON under ``cache_dir`` by (corpus hash, vocabulary size); a
second run loads it in milliseconds.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfm2_nas.io import atomic_write_text
from lfm2_nas.quality.corpus import Corpus

DOC = "<|doc|>"
DEFAULT_TOKENIZER = "bpe-4096"


def default_cache_dir() -> Path:
    """``$LFM2_NAS_CACHE`` or ``~/.cache/lfm2-nas``."""
    return Path(os.environ.get("LFM2_NAS_CACHE") or Path.home() / ".cache" / "lfm2-nas")


@dataclass(frozen=True)
class ByteTokenizer:
    """UTF-8 bytes as ids 0..255; id 256 starts a document."""

    name: str = "byte"
    vocab_size: int = 257
    doc_token: int = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return [self.encode(t) for t in texts]


class BPETokenizer:
    """A byte-level BPE (``tokenizers``) with ``<|doc|>`` as its document token."""

    def __init__(self, tokenizer, name: str) -> None:  # tokenizer: tokenizers.Tokenizer
        self._tokenizer = tokenizer
        self.name = name
        self.vocab_size = tokenizer.get_vocab_size()
        self.doc_token = tokenizer.token_to_id(DOC)

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tokenizer.encode(text).ids, dtype=np.int64)

    def encode_documents(self, texts: list[str]) -> list[np.ndarray]:
        return [np.asarray(e.ids, dtype=np.int64) for e in self._tokenizer.encode_batch(texts)]

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids)


Tokenizer = ByteTokenizer | BPETokenizer


def get_tokenizer(kind: str, corpus: Corpus, cache_dir: Path | None = None) -> Tokenizer:
    """``"byte"``, or ``"bpe-N"`` (``"bpe"`` means ``bpe-4096``): a BPE of N ids for ``corpus``."""
    if kind == "byte":
        return ByteTokenizer()
    match = re.fullmatch(r"bpe(?:-(\d+))?", kind)
    if not match:
        raise ValueError(f"unknown tokenizer {kind!r}: use 'byte' or 'bpe-N' (e.g. bpe-4096)")
    vocab = int(match.group(1) or 4096)
    if vocab < 512:
        raise ValueError(f"a byte-level BPE needs more than the 256 byte ids plus merges: use bpe-512 or more, not {kind}")
    return train_bpe(corpus, vocab, cache_dir or default_cache_dir())


def train_bpe(corpus: Corpus, vocab_size: int, cache_dir: Path) -> BPETokenizer:
    """Train (or load from ``cache_dir``) a byte-level BPE of ``vocab_size`` ids on ``corpus.train``."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    name = f"bpe-{vocab_size}"
    path = cache_dir / "tokenizers" / f"{corpus.content_hash}-{name}.json"
    if path.exists():
        return BPETokenizer(HFTokenizer.from_file(str(path)), name)
    tokenizer = HFTokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[DOC],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((d.text for d in corpus.train), trainer=trainer, length=len(corpus.train))
    atomic_write_text(path, tokenizer.to_str())  # a concurrent reader sees no file or the whole file
    return BPETokenizer(tokenizer, name)
