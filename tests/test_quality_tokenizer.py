from lfm2_nas.quality.corpus import load_corpus
from lfm2_nas.quality.tokenizer import ByteTokenizer, get_tokenizer
from quality_helpers import write_corpus

import pytest


def test_byte_tokenizer_is_utf8_with_a_document_id():
    tok = ByteTokenizer()
    assert tok.encode("é!").tolist() == [0xC3, 0xA9, 0x21]
    assert (tok.vocab_size, tok.doc_token) == (257, 256)


def test_bpe_is_trained_on_the_training_split_cached_and_lossless(tmp_path):
    corpus = load_corpus(write_corpus(tmp_path / "c"))
    tok = get_tokenizer("bpe-512", corpus, tmp_path / "cache")
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
