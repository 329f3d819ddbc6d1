"""Count-based baselines for the RETGEN language model: interpolated modified Kneser–Ney
n-grams (Chen & Goodman, 1998) and an add-one unigram.

They are the yardsticks of the held-out evaluation (``retgen.md`` §11.1 specifies the
RETGEN predictor; the project measures its perplexity against these baselines on the
bundled corpus, whose recipe is in ``corpora/README.md``: about 105 for modified KN-5 and
about 429 for the add-one unigram on the Austen test split; these classes give 104.7 and
428.6).

Conventions shared with the rest of :mod:`retgen_ref.lm`:

- a stream is a 1-D array of token ids in ``[0, V)``; id 0 is ``<unk>``, id 1 is
  ``<eos>`` and ends every paragraph; the stream is continuous (contexts cross ``<eos>``);
- every stream (training or scored) is read as if preceded by ``order − 1`` ``<eos>``
  tokens, so it starts from an empty history that looks like the start of a paragraph;
- every distribution is over the whole closed vocabulary of ``V`` ids, sums to 1 and
  has no zero, even for ids never seen in training.

Reference: S. F. Chen and J. Goodman, "An empirical study of smoothing techniques for
language modeling", Harvard Computer Science Group TR-10-98 (1998): interpolated
Kneser–Ney and the three-discount "modified" variant with its discount estimates.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from .tokenize import EOS

_FALLBACK = np.array([0.5, 1.0, 1.5])  # discounts where the estimates are unusable


def modified_kn_discounts(counts: np.ndarray) -> np.ndarray:
    """Discounts ``(D1, D2, D3+)`` of modified Kneser–Ney from the count-of-counts.

    With ``n_k`` the number of n-grams whose count is exactly ``k`` (Chen & Goodman 1998,
    the estimates for modified Kneser–Ney)::

        Y   = n1 / (n1 + 2 n2)
        D1  = 1 − 2 Y n2 / n1
        D2  = 2 − 3 Y n3 / n2
        D3+ = 3 − 4 Y n4 / n3

    Fallback: when one of ``n1 … n4`` is zero (tiny or artificial data) or an estimate is
    not positive, the level uses ``(0.5, 1, 1.5)`` instead. Either way ``0 < D_k < k``: a
    count ``c`` keeps ``c − D(c) > 0`` and every seen history leaves a positive mass to the
    lower order.

    Parameters
    ----------
    counts : (m,) int array
        The counts of one level (zeros are ignored).

    Returns
    -------
    (3,) float64 array
    """
    n1, n2, n3, n4 = (int(np.count_nonzero(counts == k)) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return _FALLBACK.copy()
    y = n1 / (n1 + 2 * n2)
    d = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
    return d if (d > 0).all() else _FALLBACK.copy()


def _lookup(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Positions of ``query`` in the sorted ``keys``; −1 where absent."""
    pos = np.searchsorted(keys, query)
    hit = keys[np.minimum(pos, keys.size - 1)] == query
    return np.where(hit, pos, -1)


class _StreamLM:
    """Input checks and perplexity shared by the baselines."""

    kind = ""

    def _check_fitted(self) -> None:
        if not hasattr(self, "vocab_size_"):
            raise ValueError(f"this {self.kind} is not fitted; call fit(train, vocab_size) first")

    @staticmethod
    def _tokens(x, name: str, vocab_size: int, *, allow_empty: bool = False) -> np.ndarray:
        """``x`` as a C-contiguous int64 1-D array of ids in ``[0, vocab_size)``."""
        arr = np.asarray(x)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of token ids, got shape {arr.shape}")
        if arr.size == 0:
            if not allow_empty:
                raise ValueError(f"{name} is empty; pass at least one token id")
            return np.zeros(0, dtype=np.int64)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer token ids; got dtype {arr.dtype}")
        if arr.min() < 0 or arr.max() >= vocab_size:
            bad = arr[(arr < 0) | (arr >= vocab_size)][0]
            raise ValueError(
                f"{name} holds id {bad}, outside [0, {vocab_size}); map tokens outside the "
                f"vocabulary to <unk> (id 0) first"
            )
        return np.ascontiguousarray(arr, dtype=np.int64)

    def _stream(self, stream, name: str = "stream", *, allow_empty: bool = False):
        self._check_fitted()
        return self._tokens(stream, name, self.vocab_size_, allow_empty=allow_empty)

    def perplexity(self, stream) -> float:
        """``exp(−mean_i log p(x_i | history))`` over every token of ``stream``."""
        return float(np.exp(-np.mean(self.log_prob(stream))))


