"""MAD-style synthetic tasks, generated in code (no downloads), seeded, with a held-out test split.

Each task turns a seed into ``(inputs, targets)`` integer arrays of shape ``(n, seq_len)``:
``targets[i, t]`` is the token the model must predict after reading ``inputs[i, :t+1]``, or
:data:`IGNORE` where nothing is scored. Accuracy is the fraction of scored positions whose argmax
prediction is right. Training and test sequences come from independent random streams
(``[seed, 0]`` and ``[seed, 1]``), so test sequences are held out; only memorization shares its fact
table (stream ``[seed, 2]``) between the two, because memorising that table is the task.

The tasks follow MAD (Poli et al. 2024, arXiv 2403.17844) and Zoology (Arora et al. 2023, arXiv
2312.04927), scaled down so that a proxy learns them in about a minute of CPU each:

* ``mqar``: multi-query associative recall. ``num_pairs`` key-value pairs, then every key again in
  a random order, each followed by its value; each value is scored. Keys and values come from
  disjoint vocabularies. The query section follows the pairs directly, so the distance between a
  query and its pair grows with ``num_pairs``: a stack of short convolutions (receptive field
  ``1 + layers * (kernel - 1)``) fails once the pairs no longer fit in it, attention does not.
* ``fuzzy_recall``: the same with keys and values that are motifs of 1 to ``max_motif`` tokens
  (prefix-free keys); every value token is scored.
* ``noisy_recall``: ``mqar`` with noise tokens from a separate vocabulary placed between pairs
  (``noise_fraction`` of the sequence).
* ``selective_copy``: ``num_tokens`` content tokens scattered in a region of blanks, then a
  separator and markers; the model must emit the content tokens in order, ignoring the blanks.
* ``compression``: a random sequence and a compress token; a small MLP decoder must rebuild every
  token from the model's final hidden state at that one position (MAD's setup).
* ``memorization``: ``num_pairs`` keys per sequence (no repeats within a sequence) drawn from a fixed
  table of ``num_facts`` key -> value facts; the value is scored, so only facts stored in the
  weights help.
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
class AssociativeRecall(Task):
    """Multi-query associative recall; with ``noise_fraction > 0``, noisy recall."""

    num_pairs: int = 8
    num_keys: int = 64
    num_values: int = 64
    noise_fraction: float = 0.0
    num_noise_tokens: int = 16
    name: str = "mqar"

    def __post_init__(self) -> None:
        if self.num_pairs < 1 or self.num_pairs > self.num_keys:
            raise ValueError(f"num_pairs must be in 1..num_keys ({self.num_keys}), got {self.num_pairs}")
        if not 0 <= self.noise_fraction < 1:
            raise ValueError(f"noise_fraction must be in [0, 1), got {self.noise_fraction}")

    @property
    def num_noise(self) -> int:
        """Noise tokens per sequence: ``noise_fraction`` of the total length."""
        body = 4 * self.num_pairs
        return round(self.noise_fraction * body / (1 - self.noise_fraction))

    @property
    def vocab_size(self) -> int:
        noise = self.num_noise_tokens if self.noise_fraction else 0
        return self.num_keys + self.num_values + noise

    @property
    def seq_len(self) -> int:
        return 4 * self.num_pairs + self.num_noise - 1

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Arrays:
        p = self.num_pairs
        keys = np.argsort(rng.random((n, self.num_keys)), axis=1)[:, :p]  # distinct keys per sequence
        values = self.num_keys + rng.integers(0, self.num_values, (n, p))
        order = np.argsort(rng.random((n, p)), axis=1)  # query order
        units = np.concatenate(  # (n, 2p, 2): the pairs, then the queries with their answers
            [np.stack([keys, values], -1), np.stack([np.take_along_axis(keys, order, 1),
                                                     np.take_along_axis(values, order, 1)], -1)], axis=1
        )
        scored = np.zeros((n, 2 * p, 2), dtype=bool)
        scored[:, p:, 0] = True  # the query key's next token is its value
        if self.num_noise:
            return self._with_noise(units, scored, rng)
        return _shift(units.reshape(n, -1), scored.reshape(n, -1))

    def _with_noise(self, units: np.ndarray, scored: np.ndarray, rng: np.random.Generator) -> Arrays:
        n, count = units.shape[0], units.shape[1]
        first_noise = self.num_keys + self.num_values
        seqs, marks = [], []
        for i in range(n):
            gaps = np.bincount(rng.integers(0, count + 1, self.num_noise), minlength=count + 1)  # noise per gap
            noise = first_noise + rng.integers(0, self.num_noise_tokens, self.num_noise)
            tokens, flags, used = [], [], 0
            for j in range(count + 1):
                tokens.extend(noise[used : used + gaps[j]])
                flags.extend([False] * gaps[j])
                used += gaps[j]
                if j < count:
                    tokens.extend(units[i, j])
                    flags.extend(scored[i, j])
            seqs.append(tokens)
            marks.append(flags)
        return _shift(np.array(seqs), np.array(marks))


@dataclass(frozen=True)
class FuzzyRecall(Task):
    """Associative recall where keys and values are motifs of 1..``max_motif`` tokens."""

    num_pairs: int = 6
    num_keys: int = 32
    num_values: int = 32
    max_motif: int = 3
    name: str = "fuzzy_recall"

    @property
    def vocab_size(self) -> int:
        return 1 + self.num_keys + self.num_values  # 0 pads the shorter sequences

    @property
    def seq_len(self) -> int:
        return 4 * self.num_pairs * self.max_motif - 1

    def sample(self, n: int, rng: np.random.Generator, seed: int) -> Arrays:
        length = self.seq_len + 1
        seqs = np.zeros((n, length), dtype=np.int64)
        marks = np.zeros((n, length), dtype=bool)
        for i in range(n):
            keys = self._prefix_free_keys(rng)
            values = [tuple(1 + self.num_keys + rng.integers(0, self.num_values, rng.integers(1, self.max_motif + 1)))
                      for _ in range(self.num_pairs)]
            tokens: list[int] = []
            flags: list[bool] = []
            for k, v in zip(keys, values):
                tokens += [*k, *v]
                flags += [False] * (len(k) + len(v))
            for j in rng.permutation(self.num_pairs):
                k, v = keys[j], values[j]
                tokens += [*k, *v]
                # scored: the last key token (-> first value token) and every value token but the last
                flags += [False] * (len(k) - 1) + [True] * len(v) + [False]
            seqs[i, : len(tokens)] = tokens
            marks[i, : len(flags)] = flags
        return _shift(seqs, marks)

    def _prefix_free_keys(self, rng: np.random.Generator) -> list[tuple[int, ...]]:
        keys: list[tuple[int, ...]] = []
        while len(keys) < self.num_pairs:
            key = tuple(int(t) for t in 1 + rng.integers(0, self.num_keys, rng.integers(1, self.max_motif + 1)))
            if all(key[: len(k)] != k and k[: len(key)] != key for k in keys):
                keys.append(key)
        return keys


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


def _shift(seqs: np.ndarray, scored: np.ndarray) -> Arrays:
    """Next-token ``(inputs, targets)`` from full sequences; ``scored[t]`` marks positions whose next
    token is scored."""
    inputs = seqs[:, :-1]
    targets = np.where(scored[:, :-1], seqs[:, 1:], IGNORE)
    return inputs.astype(np.int64), targets.astype(np.int64)


#: The default suite, in the order results are reported.
DEFAULT_TASKS: tuple[Task, ...] = (
    AssociativeRecall(),
    FuzzyRecall(),
    AssociativeRecall(noise_fraction=0.25, name="noisy_recall"),
    SelectiveCopy(),
    Compression(),
    Memorization(),
)


def task_names() -> list[str]:
    """Names of the default tasks."""
    return [t.name for t in DEFAULT_TASKS]
