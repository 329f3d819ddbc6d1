"""Pattern tables: every distinct context of length r with its next-token counts.

``retgen.md`` §4.1 defines the pattern space as the subsequences of the corpus, and §11.1
stores each with its empirical next-token distribution ``P_emp(· | p)``. At resolution
``r`` a pattern is a context ``p = (w_1, …, w_r)`` (``w_r`` the most recent token) and

    P_emp(y | p) = n(p, y) / n(p),      n(p) = Σ_y n(p, y),

counted over the training stream left-padded with ``r`` ``<eos>`` tokens, so the first
tokens of the stream have a context too (the same convention as the n-gram baselines).

A table is stored in compressed sparse rows: pattern ``i`` owns entries
``offsets[i]:offsets[i+1]`` of ``next_tokens`` (sorted ascending) and ``next_counts``.
Tables are built with one ``np.lexsort``, so building is ``O(N log N)`` for ``N``
training tokens, and two tables merge by the same sort (the online update of §9.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tokenize import EOS


@dataclass
class PatternTable:
    """The patterns of one resolution with their next-token counts (CSR layout).

    Attributes
    ----------
    contexts : (P, r) int32
        Token ids of each distinct context, oldest first, in lexicographic order.
    offsets : (P + 1,) int64
        Row pointers into ``next_tokens`` and ``next_counts``.
    next_tokens : (nnz,) int32
        Tokens seen after each context, ascending within a row.
    next_counts : (nnz,) float64
        Their (possibly time-decayed, hence float) counts ``n(p, y)``.
    """

    contexts: np.ndarray
    offsets: np.ndarray
    next_tokens: np.ndarray
    next_counts: np.ndarray

    @property
    def resolution(self) -> int:
        return self.contexts.shape[1]

    def __len__(self) -> int:
        return len(self.contexts)

    @property
    def totals(self) -> np.ndarray:
        """``n(p)`` for every pattern, shape ``(P,)``."""
        return np.add.reduceat(self.next_counts, self.offsets[:-1]) if len(self) else \
            np.zeros(0)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.contexts, self.offsets, self.next_tokens,
                                      self.next_counts))

    def next_token_counts(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(tokens, counts)`` following pattern ``i``."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.next_tokens[lo:hi], self.next_counts[lo:hi]

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The table's arrays under ``prefix``-ed names, for :mod:`retgen_ref.persist`."""
        return {f"{prefix}{name}": getattr(self, name)
                for name in ("contexts", "offsets", "next_tokens", "next_counts")}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str) -> "PatternTable":
        table = cls(*(arrays[f"{prefix}{name}"] for name in
                      ("contexts", "offsets", "next_tokens", "next_counts")))
        if (table.offsets.ndim != 1 or len(table.offsets) != len(table) + 1
                or table.offsets[-1] != len(table.next_tokens)
                or len(table.next_counts) != len(table.next_tokens)):
            raise ValueError(f"pattern table {prefix!r} is inconsistent")
        return table


def context_windows(stream: np.ndarray, r: int) -> np.ndarray:
    """The ``r`` tokens before every position of ``stream``, ``(N, r)`` int32.

    Row ``t`` is the context of token ``stream[t]``; positions before the start are
    ``<eos>``. ``r = 0`` gives an empty ``(N, 0)`` array.
    """
    padded = np.concatenate([np.full(r, EOS, np.int32), np.asarray(stream, np.int32)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, r + 1)
    return np.ascontiguousarray(windows[:, :r])


def count_patterns(contexts: np.ndarray, next_tokens: np.ndarray,
                   weights: np.ndarray | None = None) -> PatternTable:
    """Group ``(context, next token)`` occurrences into a :class:`PatternTable`.

    Parameters
    ----------
    contexts : (N, r) int32
    next_tokens : (N,) int32
    weights : (N,) float, optional
        Weight of each occurrence (1 by default; decayed weights in §9.2).
    """
    n, r = contexts.shape
    if weights is None:
        weights = np.ones(n)
    # np.lexsort sorts by its last key first: contexts column 0 is the primary key.
    order = np.lexsort((next_tokens,) + tuple(contexts[:, c] for c in range(r - 1, -1, -1)))
    ctx, nxt, w = contexts[order], next_tokens[order], weights[order]
    new_context = np.ones(n, bool)
    if n > 1:
        new_context[1:] = np.any(ctx[1:] != ctx[:-1], axis=1)
    new_pair = new_context.copy()
    new_pair[1:] |= nxt[1:] != nxt[:-1]
    pair_start = np.flatnonzero(new_pair)
    counts = np.add.reduceat(w, pair_start) if n else np.zeros(0)
    pair_context = np.cumsum(new_context)[pair_start] - 1
    offsets = np.zeros(int(new_context.sum()) + 1, np.int64)
    np.cumsum(np.bincount(pair_context, minlength=len(offsets) - 1), out=offsets[1:])
    return PatternTable(np.ascontiguousarray(ctx[new_context]), offsets,
                        nxt[pair_start].astype(np.int32), counts.astype(np.float64))


def extract_patterns(stream: np.ndarray, r: int) -> PatternTable:
    """Every distinct length-``r`` context of ``stream`` with its next-token counts (§4.1)."""
    stream = np.asarray(stream, np.int32)
    return count_patterns(context_windows(stream, r), stream)


def merge_tables(a: PatternTable, b: PatternTable, b_weight: float = 1.0,
                 a_weight: float = 1.0) -> PatternTable:
    """Counts of ``a`` and ``b`` added (each scaled by its weight), as one table."""
    def occurrences(t: PatternTable, scale: float):
        rows = np.repeat(np.arange(len(t)), np.diff(t.offsets))
        return t.contexts[rows], t.next_tokens, t.next_counts * scale

    (ca, na, wa), (cb, nb, wb) = occurrences(a, a_weight), occurrences(b, b_weight)
    return count_patterns(np.concatenate([ca, cb]), np.concatenate([na, nb]),
                          np.concatenate([wa, wb]))


def pattern_ids(table: PatternTable, contexts: np.ndarray) -> np.ndarray:
    """Row of each context in ``table`` (``-1`` where absent), by binary search."""
    r = table.resolution
    if r == 0:
        return np.zeros(len(contexts), np.int64)
    keys = _row_keys(table.contexts)
    queries = _row_keys(np.asarray(contexts, np.int32))
    pos = np.searchsorted(keys, queries)
    pos = np.minimum(pos, len(keys) - 1)
    found = keys[pos] == queries
    return np.where(found, pos, -1)


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """Order-preserving keys for int32 rows: a structured view compared field by field."""
    rows = np.ascontiguousarray(rows.astype(">i4") ^ np.int32(-2 ** 31).astype(">i4"))
    return rows.view(np.dtype((np.void, 4 * rows.shape[1]))).ravel()
