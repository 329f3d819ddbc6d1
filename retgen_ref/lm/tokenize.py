"""Text recipe v1, steps 1, 2 and 5: cleaning, tokens and the vocabulary.

The RETGEN language model (``retgen.md`` §11.1) indexes patterns of token ids, so its
perplexity is only comparable across runs and with the n-gram baselines if every run turns
text into ids the same way. ``shared/corpora/README.md`` fixes that way as *text recipe
v1*; this module implements its per-paragraph part and :mod:`retgen_ref.lm.corpus` the
rest (the ``<eos>`` stream and the train/valid/test split, steps 3 and 4).

* Step 1, :func:`clean`: NFKC, curly quotes to ASCII, italics markers ``_`` removed,
  lower case.
* Step 2, :func:`tokenize`: ``\\w+(?:'\\w+)*|([^\\w\\s])\\1*`` — words keep internal
  apostrophes, each punctuation mark is a token, a run of one mark (``--``, ``...``) is
  one token.
* Step 5, :class:`Vocabulary`: ``<unk>`` = 0, ``<eos>`` = 1, then the training tokens seen
  at least ``min_count`` times, by decreasing count and then by the token itself.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter

import numpy as np

from .._validation import check_int

UNK = 0
EOS = 1
UNK_TOKEN = "<unk>"
EOS_TOKEN = "<eos>"

TOKEN_PATTERN = re.compile(r"\w+(?:'\w+)*|([^\w\s])\1*")

# Step 1 maps the quotes *before* NFKC: NFKC turns the acute accent "´" into a space and a
# combining accent, so mapped afterwards the recipe's "´ -> '" could never apply. NFKC
# produces none of the other quotes, so for them the order makes no difference.
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u00b4": "'",
                         "\u201c": '"', "\u201d": '"'})
# The italics markers become spaces rather than vanishing: the README's token counts
# (train 785,223) are those of this reading. Deleting them would glue the one "_man_'s"
# in Emma into the single token "man's" and give 785,221.
_ITALICS = str.maketrans({"_": " "})

# Detokenizing: no space before a closing mark, none after an opening one, none around a
# dash ("--" joins words in the Gutenberg texts).
_CLOSERS = frozenset(",.;:!?)]}")
_OPENERS = frozenset("([{")
_DASH = "--"


def clean(text: str) -> str:
    """Step 1 of the text recipe: normalise one paragraph before tokenizing.

    ``‘ ’ ´`` become ``'`` and ``“ ”`` become ``"``; then NFKC (ligatures, full-width
    forms, non-breaking spaces to their plain forms); then each italics marker ``_``
    becomes a space; then lower case.

    >>> clean("The \\ufb01rst \\u201cword\\u201d is _hers_.")
    'the first "word" is  hers .'
    """
    text = unicodedata.normalize("NFKC", text.translate(_QUOTES))
    return text.translate(_ITALICS).lower()


def tokenize(text: str) -> list[str]:
    """Steps 1 and 2 of the text recipe: the tokens of one paragraph.

    >>> tokenize("Don't--no, wait...")
    ["don't", '--', 'no', ',', 'wait', '...']
    """
    return [m.group(0) for m in TOKEN_PATTERN.finditer(clean(text))]


class Vocabulary:
    """Token <-> id map of text recipe v1, step 5.

    Parameters
    ----------
    tokens : list of str
        ``tokens[i]`` is the token with id ``i``. It must start with ``<unk>``, ``<eos>``
        and hold no duplicates. Usually built with :meth:`from_tokens`.

    Attributes
    ----------
    tokens : list of str
        Id -> token.
    """

    def __init__(self, tokens: list[str]):
        tokens = list(tokens)
        if tokens[:2] != [UNK_TOKEN, EOS_TOKEN]:
            raise ValueError(f"a vocabulary must start with {UNK_TOKEN!r}, {EOS_TOKEN!r}; "
                             f"got {tokens[:2]!r}")
        bad = [t for t in tokens if not isinstance(t, str) or not t]
        if bad:
            raise ValueError(f"vocabulary tokens must be non-empty strings; got {bad[0]!r}")
        self._ids = {token: i for i, token in enumerate(tokens)}
        if len(self._ids) != len(tokens):
            dup = next(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"vocabulary token {dup!r} appears more than once; "
                             "each token needs exactly one id")
        self.tokens = tokens

    @classmethod
    def from_tokens(cls, tokens: list[str], min_count: int = 2) -> Vocabulary:
        """Step 5: the vocabulary of a training token stream.

        ``<unk>``, ``<eos>``, then every token seen at least ``min_count`` times ordered by
        (−count, token); ``<unk>`` and ``<eos>`` in ``tokens`` are not counted.

        >>> Vocabulary.from_tokens(["b", "a", "c", "a", "b", "<eos>"]).tokens
        ['<unk>', '<eos>', 'a', 'b']
        """
        min_count = check_int(min_count, "min_count")
        counts = Counter(tokens)
        counts.pop(UNK_TOKEN, None)
        counts.pop(EOS_TOKEN, None)
        kept = sorted((t for t, n in counts.items() if n >= min_count),
                      key=lambda t: (-counts[t], t))
        return cls([UNK_TOKEN, EOS_TOKEN, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token) -> bool:
        return token in self._ids

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    def id_of(self, token: str) -> int:
        """The id of ``token``; :data:`UNK` (0) if it is not in the vocabulary."""
        return self._ids.get(token, UNK)

    def encode(self, tokens: list[str]) -> np.ndarray:
        """Token ids, shape ``(len(tokens),)`` int32; unknown tokens map to :data:`UNK`."""
        get = self._ids.get
        return np.fromiter((get(t, UNK) for t in tokens), dtype=np.int32, count=len(tokens))

    def decode(self, ids) -> list[str]:
        """The tokens of a 1-D sequence of ids in ``[0, len(self))``."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"ids must be a 1-D sequence of integers; got shape {ids.shape} "
                             f"and dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"ids must lie in [0, {len(self)}) for this vocabulary; got "
                             f"values from {ids.min()} to {ids.max()}")
        return [self.tokens[i] for i in ids.tolist()]

    def detokenize(self, ids) -> str:
        """Readable text for a sequence of ids; ``<eos>`` becomes a newline.

        Tokens are joined by spaces, except before ``, . ; : ! ? ) ] }``, after
        ``( [ {``, around ``--``, and inside a pair of ``"`` (odd ones open, even ones
        close, counted per paragraph).

        >>> v = Vocabulary.from_tokens(tokenize('"Yes--no (maybe)," she said. ' * 2))
        >>> print(v.detokenize(v.encode(tokenize('"Yes--no (maybe)," she said.') + ["<eos>"])))
        "yes--no (maybe)," she said.
        <BLANKLINE>
        """
        pieces: list[str] = []
        glue = True  # no space before the next token
        quote_open = False
        for token in self.decode(ids):
            if token == EOS_TOKEN:
                pieces.append("\n")
                glue, quote_open = True, False
                continue
            closing = token == _DASH or set(token) <= _CLOSERS
            opening = token == _DASH or token in _OPENERS
            if token == '"':
                closing, opening = quote_open, not quote_open
                quote_open = not quote_open
            if not (glue or closing):
                pieces.append(" ")
            pieces.append(token)
            glue = opening
        return "".join(pieces)

    def to_json(self) -> str:
        """The vocabulary as JSON: the list of tokens in id order."""
        return json.dumps(self.tokens, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """Inverse of :meth:`to_json`; a malformed list is a ``ValueError``."""
        try:
            tokens = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"vocabulary JSON does not parse ({err}); expected a list of "
                             "token strings as written by Vocabulary.to_json()") from None
        if not isinstance(tokens, list):
            raise ValueError("vocabulary JSON must be a list of token strings, got a "
                             f"{type(tokens).__name__}")
        return cls(tokens)