class KneserNeyLM(_StreamLM):
    """Interpolated modified Kneser–Ney n-gram model (Chen & Goodman 1998).

    For order ``N`` and a word ``w`` after the history ``h = w_{i−n+1} … w_{i−1}`` of level
    ``n`` (``n = 1`` has the empty history), with ``h'`` the history without its first
    word::

        p_n(w | h) = (c_n(hw) − D_n(c_n(hw))) / c_n(h) + γ_n(h) · p_{n−1}(w | h')
        γ_n(h)     = (D_{n,1} N1(h•) + D_{n,2} N2(h•) + D_{n,3+} N3+(h•)) / c_n(h)
        p_n(w | h) = p_{n−1}(w | h')            if c_n(h) = 0 (unseen history)
        p_0(w)     = 1 / V

    where ``c_n(h) = Σ_w c_n(hw)``, ``N_k(h•)`` counts the words with ``c_n(hw) = k``
    (``N3+``: at least 3) and ``D_n(c)`` is 0, ``D_{n,1}``, ``D_{n,2}`` or ``D_{n,3+}`` for
    ``c`` = 0, 1, 2, ≥ 3. The top level uses raw counts; a lower level ``n < N`` uses
    continuation counts ``c_n(x) = N1+(• x)``, the number of distinct words seen before the
    n-gram ``x``. Each level has its own discounts (:func:`modified_kn_discounts` of its
    counts), the unigram level included, so the unigram's leftover mass goes to the uniform
    ``1/V``: every id, even one never seen, gets mass.

    N-grams are collected at every training position from the stream left-padded with
    ``N − 1`` ``<eos>``. Internally an m-gram is the integer key ``id(prefix)·V + w`` with
    ``id(prefix)`` its prefix's rank among the sorted keys of level ``m − 1`` (a word is its
    own id), so every level is a sorted int64 array searched with ``np.searchsorted``.

    Parameters
    ----------
    order : int
        ``N ≥ 1``, the n-gram order (5 for the project's baseline).

    Attributes
    ----------
    vocab_size_ : int
        ``V``, set by :meth:`fit`.
    discounts_ : (order, 3) float64 array
        Row ``n − 1`` holds ``(D1, D2, D3+)`` of level ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> lm = KneserNeyLM(order=3).fit(np.array([2, 3, 1, 2, 4, 1]), vocab_size=5)
    >>> p = lm.distribution([2])
    >>> p.shape, round(float(p.sum()), 12), bool((p > 0).all())
    ((5,), 1.0, True)
    """

    kind = "KneserNeyLM"

    def __init__(self, order: int = 5):
        self.order = check_int(order, "order", minimum=1)

    # -- training -----------------------------------------------------------------------
    def fit(self, train, vocab_size: int) -> "KneserNeyLM":
        """Count the n-grams of ``train`` and derive discounts and back-off weights.

        Parameters
        ----------
        train : (L,) int array
            Token ids in ``[0, vocab_size)``.
        vocab_size : int
            ``V ≥ 2`` (ids 0 and 1 are ``<unk>`` and ``<eos>``).

        Returns
        -------
        self

        Raises
        ------
        TypeError
            ``train`` does not hold integers, or ``vocab_size`` is not an integer.
        ValueError
            ``train`` is not 1-D, is empty or holds an id outside ``[0, vocab_size)``;
            ``vocab_size < 2``.
        """
        vocab_size = check_int(vocab_size, "vocab_size", minimum=2)
        tokens = self._tokens(train, "train", vocab_size)
        order = self.order
        if (tokens.size + order) * vocab_size >= 2**62:
            raise ValueError(
                f"{tokens.size} tokens over a vocabulary of {vocab_size} overflow the int64 "
                f"n-gram keys; train on a shorter stream or a smaller vocabulary"
            )
        padded = np.concatenate([np.full(order - 1, EOS, dtype=np.int64), tokens])
        ids, keys = [padded], [None]  # ids[m-1][j]: id of the m-gram ending at position j
        for m in range(2, order + 1):
            level_keys, inverse = np.unique(ids[-1][m - 2:-1] * vocab_size + padded[m - 1:],
                                            return_inverse=True)
            level_ids = np.full(padded.size, -1, dtype=np.int64)
            level_ids[m - 1:] = inverse.ravel()
            ids.append(level_ids)
            keys.append(level_keys)
        first = order - 1  # position of the first training token in `padded`
        counts = []
        for n in range(1, order + 1):
            size = vocab_size if n == 1 else keys[n - 1].size
            if n == order:  # raw counts
                counts.append(np.bincount(ids[n - 1][first:], minlength=size))
                continue
            upper = ids[n][first:]  # the (n+1)-grams seen in training ...
            seen = np.zeros(keys[n].size, dtype=bool)
            seen[upper] = True
            suffix = np.zeros(keys[n].size, dtype=np.int64)
            suffix[upper] = ids[n - 1][first:]  # ... and the n-gram each one ends with
            counts.append(np.bincount(suffix[seen], minlength=size))
        self._set_tables(vocab_size, keys, counts)
        return self

    def _set_tables(self, vocab_size: int, keys: list, counts: list) -> None:
        """Store keys and counts; compute discounts, ``c_n(h)`` and ``γ_n(h)·c_n(h)``."""
        self._keys, self._counts = keys, counts
        self._discount_of, self._hist_total, self._hist_gamma = [], [], []
        discounts = np.empty((self.order, 3))
        for n in range(1, self.order + 1):
            count = counts[n - 1]
            discounts[n - 1] = d = modified_kn_discounts(count)
            if n == 1:  # one (empty) history
                prefix, n_hist = np.zeros(count.size, dtype=np.int64), 1
            else:
                prefix = keys[n - 1] // vocab_size
                n_hist = vocab_size if n == 2 else keys[n - 2].size
            n_k = [np.bincount(prefix[sel], minlength=n_hist)
                   for sel in (count == 1, count == 2, count >= 3)]
            self._discount_of.append(np.concatenate([[0.0], d]))
            self._hist_total.append(np.bincount(prefix, weights=count, minlength=n_hist))
            self._hist_gamma.append(d[0] * n_k[0] + d[1] * n_k[1] + d[2] * n_k[2])
        self.discounts_ = discounts
        self.vocab_size_ = vocab_size

    # -- scoring ------------------------------------------------------------------------
    def _gram_ids(self, padded: np.ndarray, top: int) -> list[np.ndarray]:
        """``ids[m−1][j]``: id of the m-gram ending at ``padded[j]`` (−1: unseen), m ≤ top."""
        ids = [padded]
        for m in range(2, top + 1):
            level_ids = np.full(padded.size, -1, dtype=np.int64)
            prev = ids[-1][m - 2:-1]
            known = np.flatnonzero(prev >= 0)
            level_ids[m - 1 + known] = _lookup(
                self._keys[m - 1], prev[known] * self.vocab_size_ + padded[m - 1 + known])
            ids.append(level_ids)
        return ids

    def _interpolate(self, n: int, gram: np.ndarray, hist: np.ndarray,
                     lower: np.ndarray) -> np.ndarray:
        """``p_n`` from ``p_{n−1}`` (``lower``) for n-gram ids ``gram`` after ``hist``."""
        count = np.where(gram >= 0, self._counts[n - 1][np.maximum(gram, 0)], 0)
        total = np.where(hist >= 0, self._hist_total[n - 1][np.maximum(hist, 0)], 0.0)
        out = lower.copy()
        seen = np.flatnonzero(total > 0)
        c = count[seen]
        discounted = c - self._discount_of[n - 1][np.minimum(c, 3)]
        out[seen] = ((discounted + self._hist_gamma[n - 1][hist[seen]] * lower[seen])
                     / total[seen])
        return out

    def log_prob(self, stream) -> np.ndarray:
        """Natural-log probability of every token given its (``<eos>``-padded) history.

        Parameters
        ----------
        stream : (L,) int array
            Token ids in ``[0, V)``.

        Returns
        -------
        (L,) float64 array
            ``log p_N(x_i | x_{i−N+1} … x_{i−1})``.
        """
        tokens = self._stream(stream)
        order = self.order
        padded = np.concatenate([np.full(order - 1, EOS, dtype=np.int64), tokens])
        ids = self._gram_ids(padded, order)
        pos = np.arange(order - 1, padded.size)
        p = np.full(tokens.size, 1.0 / self.vocab_size_)
        for n in range(1, order + 1):
            hist = np.zeros(tokens.size, dtype=np.int64) if n == 1 else ids[n - 2][pos - 1]
            p = self._interpolate(n, ids[n - 1][pos], hist, p)
        return np.log(p)

    def distribution(self, context) -> np.ndarray:
        """``p_N(· | context)`` over the ``V`` ids.

        Parameters
        ----------
        context : (k,) int array
            The history; only its last ``N − 1`` ids count, and a shorter one is padded on
            the left with ``<eos>`` (so ``[]`` is the start of a stream).

        Returns
        -------
        (V,) float64 array
            Positive, summing to 1.
        """
        context = self._stream(context, "context", allow_empty=True)
        order, vocab_size = self.order, self.vocab_size_
        history = np.concatenate([np.full(order - 1, EOS, dtype=np.int64), context])
        history = history[context.size:]  # the last N − 1 ids
        ids = self._gram_ids(history, order - 1)
        words = np.arange(vocab_size, dtype=np.int64)
        p = np.full(vocab_size, 1.0 / vocab_size)
        for n in range(1, order + 1):
            h = 0 if n == 1 else int(ids[n - 2][-1])
            if n == 1:
                gram = words
            elif h >= 0:
                gram = _lookup(self._keys[n - 1], h * vocab_size + words)
            else:
                gram = np.full(vocab_size, -1, dtype=np.int64)
            p = self._interpolate(n, gram, np.full(vocab_size, h, dtype=np.int64), p)
        return p

    # -- persistence --------------------------------------------------------------------
    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(params, arrays)`` for :func:`retgen_ref.persist.save_state`.

        ``arrays`` holds ``keys_m`` (m = 2 … N) and ``counts_n`` (n = 1 … N); discounts and
        back-off weights are recomputed by :meth:`from_state`.
        """
        self._check_fitted()
        arrays = {f"counts_{n}": self._counts[n - 1] for n in range(1, self.order + 1)}
        arrays.update({f"keys_{m}": self._keys[m - 1] for m in range(2, self.order + 1)})
        return {"order": self.order, "vocab_size": self.vocab_size_}, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> "KneserNeyLM":
        """Rebuild a model from :meth:`state`'s output; ``ValueError`` if inconsistent."""
        try:
            lm = cls(params["order"])
            vocab_size = check_int(params["vocab_size"], "vocab_size", minimum=2)
            keys = [None] + [np.asarray(arrays[f"keys_{m}"], dtype=np.int64)
                             for m in range(2, lm.order + 1)]
            counts = [np.asarray(arrays[f"counts_{n}"], dtype=np.int64)
                      for n in range(1, lm.order + 1)]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"inconsistent {cls.kind} state: {exc!r}") from None
        sizes = [vocab_size] + [k.size for k in keys[1:]]
        for n, (count, size) in enumerate(zip(counts, sizes), start=1):
            key = keys[n - 1]
            if count.shape != (size,) or (count < 0).any() or (
                    key is not None and (np.diff(key) <= 0).any()):
                raise ValueError(f"inconsistent {cls.kind} state: level {n} has malformed "
                                 f"keys or counts; save the model again")
        lm._set_tables(vocab_size, keys, counts)
        return lm


