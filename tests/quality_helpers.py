"""Small real-looking corpora and fast settings shared by the quality tests."""

from pathlib import Path

from lfm2_nas.quality.scaling import ScaleRule
from lfm2_nas.quality.text import TextConfig
from lfm2_nas.quality.train import TrainConfig

_WORDS = (
    "the union is strong and the nation grows while congress debates trade law treaty army navy revenue "
    "public credit commerce states citizens peace war duty liberty people government year report"
).split()

#: Text tier settings that train a 32-wide proxy for a few steps on a few KB (well under a second).
TINY_TEXT = TextConfig(tokens=2048, seq_len=32, val_bytes=1024, train=TrainConfig(batch_size=4), rule=ScaleRule(32, 16))


def write_corpus(folder: Path, documents: int = 12, words: int = 300) -> Path:
    """``documents`` text files of pseudo-English (seeded by the file index) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(documents):
        text = " ".join(_WORDS[(d * 7 + i * i) % len(_WORDS)] for i in range(words))
        (folder / f"doc{d:02d}.txt").write_text(f"Address {d}. [Applause]\n\n\n{text}.\n")
    return folder
