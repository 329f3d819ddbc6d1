"""Corpus loading and text recipe v1, steps 3 and 4: the ``<eos>`` stream and its split.

The RETGEN language model (``retgen.md`` §11.1) builds its index from a training corpus
``C`` and is scored on held-out text. :func:`load_corpus` turns a corpus into the three
token-id streams it trains and is evaluated on, following ``shared/corpora/README.md``
(text recipe v1) exactly:

3. each paragraph's tokens are followed by ``<eos>``, and a split is one continuous
   stream (a context may cross ``<eos>``);
4. within each document, a paragraph whose first token sits at an offset below 90% of the
   document's tokens (``<eos>`` included) goes to train, below 95% to valid, the rest to
   test; each split concatenates the documents in order, and paragraphs without tokens
   are dropped;
5. the vocabulary is that of the training split (:class:`~retgen_ref.lm.tokenize.Vocabulary`).

The bundled corpus ``"austen"`` is Jane Austen's six novels in publication order (Project
Gutenberg transcriptions, public domain, as packaged by Debian's ``r-cran-janeaustenr``,
MIT), one paragraph per line, stored as ``.xz`` inside the package. With the recipe it
has a vocabulary of 9,264 and 785,223 / 41,128 / 43,000 train / valid / test tokens.
"""

from __future__ import annotations

import lzma
import os
from dataclasses import dataclass
from importlib.resources import files
from itertools import groupby
from pathlib import Path

import numpy as np

from .tokenize import EOS, EOS_TOKEN, UNK, Vocabulary, tokenize

BUNDLED = "austen"
SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.9, 0.95)


@dataclass
class Document:
    """One document of a corpus: its name and its paragraphs as raw text.

    Parameters
    ----------
    name : str
        The file name without its extension.
    paragraphs : list of str
        The non-blank paragraphs in order, each on one line, not yet cleaned.
    """

    name: str
    paragraphs: list[str]


@dataclass(eq=False, repr=False)
class Corpus:
    """A corpus as token ids after text recipe v1: vocabulary and three ``<eos>`` streams.

    Parameters
    ----------
    name : str
        ``"austen"`` for the bundled corpus, else the file or folder name.
    vocab : Vocabulary
        Built from the training split (step 5).
    train, valid, test : np.ndarray
        int32 token ids, shape ``(n_tokens,)``; every paragraph is followed by
        :data:`~retgen_ref.lm.tokenize.EOS`, so a non-empty split ends with it.
    """

    name: str
    vocab: Vocabulary
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def __repr__(self) -> str:
        sizes = " / ".join(f"{s} {len(self.split(s)):,}" for s in SPLITS)
        return f"Corpus({self.name!r}: vocabulary {len(self.vocab):,}; {sizes} tokens)"

    def split(self, name: str) -> np.ndarray:
        """The token-id stream of split ``name``: ``"train"``, ``"valid"`` or ``"test"``."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of "
                             f"{', '.join(repr(s) for s in SPLITS)}")
        return getattr(self, name)

    def with_train_prefix(self, n_tokens: int) -> "Corpus":
        """This corpus with the training split cut to its first ``n_tokens`` (at a paragraph end).

        The vocabulary and the valid and test splits are unchanged, so perplexities stay
        comparable; used by the demo to train in a short time.
        """
        ends = np.flatnonzero(self.train[:n_tokens] == EOS)
        if not len(ends):
            raise ValueError(f"the first {n_tokens} training tokens hold no whole paragraph; "
                             "use a larger prefix")
        return Corpus(f"{self.name} (first {ends[-1] + 1:,} training tokens)", self.vocab,
                      self.train[:ends[-1] + 1], self.valid, self.test)

    def paragraphs(self, split_name: str) -> list[np.ndarray]:
        """The paragraphs of a split: its stream cut at ``<eos>``, each without the ``<eos>``.

        Returns views into the stream, one int32 array per paragraph.
        """
        return paragraphs_of(self.split(split_name))

    def oov_rate(self, split_name: str) -> float:
        """Fraction of a split's tokens (``<eos>`` included) that map to ``<unk>``."""
        stream = self.split(split_name)
        return float(np.mean(stream == UNK)) if stream.size else 0.0


def paragraphs_of(stream: np.ndarray) -> list[np.ndarray]:
    """A token stream cut at ``<eos>``: each paragraph's tokens without the ``<eos>``
    (views into ``stream``; tokens after the last ``<eos>`` are left out)."""
    ends = np.flatnonzero(stream == EOS)
    starts = np.concatenate(([0], ends[:-1] + 1))
    return [stream[s:e] for s, e in zip(starts.tolist(), ends.tolist())]


def parse_paragraphs(text: str) -> list[str]:
    """The paragraphs of a plain-text file.

    Paragraphs are separated by blank lines, and the lines of a paragraph are joined by a
    single space; a file with no blank line between its lines has one paragraph per line
    (the bundled corpus). Blank lines at the start or end do not count.

    >>> parse_paragraphs("One\\ntwo.\\n\\nThree.\\n")
    ['One two.', 'Three.']
    >>> parse_paragraphs("One\\ntwo.\\n")
    ['One', 'two.']
    """
    lines = [line.strip() for line in text.splitlines()]
    blocks = [list(block) for nonblank, block in groupby(lines, key=bool) if nonblank]
    if len(blocks) == 1:
        return blocks[0]
    return [" ".join(block) for block in blocks]


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where} is not UTF-8 text (byte {data[err.start]:#04x} at offset "
                         f"{err.start}); re-save it as UTF-8") from None


def _bundled_documents() -> list[Document]:
    folder = files(__package__) / "data" / BUNDLED
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".txt.xz")),
                     key=lambda e: e.name)
    if not entries:
        raise FileNotFoundError(f"the bundled corpus is missing from {folder}; reinstall "
                                "retgen_ref")
    return [Document(e.name.removesuffix(".txt.xz"),
                     parse_paragraphs(_decode(lzma.decompress(e.read_bytes()), e.name)))
            for e in entries]


