"""Text recipe v1 (shared/corpora/README.md) and the bundled corpus: tokens, vocabulary,
splits, and the README's numbers reproduced exactly."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from retgen_ref.lm import (EOS, EOS_TOKEN, UNK, UNK_TOKEN, Corpus, Document, Vocabulary,
                           clean, load_corpus, read_documents, split_documents, tokenize)

RAW_AUSTEN = Path("/work/shared/corpora/austen")


@pytest.fixture(scope="module")
def austen() -> Corpus:
    return load_corpus("austen")


# --- the bundled corpus -------------------------------------------------------------

def test_austen_numbers_from_the_readme(austen):
    assert austen.name == "austen"
    assert len(austen.vocab) == 9_264
    assert (len(austen.train), len(austen.valid), len(austen.test)) == (785_223, 41_128, 43_000)
    assert round(100 * austen.oov_rate("test"), 1) == 1.1
    for name in ("train", "valid", "test"):
        stream = austen.split(name)
        assert stream.dtype == np.int32 and stream.flags.c_contiguous
        assert stream[-1] == EOS
        assert 0 <= stream.min() and stream.max() < len(austen.vocab)


def test_austen_vocabulary_is_ordered_by_training_count(austen):
    assert austen.vocab.tokens[:6] == [UNK_TOKEN, EOS_TOKEN, ",", ".", "the", "to"]
    counts = np.bincount(austen.train, minlength=len(austen.vocab))
    assert counts[UNK] == 4_458  # the training hapaxes: each occurs once, so maps to <unk>
    assert counts[2:].min() >= 2
    keys = [(-counts[i], austen.vocab.tokens[i]) for i in range(2, len(austen.vocab))]
    assert keys == sorted(keys)


def test_austen_documents_and_paragraphs(austen):
    documents = read_documents("austen")
    assert [d.name for d in documents] == [
        "0000_sensesensibility", "0001_prideprejudice", "0002_mansfieldpark", "0003_emma",
        "0004_northangerabbey", "0005_persuasion"]
    assert documents[0].paragraphs[:3] == ["SENSE AND SENSIBILITY", "by Jane Austen", "(1811)"]
    n_paragraphs = sum(len(d.paragraphs) for d in documents)
    assert n_paragraphs == 10_298
    paragraphs = {s: austen.paragraphs(s) for s in ("train", "valid", "test")}
    assert sum(map(len, paragraphs.values())) == n_paragraphs
    rebuilt = np.concatenate([np.append(p, EOS) for p in paragraphs["valid"]])
    np.testing.assert_array_equal(rebuilt, austen.valid)
    assert austen.vocab.decode(paragraphs["train"][0]) == ["sense", "and", "sensibility"]


@pytest.mark.skipif(not RAW_AUSTEN.is_dir(), reason="the raw corpus is not on this machine")
def test_bundled_files_match_the_raw_corpus(austen):
    raw = load_corpus(RAW_AUSTEN)
    assert raw.vocab == austen.vocab
    for name in ("train", "valid", "test"):
        np.testing.assert_array_equal(raw.split(name), austen.split(name))


def test_unknown_split_name(austen):
    with pytest.raises(ValueError, match="unknown split 'dev'.*'train', 'valid', 'test'"):
        austen.split("dev")
    with pytest.raises(ValueError, match="unknown split"):
        austen.paragraphs("training")


# --- steps 1 and 2: cleaning and tokens ---------------------------------------------

@pytest.mark.parametrize("text, tokens", [
    ("Don't", ["don't"]),
    ("rock'n'roll dogs' 'quoted'", ["rock'n'roll", "dogs", "'", "'", "quoted", "'"]),
    ("Yes--no", ["yes", "--", "no"]),
    ("Well... Hm..", ["well", "...", "hm", ".."]),
    ("What?! Oh!!!", ["what", "?", "!", "oh", "!!!"]),
    ("\u2018Tis \u201cfine\u201d, isn\u2019t it", ["'", "tis", '"', "fine", '"', ",", "isn't",
                                                  "it"]),
    ("It\u00b4s", ["it's"]),
    ("a _very_ good _Man_", ["a", "very", "good", "man"]),
    ("_man_'s", ["man", "'", "s"]),
    ("\ufb01ne \uff21\uff22C", ["fine", "abc"]),
    ("Caf\u00e9 in 1811, 3.5", ["café", "in", "1811", ",", "3", ".", "5"]),
    ("   ", []),
])
def test_tokenize(text, tokens):
    assert tokenize(text) == tokens


def test_clean():
    assert clean("\u201cThe \ufb01rst\u201d _Mr._ Darcy\u2019s") == '"the first"  mr.  darcy\'s'


# --- step 5: the vocabulary ---------------------------------------------------------

def test_vocabulary_order_with_ties_and_min_count():
    stream = "b a c a b c c d <eos> <unk> <unk>".split()
    assert Vocabulary.from_tokens(stream).tokens == [UNK_TOKEN, EOS_TOKEN, "c", "a", "b"]
    assert Vocabulary.from_tokens(stream, min_count=1).tokens[-1] == "d"
    assert Vocabulary.from_tokens(stream, min_count=3).tokens == [UNK_TOKEN, EOS_TOKEN, "c"]
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        Vocabulary.from_tokens(stream, min_count=0)


def test_encode_decode_round_trip():
    vocab = Vocabulary.from_tokens("the cat saw the dog . the dog ran .".split(), min_count=1)
    tokens = "the dog saw the cat .".split() + [EOS_TOKEN]
    ids = vocab.encode(tokens)
    assert ids.dtype == np.int32
    assert vocab.decode(ids) == tokens
    assert vocab.decode(ids.tolist()) == tokens
    assert vocab.encode(["the", "zebra"]).tolist() == [vocab.id_of("the"), UNK]
    assert vocab.id_of("zebra") == UNK and "zebra" not in vocab and "dog" in vocab
    assert vocab.encode([]).shape == (0,) and vocab.decode([]) == []
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 8\)"):
        vocab.decode([0, 8])
    with pytest.raises(ValueError, match="1-D sequence of integers"):
        vocab.decode([[0, 1]])
    with pytest.raises(ValueError, match="1-D sequence of integers"):
        vocab.decode([0.5])


def test_detokenize():
    text = '"Hello," she said. (Yes)--no... "Fine"!'
    tokens = tokenize(text) + [EOS_TOKEN] + tokenize("Next; line?") + [EOS_TOKEN]
    vocab = Vocabulary.from_tokens(tokens, min_count=1)
    assert vocab.detokenize(vocab.encode(tokens)) == (
        '"hello," she said. (yes)--no... "fine"!\nnext; line?\n')
    assert vocab.detokenize(vocab.encode(["she", "zebra"])) == "she <unk>"


def test_vocabulary_json_round_trip_and_validation():
    vocab = Vocabulary.from_tokens("a b b café".split(), min_count=1)
    assert Vocabulary.from_json(vocab.to_json()) == vocab
    with pytest.raises(ValueError, match="must start with '<unk>', '<eos>'"):
        Vocabulary.from_json('["<eos>", "<unk>", "a"]')
    with pytest.raises(ValueError, match="'a' appears more than once"):
        Vocabulary.from_json('["<unk>", "<eos>", "a", "b", "a"]')
    with pytest.raises(ValueError, match="non-empty strings"):
        Vocabulary.from_json('["<unk>", "<eos>", 3]')
    with pytest.raises(ValueError, match="must be a list"):
        Vocabulary.from_json('{"tokens": []}')
    with pytest.raises(ValueError, match="does not parse"):
        Vocabulary.from_json("[<unk>]")


# --- reading folders and files; step 4 on a hand-computed example --------------------

@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "tiny"
    root.mkdir()
    # Blank-line paragraphs: "first line same para ." (5 tokens), "second para !" (3).
    (root / "a.txt").write_text("First line\nsame para.\n\n\n  \nSecond para!\n\n",
                                encoding="utf-8")
    # One paragraph per line: 35 tokens, a line without tokens (dropped), "yes", "maybe".
    # Paragraph sizes with <eos> are 36, 2, 2, so N = 40 and the offsets 0, 36, 38 fall on
    # the boundaries 0.9 N = 36 and 0.95 N = 38: train, valid, test ("below" is strict).
    (root / "b.txt").write_text(" ".join(["w"] * 33) + " yes no\n___\nYes\nmaybe\n",
                                encoding="utf-8")
    (root / "notes.md").write_text("not part of the corpus", encoding="utf-8")
    return root


def test_read_documents_from_a_folder(folder):
    documents = read_documents(folder)
    assert documents == [
        Document("a", ["First line same para.", "Second para!"]),
        Document("b", [" ".join(["w"] * 33) + " yes no", "___", "Yes", "maybe"]),
    ]
    assert read_documents(str(folder / "b.txt")) == documents[1:]


def test_split_rule_by_hand(folder):
    corpus = load_corpus(folder, min_count=1)
    assert corpus.name == "tiny"
    assert corpus.vocab.decode(corpus.train) == (
        "first line same para . <eos> second para ! <eos>".split() + ["w"] * 33
        + ["yes", "no", "<eos>"])
    assert corpus.vocab.decode(corpus.valid) == ["yes", "<eos>"]
    assert corpus.vocab.decode(corpus.test) == ["<unk>", "<eos>"]
    assert [len(p) for p in corpus.paragraphs("train")] == [5, 3, 35]
    assert corpus.oov_rate("test") == 0.5  # "maybe" is not a training token
    single = load_corpus(folder / "b.txt", min_count=1)
    assert single.name == "b" and single.vocab.tokens == [UNK_TOKEN, EOS_TOKEN, "w", "no", "yes"]


def test_split_documents_fractions():
    documents = [Document("d", ["a b c d", "e", "f g h", "i"])]  # sizes 5, 2, 4, 2: N = 13
    streams = split_documents(documents, fractions=(0.5, 0.6))  # boundaries 6.5, 7.8
    assert streams == {"train": "a b c d <eos> e <eos>".split(),
                       "valid": "f g h <eos>".split(), "test": "i <eos>".split()}
    assert split_documents([Document("empty", [])]) == {"train": [], "valid": [], "test": []}
    with pytest.raises(ValueError, match="0 < train <= valid <= 1"):
        split_documents(documents, fractions=(0.95, 0.9))


# --- errors -------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist; pass 'austen'"):
        load_corpus(tmp_path / "nowhere")


def test_folder_without_txt_files(tmp_path):
    (tmp_path / "readme.md").write_text("hello", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no .txt files"):
        load_corpus(tmp_path)


def test_file_not_utf8(tmp_path):
    (tmp_path / "good.txt").write_text("Fine.", encoding="utf-8")
    (tmp_path / "latin.txt").write_bytes("Caf\u00e9.".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt is not UTF-8 text \(byte 0xe9 at "
                                         r"offset 3\); re-save it as UTF-8"):
        load_corpus(tmp_path)


def test_corpus_without_tokens(tmp_path):
    (tmp_path / "blank.txt").write_text("\n   \n", encoding="utf-8")
    (tmp_path / "marks.txt").write_text("___\n_ _\n", encoding="utf-8")
    with pytest.raises(ValueError, match="contains no tokens"):
        load_corpus(tmp_path)
