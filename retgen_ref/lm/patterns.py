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
training tokens, and new text is added by the same sort (the online update of §9.1)
without moving the rows that are already stored.
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
        Token ids of each distinct context, oldest token first; lexicographic order after
        :func:`extract_patterns`, new contexts appended after :func:`add_to_table`.
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


def extract_patterns(segments, r: int) -> PatternTable:
    """Every distinct length-``r`` context with its next-token counts (§4.1).

    ``segments`` is one token stream or a list of them; each is read from an empty
    (``<eos>``-padded) history, so no context spans two segments.
    """
    if isinstance(segments, np.ndarray) and segments.ndim == 1:
        segments = [segments]
    segments = [np.asarray(s, np.int32) for s in segments]
    return count_patterns(np.concatenate([context_windows(s, r) for s in segments]),
                          np.concatenate(segments))


def add_to_table(table: PatternTable, new: PatternTable,
                 scale: float = 1.0) -> tuple[PatternTable, np.ndarray]:
    """``table``'s counts times ``scale`` plus ``new``'s counts (the update of §9.1).

    Rows of ``table`` keep their positions; contexts seen only in ``new`` are appended
    after them, in ``new``'s order, so an index whose row ``i`` embeds pattern ``i`` stays
    valid after adding the appended contexts. Returns ``(merged table, appended rows of
    new)``.
    """
    found = pattern_ids(table, new.contexts)
    appended = np.flatnonzero(found < 0)
    row_of_new = found.copy()
    row_of_new[appended] = len(table) + np.arange(len(appended))
    rows = np.concatenate([np.repeat(np.arange(len(table)), np.diff(table.offsets)),
                           np.repeat(row_of_new, np.diff(new.offsets))])
    tokens = np.concatenate([table.next_tokens, new.next_tokens])
    counts = np.concatenate([table.next_counts * scale, new.next_counts])
    order = np.lexsort((tokens, rows))
    rows, tokens, counts = rows[order], tokens[order], counts[order]
    first = np.ones(len(rows), bool)
    first[1:] = (rows[1:] != rows[:-1]) | (tokens[1:] != tokens[:-1])
    starts = np.flatnonzero(first)
    n_rows = len(table) + len(appended)
    offsets = np.zeros(n_rows + 1, np.int64)
    np.cumsum(np.bincount(rows[starts], minlength=n_rows), out=offsets[1:])
    contexts = np.concatenate([table.contexts, new.contexts[appended]])
    merged = PatternTable(contexts, offsets, tokens[starts], np.add.reduceat(counts, starts))
    return merged, appended


def pattern_ids(table: PatternTable, contexts: np.ndarray) -> np.ndarray:
    """Row of each context in ``table`` (``-1`` where absent), by binary search."""
    if table.resolution == 0:
        return np.zeros(len(contexts), np.int64)
    if not len(table):
        return np.full(len(contexts), -1, np.int64)
    keys = _row_keys(table.contexts)
    order = np.argsort(keys, kind="stable")
    queries = _row_keys(np.asarray(contexts, np.int32))
    pos = np.minimum(np.searchsorted(keys[order], queries), len(keys) - 1)
    return np.where(keys[order][pos] == queries, order[pos], -1)


_BIG_ENDIAN_U32 = np.dtype(">u4")


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """Order-preserving byte keys for int32 rows, compared as strings of bytes.

    Each entry is offset by 2³¹ (so the signed order becomes the unsigned one) and stored
    big-endian, so comparing the keys' bytes compares the rows lexicographically. The byte
    order is set by an explicit conversion: the result of arithmetic on big-endian arrays
    may come back in either byte order (NumPy 2 returns native order for arrays under its
    256 KiB buffer size, big-endian above), and keys of a large table and of a small query
    must be comparable.
    """
    rows = np.asarray(rows, np.int32)
    offset = rows.view(np.uint32) ^ np.uint32(2 ** 31)
    keys = np.ascontiguousarray(offset.astype(_BIG_ENDIAN_U32))
    return keys.view(np.dtype((np.void, 4 * rows.shape[1]))).ravel()
