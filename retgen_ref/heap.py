"""Fixed-size max-heaps of ``(value, id)`` pairs, the selection structure of every index.

A search keeps, per query, the k best candidates seen so far in a max-heap keyed on the
value to *minimise* (squared L2 distance, or the negated similarity). The root is the worst
kept candidate, so the hot loop tests a new candidate against ``vals[0]`` inline and calls
:func:`heap_replace_top` only for the rare candidate that enters the top k. The heap
operations are inlined into their callers at Numba's IR level (``inline="always"``): an
out-of-line call that passes two arrays can cost as much as the short sift it performs.

A growing *min*-heap (:func:`min_heap_push`, :func:`min_heap_pop`) holds the candidate
queue of graph searches (HNSW): the closest unexpanded node first.

Ties are broken by id: the heap orders pairs lexicographically by ``(value, id)``, so
:func:`heap_sort` returns results sorted by value and then by id, the same on every run.
Empty slots hold ``(EMPTY, -1)`` with ``EMPTY`` the largest finite float32, as in FAISS:
no infinity ever enters a kernel, so kernels may use ``fastmath`` (which assumes finite
values); searches turn the empty slots into ``±inf`` padding at the end.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _greater(va, ia, vb, ib):
    return va > vb or (va == vb and ia > ib)


@njit(cache=True, inline="always")
def heap_replace_top(vals, ids, v, i):
    """Replace the root of the max-heap ``(vals, ids)`` with ``(v, i)`` and sift it down."""
    n = vals.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        right = child + 1
        if right < n and _greater(vals[right], ids[right], vals[child], ids[child]):
            child = right
        if not _greater(vals[child], ids[child], v, i):
            break
        vals[pos] = vals[child]
        ids[pos] = ids[child]
        pos = child
    vals[pos] = v
    ids[pos] = i


@njit(cache=True)
def heap_sort(vals, ids):
    """Sort a max-heap in place into ascending ``(value, id)`` order."""
    n = vals.shape[0]
    for end in range(n - 1, 0, -1):
        top_v, top_i = vals[0], ids[0]
        last_v, last_i = vals[end], ids[end]
        vals[end] = top_v
        ids[end] = top_i
        heap_replace_top(vals[:end], ids[:end], last_v, last_i)


@njit(cache=True, inline="always")
def min_heap_push(vals, ids, n, v, i):
    """Push ``(v, i)`` on the min-heap held in the first ``n`` slots of ``(vals, ids)``."""
    pos = n
    while pos > 0:
        parent = (pos - 1) >> 1
        pv = vals[parent]
        if pv < v or (pv == v and ids[parent] < i):
            break
        vals[pos] = pv
        ids[pos] = ids[parent]
        pos = parent
    vals[pos] = v
    ids[pos] = i


@njit(cache=True, inline="always")
def min_heap_pop(vals, ids, n):
    """Remove the root of the min-heap of ``n`` entries (the caller read it first)."""
    n -= 1
    v, i = vals[n], ids[n]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        right = child + 1
        if right < n and (vals[right] < vals[child]
                          or (vals[right] == vals[child] and ids[right] < ids[child])):
            child = right
        if v < vals[child] or (v == vals[child] and i < ids[child]):
            break
        vals[pos] = vals[child]
        ids[pos] = ids[child]
        pos = child
    vals[pos] = v
    ids[pos] = i


EMPTY = np.finfo(np.float32).max


@njit(cache=True)
def new_heap(k):
    """One empty float32 heap of size ``k`` inside a kernel: ``(EMPTY…, -1…)``."""
    return np.full(k, EMPTY, dtype=np.float32), np.full(k, -1, dtype=np.int64)


def new_heaps(nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``nq`` empty float32 heaps of size ``k``: values ``EMPTY`` and ids ``-1``."""
    return np.full((nq, k), EMPTY, dtype=np.float32), np.full((nq, k), -1, dtype=np.int64)