class UnigramLM(_StreamLM):
    """Add-one (Laplace) unigram model: ``p(w) = (c(w) + 1) / (L + V)``.

    ``c(w)`` is the count of ``w`` in the ``L`` training tokens; the history is ignored.
    The weakest baseline of the evaluation (about 429 test perplexity on the Austen corpus).

    Attributes
    ----------
    vocab_size_ : int
    counts_ : (V,) int64 array
    """

    kind = "UnigramLM"

    def fit(self, train, vocab_size: int) -> "UnigramLM":
        """Count the ids of ``train`` (``(L,)`` ints in ``[0, vocab_size)``); return self."""
        vocab_size = check_int(vocab_size, "vocab_size", minimum=2)
        tokens = self._tokens(train, "train", vocab_size)
        self._set_counts(vocab_size, np.bincount(tokens, minlength=vocab_size))
        return self

    def _set_counts(self, vocab_size: int, counts: np.ndarray) -> None:
        self.counts_ = counts
        self._p = (counts + 1.0) / (counts.sum() + vocab_size)
        self.vocab_size_ = vocab_size

    def log_prob(self, stream) -> np.ndarray:
        """``log p(x_i)`` for every token of ``stream``, ``(L,)`` float64."""
        tokens = self._stream(stream)
        return np.log(self._p[tokens])

    def distribution(self, context) -> np.ndarray:
        """``p(·)``, ``(V,)`` float64; ``context`` is checked but does not matter."""
        self._stream(context, "context", allow_empty=True)
        return self._p.copy()

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(params, arrays)`` for :func:`retgen_ref.persist.save_state`."""
        self._check_fitted()
        return {"vocab_size": self.vocab_size_}, {"counts": self.counts_}

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> "UnigramLM":
        """Rebuild a model from :meth:`state`'s output; ``ValueError`` if inconsistent."""
        try:
            vocab_size = check_int(params["vocab_size"], "vocab_size", minimum=2)
            counts = np.asarray(arrays["counts"], dtype=np.int64)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"inconsistent {cls.kind} state: {exc!r}") from None
        if counts.shape != (vocab_size,) or (counts < 0).any():
            raise ValueError(f"inconsistent {cls.kind} state: counts must be {vocab_size} "
                             f"non-negative integers; save the model again")
        lm = cls()
        lm._set_counts(vocab_size, counts)
        return lm
