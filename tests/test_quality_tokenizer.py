from lfm2_nas.quality.corpus import load_corpus
from lfm2_nas.quality.tokenizer import ByteTokenizer, get_tokenizer
from quality_helpers import write_corpus

import pytest


def test_byte_tokenizer_is_utf8_with_a_document_id():
    tok = ByteTokenizer()
    assert tok.encode("é!").tolist() == [0xC3, 0xA9, 0x21]
    assert (tok.vocab_size, tok.doc_token) == (257, 256)


def _add_word(path, word: str, times: int = 20) -> None:
    path.write_text(path.read_text() + " ".join([word] * times) + "\n")


def test_bpe_is_trained_on_the_training_split_cached_and_lossless(tmp_path):
    folder = write_corpus(tmp_path / "c")
    split = load_corpus(folder)
    _add_word(folder / f"{split.train[0].name}", "xanthoptera")  # a word only the training split has
    _add_word(folder / f"{split.validation[0].name}", "zyzzyvaquokka")  # and one only validation has
    corpus = load_corpus(folder)
    assert "zyzzyvaquokka" in corpus.validation[0].text and not any("zyzzyva" in d.text for d in corpus.train)
    tok = get_tokenizer("bpe-512", corpus, tmp_path / "cache")
    assert len(tok.encode(" xanthoptera")) == 1  # a repeated training word is learned whole ...
    assert len(tok.encode(" zyzzyvaquokka")) >= 6  # ... a repeated validation word is not: never seen
    cached = tmp_path / "cache" / "tokenizers" / f"{corpus.content_hash}-bpe-512.json"
    assert cached.exists() and 257 < tok.vocab_size <= 512 and tok.doc_token is not None  # stops early on a tiny corpus
    text = corpus.validation[0].text
    ids = tok.encode(text)
    assert tok.decode(ids.tolist()) == text and len(ids) < len(text.encode()) / 2  # merges compress
    again = get_tokenizer("bpe-512", corpus, tmp_path / "cache")  # loaded from the cache
    assert again.encode(text).tolist() == ids.tolist()


def test_unknown_or_too_small_tokenizer_names(tmp_path):
    corpus = load_corpus(write_corpus(tmp_path / "c", documents=2))
    with pytest.raises(ValueError, match="use 'byte' or 'bpe-N'"):
        get_tokenizer("wordpiece", corpus, tmp_path)
    with pytest.raises(ValueError, match="bpe-512 or more"):
        get_tokenizer("bpe-100", corpus, tmp_path)