def read_documents(source: str | os.PathLike = BUNDLED) -> list[Document]:
    """The documents of a corpus, in order, with their paragraphs as raw text.

    Parameters
    ----------
    source : str or path-like
        ``"austen"``: the bundled corpus, one document per novel. Otherwise a folder of
        UTF-8 ``.txt`` files (one document per file, sorted by name) or a single text
        file. Paragraphs follow :func:`parse_paragraphs`. To read a folder that happens
        to be called ``austen``, pass ``"./austen"`` or a :class:`~pathlib.Path`.

    Raises
    ------
    ValueError
        The path does not exist, a folder holds no ``.txt`` file, or a file is not UTF-8.
    FileNotFoundError
        The bundled corpus is missing from the installation.
    """
    if isinstance(source, str) and source == BUNDLED:
        return _bundled_documents()
    path = Path(source)
    if not path.exists():
        raise ValueError(f"corpus path {str(path)!r} does not exist; pass {BUNDLED!r} for "
                         "the bundled corpus, a folder of .txt files or a .txt file")
    if path.is_dir():
        paths = sorted(p for p in path.glob("*.txt") if p.is_file())
        if not paths:
            raise ValueError(f"folder {str(path)!r} holds no .txt files; put the corpus "
                             "there as UTF-8 .txt files, one document per file")
    else:
        paths = [path]
    return [Document(p.stem, parse_paragraphs(_decode(p.read_bytes(), str(p))))
            for p in paths]


def _split_ids(lengths: np.ndarray, fractions: tuple[float, float]) -> np.ndarray:
    """Step 4 for one document: 0, 1 or 2 (train, valid, test) per paragraph.

    ``lengths`` are the paragraphs' token counts, ``<eos>`` not included.
    """
    sizes = lengths + 1
    offsets = np.cumsum(sizes) - sizes
    n_total = sizes.sum()
    low, high = fractions
    return (offsets >= low * n_total).astype(np.int64) + (offsets >= high * n_total)


def split_documents(documents: list[Document],
                    fractions: tuple[float, float] = SPLIT_FRACTIONS) -> dict[str, list[str]]:
    """Steps 2–4 of text recipe v1: the train, valid and test token streams.

    Parameters
    ----------
    documents : list of Document
    fractions : (float, float)
        A paragraph goes to train if its first token's offset within its document is below
        ``fractions[0]`` of the document's tokens (``<eos>`` counted), else to valid if
        below ``fractions[1]``, else to test. The recipe uses ``(0.9, 0.95)``.

    Returns
    -------
    dict
        ``{"train": tokens, "valid": tokens, "test": tokens}``, each a list of str with
        :data:`~retgen_ref.lm.tokenize.EOS_TOKEN` after every paragraph. Paragraphs with no
        token are dropped.
    """
    low, high = (float(f) for f in fractions)
    if not 0 < low <= high <= 1:
        raise ValueError(f"fractions must satisfy 0 < train <= valid <= 1; got {fractions}")
    streams: dict[str, list[str]] = {name: [] for name in SPLITS}
    for document in documents:
        paragraphs = [tokens for tokens in map(tokenize, document.paragraphs) if tokens]
        if not paragraphs:
            continue
        lengths = np.array([len(tokens) for tokens in paragraphs])
        for tokens, split in zip(paragraphs, _split_ids(lengths, (low, high)).tolist()):
            stream = streams[SPLITS[split]]
            stream.extend(tokens)
            stream.append(EOS_TOKEN)
    return streams


def load_corpus(source: str | os.PathLike = BUNDLED, *, min_count: int = 2) -> Corpus:
    """Load a corpus with text recipe v1: clean, tokenize, split, build the vocabulary.

    Parameters
    ----------
    source : str or path-like
        ``"austen"`` (bundled), a folder of ``.txt`` files or one text file; see
        :func:`read_documents`.
    min_count : int
        Training tokens seen fewer times map to ``<unk>`` (recipe: 2).

    Raises
    ------
    ValueError
        Those of :func:`read_documents`, or a corpus without any token.

    Examples
    --------
    >>> corpus = load_corpus()
    >>> corpus
    Corpus('austen': vocabulary 9,264; train 785,223 / valid 41,128 / test 43,000 tokens)
    >>> print(corpus.vocab.detokenize(corpus.train[:8]))
    sense and sensibility
    by jane austen
    <BLANKLINE>
    """
    documents = read_documents(source)
    streams = split_documents(documents)
    if not streams["train"]:
        raise ValueError(f"corpus {str(source)!r} contains no tokens; its text files are "
                         "empty or hold only whitespace and italics markers")
    vocab = Vocabulary.from_tokens(streams["train"], min_count)
    if isinstance(source, str) and source == BUNDLED:
        name = BUNDLED
    else:
        path = Path(source).resolve()
        name = path.stem if path.is_file() else path.name
    return Corpus(name, vocab, *(vocab.encode(streams[s]) for s in SPLITS))
