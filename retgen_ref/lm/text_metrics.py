"""Measuring generated text: diversity, repetition and copying from the training data.

``distinct_n``
    distinct n-grams / all n-grams of a text (Li et al. 2016): 1 when nothing repeats.
``repetition_rate``
    the fraction of a text's n-grams that already occurred earlier in the same text.
``copied_spans``
    for every position of a generated text, the length of the longest run of tokens
    starting there that occurs verbatim in the training stream, found by binary search in
    a suffix array of the training tokens. A retrieval model can copy; these lengths say
    how much it does.
"""

from __future__ import annotations

import numpy as np


def _ngrams(ids, n: int) -> list[tuple]:
    ids = list(ids)
    return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]


def distinct_n(ids, n: int) -> float:
    """``|distinct n-grams| / |n-grams|`` of a token sequence (0 for too short a text)."""
    grams = _ngrams(ids, n)
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(ids, n: int = 4) -> float:
    """Fraction of n-grams that already appeared earlier in the same sequence."""
    seen, repeats = set(), 0
    grams = _ngrams(ids, n)
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams) if grams else 0.0


def suffix_array(stream: np.ndarray) -> np.ndarray:
    """Start positions of the suffixes of ``stream`` in lexicographic order.

    Prefix doubling: after round ``j`` suffixes are ranked by their first ``2^j`` tokens,
    each round one ``np.lexsort`` of (rank of the first half, rank of the second half);
    ``O(n log² n)``.
    """
    n = len(stream)
    rank = np.unique(np.asarray(stream), return_inverse=True)[1].astype(np.int64)
    order = np.argsort(rank, kind="stable")
    width = 1
    while width < n:
        second = np.full(n, -1, np.int64)
        second[:n - width] = rank[width:]
        order = np.lexsort((second, rank))
        key_changes = np.ones(n, np.int64)
        key_changes[1:] = (rank[order[1:]] != rank[order[:-1]]) | \
            (second[order[1:]] != second[order[:-1]])
        new_rank = np.empty(n, np.int64)
        new_rank[order] = np.cumsum(key_changes) - 1
        rank = new_rank
        if rank.max() == n - 1:
            break
        width *= 2
    return order


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    m = min(len(a), len(b))
    diff = np.flatnonzero(a[:m] != b[:m])
    return int(diff[0]) if len(diff) else m


def copied_spans(generated, train: np.ndarray, sa: np.ndarray | None = None,
                 max_len: int = 256) -> np.ndarray:
    """Longest verbatim match in ``train`` starting at each position of ``generated``.

    ``sa`` is :func:`suffix_array` of ``train`` (computed when not given); matches are
    capped at ``max_len`` tokens.
    """
    train = np.asarray(train)
    sa = suffix_array(train) if sa is None else sa
    gen = np.asarray(generated)
    out = np.zeros(len(gen), np.int64)
    for i in range(len(gen)):
        query = gen[i:i + max_len]
        lo, hi = 0, len(sa)
        while lo < hi:  # first suffix >= query
            mid = (lo + hi) // 2
            suffix = train[sa[mid]:sa[mid] + len(query)]
            c = _common_prefix(suffix, query)
            if c < len(query) and (c == len(suffix) or suffix[c] < query[c]):
                lo = mid + 1  # suffix < query
            else:
                hi = mid
        best = 0
        for j in (lo - 1, lo):  # the longest common prefix is with a neighbour
            if 0 <= j < len(sa):
                best = max(best, _common_prefix(train[sa[j]:sa[j] + len(query)], query))
        out[i] = best
    return out
