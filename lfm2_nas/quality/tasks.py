"""MAD-style synthetic tasks, generated in code (no downloads), seeded, with a held-out test split.

Each task turns a seed into ``(inputs, targets)`` integer arrays of shape ``(n, seq_len)``:
``targets[i, t]`` is the token the model must predict after reading ``inputs[i, :t+1]``, or
:data:`IGNORE` where nothing is scored. Accuracy is the fraction of scored positions whose argmax
prediction is right. Training and test sequences come from independent random streams
(``[seed, 0]`` and ``[seed, 1]``), so test sequences are held out; only memorization shares its fact
table (stream ``[seed, 2]``) between the two, because memorising that table is the task.

The suite follows MAD (Poli et al. 2024, arXiv 2403.17844), scaled down to stay cheap on a CPU:

* ``in_context_recall`` (MAD's multi-query associative recall): a stream of key-value pairs under a
  mapping drawn per sequence; every pair whose key occurred before is a query and its value is
  scored. Keys and values come from disjoint vocabularies.
* ``fuzzy_recall``: the same with keys and values that are motifs of 1 to ``max_motif`` tokens
  (prefix-free keys); every token of a recalled value is scored.
* ``noisy_recall``: in-context recall with noise tokens from a separate vocabulary placed between
  pairs (``noise_fraction`` of the sequence).
* ``selective_copy``: ``num_tokens`` content tokens scattered in a region of blanks, then a
  separator and markers; the model must emit the content tokens in order, ignoring the blanks.
* ``compression``: a random sequence and a compress token; a small MLP decoder must rebuild every
  token from the model's final hidden state at that one position (MAD's setup).
* ``memorization``: ``num_pairs`` keys per sequence (no repeats within a sequence) drawn from a fixed
  table of ``num_facts`` key -> value facts; the value is scored, so only facts stored in the
  weights help.

:class:`MQAR` is Zoology's form (Arora et al. 2023, arXiv 2312.04927), used for the sweep over the
number of pairs: all pairs first, then every key queried once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100

Arrays = tuple[np.ndarray, np.ndarray]


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    return np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])


@dataclass(frozen=True)
class Task:
    """Base: a task draws ``n`` sequences from a random stream; subclasses define the format."""

    name = "task"

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    @property
    def seq_len(self) -> int:
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Arrays:
        """``n`` sequences; ``seed`` identifies fixed task state (memorization's facts)."""
        raise NotImplementedError

    def split(self, n_train: int, n_test: int, seed: int) -> tuple[Arrays, Arrays]:
        """Train and held-out test sets from independent streams of ``seed``."""
        train_rng, test_rng = _streams(seed)
        return self.sample(n_train, train_rng, seed), self.sample(n_test, test_rng, seed)


@dataclass(frozen=True)
class InContextRecall(Task):
    """MAD's in-context recall (multi-query associative recall): a stream of ``num_pairs`` key-value
    pairs under a mapping drawn per sequence from ``num_keys`` keys to ``num_values`` values; every
    pair whose key occurred earlier in the sequence is a query and its value is scored. With
    ``noise_fraction > 0``, noise tokens from their own vocabulary sit between pairs (noisy recall)."""

    num_keys: int = 16
    num_values: int = 16
    num_pairs: int = 32
    noise_fraction: float = 0.0
    num_noise_tokens: int = 8
    name: str = "in_context_recall"

    def __post_init__(self) -> None:
        if not 0 <= self.noise_fraction < 1:
            raise ValueError(f"noise_fraction must be in [0, 1), got {self.noise_fraction}")

    @property
    def num_noise(self) -> int:
        """Noise tokens per sequence: ``noise_fraction`` of the total length."""
        return round(self.noise_fraction * 2 * self.num_pairs / (1 - self.noise_fraction))

    @property
    def vocab_size(self) -> int:
        return self.num_keys + self.num_values + (self.num_noise_tokens if self.num_noise else 0)

    @property
    def seq_len(self) -> int:
        return 2 * self.num_pairs + self.num_noise - 1

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Arrays:
        mapping = self.num_keys + rng.integers(0, self.num_values, (n, self.num_keys))  # key -> value, per sequence
        keys = rng.integers(0, self.num_keys, (n, self.num_pairs))
        units = np.stack([keys, np.take_along_axis(mapping, keys, 1)], -1)  # (n, pairs, 2)
        scored = np.zeros(units.shape, dtype=bool)
        scored[..., 0] = _seen_before(keys)  # a repeated key's next token is its value
        if not self.num_noise:
            return _shift(units.reshape(n, 2 * self.num_pairs), scored.reshape(n, 2 * self.num_pairs))
        noise = self.num_keys + self.num_values + rng.integers(0, self.num_noise_tokens, (n, self.num_noise))
        return _interleave_noise(units, scored, noise, rng)


@dataclass(frozen=True)
class FuzzyRecall(Task):
    """In-context recall where keys and values are motifs of 1..``max_motif`` tokens (prefix-free
    keys, per-sequence mapping); every token of a repeated key's value is scored."""

    num_keys: int = 8
    num_pairs: int = 16
    key_vocab: int = 16
    value_vocab: int = 16
    max_motif: int = 3
    name: str = "fuzzy_recall"

    @property
    def vocab_size(self) -> int:
        return 1 + self.key_vocab + self.value_vocab  # 0 pads the shorter sequences

    @property
    def seq_len(self) -> int:
        return 2 * self.num_pairs * self.max_motif - 1

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Arrays:
        length = self.seq_len + 1
        seqs = np.zeros((n, length), dtype=np.int64)
        marks = np.zeros((n, length), dtype=bool)
        for i in range(n):
            keys = self._prefix_free_keys(rng)
            values = [self._motif(rng, 1 + self.key_vocab, self.value_vocab) for _ in range(self.num_keys)]
            tokens: list[int] = []
            flags: list[bool] = []
            seen: set[int] = set()
            for j in rng.integers(0, self.num_keys, self.num_pairs):
                k, v = keys[j], values[j]
                tokens += [*k, *v]
                if j in seen:  # scored: the last key token (-> first value token), every value token but the last
                    flags += [False] * (len(k) - 1) + [True] * len(v) + [False]
                else:
                    flags += [False] * (len(k) + len(v))
                seen.add(j)
            seqs[i, : len(tokens)] = tokens
            marks[i, : len(flags)] = flags
        return _shift(seqs, marks)

    def _motif(self, rng: np.random.Generator, first: int, vocab: int) -> tuple[int, ...]:
        return tuple(int(t) for t in first + rng.integers(0, vocab, rng.integers(1, self.max_motif + 1)))

    def _prefix_free_keys(self, rng: np.random.Generator) -> list[tuple[int, ...]]:
        keys: list[tuple[int, ...]] = []
        while len(keys) < self.num_keys:
            key = self._motif(rng, 1, self.key_vocab)
            if all(key[: len(k)] != k and k[: len(key)] != key for k in keys):
                keys.append(key)
        return keys


@dataclass(frozen=True)
class MQAR(Task):
    """Zoology's multi-query associative recall: ``num_pairs`` key-value pairs (distinct keys), then
    every key again in a random order, each followed by its value; the values after the queries are
    scored. The query section follows the pairs directly, so the distance between a query and its
    pair grows with ``num_pairs``: a stack of short convolutions (receptive field
    ``1 + layers * (kernel - 1)`` tokens) fails once the pairs no longer fit in it; attention does not."""

    num_pairs: int = 8
    num_keys: int = 64
    num_values: int = 64
    name: str = "mqar"

    def __post_init__(self) -> None:
        if not 1 <= self.num_pairs <= self.num_keys:
            raise ValueError(f"num_pairs must be in 1..num_keys ({self.num_keys}), got {self.num_pairs}")

    @property
    def vocab_size(self) -> int:
        return self.num_keys + self.num_values

    @property
    def seq_len(self) -> int:
        return 4 * self.num_pairs - 1

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Arrays:
        p = self.num_pairs
        keys = np.argsort(rng.random((n, self.num_keys)), axis=1)[:, :p]  # distinct keys per sequence
        values = self.num_keys + rng.integers(0, self.num_values, (n, p))
        order = np.argsort(rng.random((n, p)), axis=1)  # query order
        queries = np.stack([np.take_along_axis(keys, order, 1), np.take_along_axis(values, order, 1)], -1)
        seqs = np.concatenate([np.stack([keys, values], -1), queries], axis=1).reshape(n, -1)
        scored = np.zeros_like(seqs, dtype=bool)
        scored[:, 2 * p :: 2] = True  # each query key's next token is its value
        return _shift(seqs, scored)


@dataclass(frozen=True)
class SelectiveCopy(Task):
    """Copy the ``num_tokens`` content tokens of a blank-filled region, in order."""

    region_len: int = 48
    num_tokens: int = 8
    num_content: int = 16
    name: str = "selective_copy"

    @property
    def vocab_size(self) -> int:
        return self.num_content + 3  # content, blank, separator, marker

    @property
    def seq_len(self) -> int:
        return self.region_len + self.num_tokens

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Arrays:
        blank, sep, mark = self.num_content, self.num_content + 1, self.num_content + 2
        content = rng.integers(0, self.num_content, (n, self.num_tokens))
        slots = np.sort(np.argsort(rng.random((n, self.region_len)), axis=1)[:, : self.num_tokens], axis=1)
        region = np.full((n, self.region_len), blank)
        np.put_along_axis(region, slots, content, axis=1)
        tail = np.full((n, self.num_tokens), mark)
        tail[:, 0] = sep
        inputs = np.concatenate([region, tail], axis=1)
        targets = np.full_like(inputs, IGNORE)
        targets[:, self.region_len :] = content
        return inputs, targets


@dataclass(frozen=True)
class Compression(Task):
    """Rebuild a random sequence from the hidden state at one final compress token.

    ``targets`` holds the ``length`` tokens to rebuild (not next tokens): the task's objective
    (:func:`lfm2_nas.quality.synthetic` wraps the model with a decoder) maps the last position's
    hidden state to ``length`` predictions.
    """

    length: int = 16
    num_content: int = 16
    name: str = "compression"

    @property
    def vocab_size(self) -> int:
        return self.num_content + 1

    @property
    def seq_len(self) -> int:
        return self.length + 1

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Arrays:
        content = rng.integers(0, self.num_content, (n, self.length))
        inputs = np.concatenate([content, np.full((n, 1), self.num_content)], axis=1)
        return inputs, content


@dataclass(frozen=True)
class Memorization(Task):
    """Recall values of a fixed ``num_facts``-entry key -> value table, ``num_pairs`` per sequence."""

    num_facts: int = 256
    num_values: int = 64
    num_pairs: int = 16
    name: str = "memorization"

    @property
    def vocab_size(self) -> int:
        return self.num_facts + self.num_values

    @property
    def seq_len(self) -> int:
        return 2 * self.num_pairs - 1

    def facts(self, seed: int) -> np.ndarray:
        """The table: ``facts(seed)[key]`` is the key's value token."""
        return self.num_facts + np.random.default_rng([seed, 2]).integers(0, self.num_values, self.num_facts)

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Arrays:
        table = self.facts(seed)
        keys = np.argsort(rng.random((n, self.num_facts)), axis=1)[:, : self.num_pairs]
        pairs = np.stack([keys, table[keys]], -1).reshape(n, -1)
        scored = np.zeros_like(pairs, dtype=bool)
        scored[:, 0::2] = True
        return _shift(pairs, scored)


def _seen_before(keys: np.ndarray) -> np.ndarray:
    """``out[i, j]``: ``keys[i, j]`` occurs in ``keys[i, :j]``."""
    earlier = keys[:, None, :] == keys[:, :, None]  # (n, j, j'): key j equals key j'
    return np.tril(earlier, k=-1).any(-1)


def _interleave_noise(units: np.ndarray, scored: np.ndarray, noise: np.ndarray, rng: np.random.Generator) -> Arrays:
    """Place each sequence's ``noise`` tokens in random gaps between its ``units`` (pairs), keeping order."""
    n, count, width = units.shape
    total = count * width + noise.shape[1]
    seqs = np.empty((n, total), dtype=np.int64)
    marks = np.zeros((n, total), dtype=bool)
    for i in range(n):
        gaps = np.sort(rng.integers(0, count + 1, noise.shape[1]))  # noise token t sits before unit gaps[t]
        starts = np.arange(count) * width + np.searchsorted(gaps, np.arange(count), side="right")
        positions = (starts[:, None] + np.arange(width)).ravel()
        seqs[i, positions] = units[i].ravel()
        marks[i, positions] = scored[i].ravel()
        seqs[i, np.setdiff1d(np.arange(total), positions)] = noise[i]
    return _shift(seqs, marks)


def _shift(seqs: np.ndarray, scored: np.ndarray) -> Arrays:
    """Next-token ``(inputs, targets)`` from full sequences; ``scored[t]`` marks positions whose next
    token is scored."""
    inputs = seqs[:, :-1]
    targets = np.where(scored[:, :-1], seqs[:, 1:], IGNORE)
    return inputs.astype(np.int64), targets.astype(np.int64)


#: The default suite, in the order results are reported.
DEFAULT_TASKS: tuple[Task, ...] = (
    InContextRecall(),
    FuzzyRecall(),
    InContextRecall(noise_fraction=0.2, name="noisy_recall"),
    SelectiveCopy(),
    Compression(),
    Memorization(),
)
