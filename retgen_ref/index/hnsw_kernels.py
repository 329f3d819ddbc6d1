"""Numba kernels of :class:`~retgen_ref.index.hnsw.HNSWIndex`: graph search and insertion.

The graph (Malkov & Yashunin, arXiv:1603.09320) lives in flat arrays, all owned by the
index and passed in by the caller:

``vectors``  ``(cap, d)`` float32, the stored points;
``levels``   ``(cap,)`` int32, the top layer of every node;
``links0``   ``(cap, 2M)`` int32 and ``counts0`` ``(cap,)`` int32: layer-0 neighbour lists;
``ulinks``   ``(rows, M)`` int32 and ``ucounts`` ``(rows,)`` int32: the lists of layers ≥ 1,
             only for nodes with a level > 0; node ``i``'s list on layer ``l ≥ 1`` is row
             ``offsets[i] + l − 1``.

Every metric is a value to minimise (:mod:`retgen_ref.distances`): ``‖q − x‖²`` for l2 and
``−q·x`` for ip and cosine (unit rows). Visited sets are generation-stamped: a node is
visited by the current search iff ``stamps[node] == stamp``, so nothing is cleared between
searches. A candidate queue is a binary min-heap of ``(value, id)`` pairs; results are the
fixed-size max-heaps of :mod:`retgen_ref.heap`, whose ``EMPTY`` sentinel makes "the heap is
not full yet" and "closer than the worst result" one comparison. The stamps, heaps and
queues live in a :class:`Scratch` with one row per Numba thread (``numba.get_thread_id()``);
a :class:`ScratchPool` gives every concurrent caller its own, reused from call to call.

``fastmath`` lets the distance loops vectorise; the tests check the distances returned
against NumPy and the results against exact search.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
from numba import njit, prange

from ..distances import minimised_value, write_result_row
from ..heap import EMPTY, heap_replace_top, heap_sort, min_heap_pop, min_heap_push
from .base import NO_FILTER

_STAMP_LIMIT = np.iinfo(np.int32).max


@njit(inline="always", cache=True)
def _dist(vectors, j, q, ip):
    """The minimised value of ``q`` and row ``j``: ``−q·x_j`` or ``‖q − x_j‖²``."""
    return minimised_value(q, vectors, j, not ip)


@njit(inline="always", cache=True)
def _next_stamp(stamps, gens, t):
    """A fresh visited stamp for scratch row ``t`` (clears the row once every 2³¹ searches)."""
    g = gens[t] + 1
    if g == _STAMP_LIMIT:
        stamps[t, :] = 0
        g = 1
    gens[t] = g
    return g


@njit(fastmath=True, cache=True)
def greedy_descent(q, vectors, ulinks, ucounts, offsets, layer, cur, cur_d, ip):
    """Search with ``ef = 1`` on ``layer ≥ 1``: move to any closer neighbour until none is.

    Returns the local minimum ``(node, value)`` and the number of distances computed.
    """
    ndis = 0
    changed = True
    while changed:
        changed = False
        row = offsets[cur] + layer - 1
        for s in range(ucounts[row]):
            j = ulinks[row, s]
            dj = _dist(vectors, j, q, ip)
            ndis += 1
            if dj < cur_d:
                cur, cur_d, changed = j, dj, True
    return cur, cur_d, ndis


@njit(fastmath=True, cache=True)
def beam_search(q, vectors, links, counts, offsets, layer, entry, entry_d, res_v, res_i,
                cand_v, cand_i, stamps, stamp, allowed, ip):
    """Paper Algorithm 2 (SEARCH-LAYER): best-first search of one layer with ``ef`` results.

    ``res_v, res_i`` (size ``ef``) receive the ``ef`` closest nodes found, as a max-heap
    (unsorted; unused slots ``(EMPTY, -1)``). The closest unexpanded candidate is expanded
    until it is farther than the worst of ``ef`` results. ``cand_v, cand_i`` need room for
    every node (each is pushed at most once). Returns the number of distances computed.

    A non-empty ``allowed`` (a filtered search, or deleted nodes) keeps the nodes ``j``
    with ``allowed[j]`` false out of the results but not out of the candidates: the
    search still walks through them, and stops only once ``ef`` allowed nodes are found
    and no candidate beats the worst (hnswlib's filtered ``searchBaseLayerST``).
    """
    filtered = allowed.shape[0] > 0
    res_v[:] = EMPTY
    res_i[:] = -1
    if not filtered or allowed[entry]:
        heap_replace_top(res_v, res_i, entry_d, entry)
    stamps[entry] = stamp
    cand_v[0] = entry_d
    cand_i[0] = entry
    n_cand = 1
    ndis = 0
    while n_cand > 0:
        if cand_v[0] > res_v[0]:
            break
        cur = cand_i[0]
        min_heap_pop(cand_v, cand_i, n_cand)
        n_cand -= 1
        row = cur if layer == 0 else offsets[cur] + layer - 1
        for s in range(counts[row]):
            j = links[row, s]
            if stamps[j] == stamp:
                continue
            stamps[j] = stamp
            dj = _dist(vectors, j, q, ip)
            ndis += 1
            if dj < res_v[0]:
                min_heap_push(cand_v, cand_i, n_cand, dj, j)
                n_cand += 1
                if not filtered or allowed[j]:
                    heap_replace_top(res_v, res_i, dj, j)
    return ndis


@njit(fastmath=True, cache=True)
def select_neighbors(vectors, cand_v, cand_i, n, max_keep, links, counts, row, ip):
    """Paper Algorithm 4 (SELECT-NEIGHBORS-HEURISTIC) as hnswlib runs it; writes ``links[row]``.

    ``cand_v, cand_i``: ``n`` candidates sorted by value to the base point. Fewer than
    ``max_keep`` candidates are all kept. Otherwise candidates are taken closest first and
    one is kept only if it is closer to the base point than to every neighbour kept so
    far, until ``max_keep`` are kept; no extension of candidates, no pruned fill-up. The
    row's unused slots are set to -1.
    """
    kept = 0
    for c in range(n):
        if kept == max_keep:
            break
        cid = cand_i[c]
        good = True
        if n >= max_keep:
            for r in range(kept):
                if _dist(vectors, cid, vectors[links[row, r]], ip) < cand_v[c]:
                    good = False
                    break
        if good:
            links[row, kept] = cid
            kept += 1
    counts[row] = kept
    links[row, kept:] = -1


@njit(fastmath=True, cache=True)
def _insert_one(p, vectors, levels, offsets, links0, counts0, ulinks, ucounts, start, entry,
                max_level, M, stamps, gens, cand_v, cand_i, res_v, res_i, ip):
    """Body of :func:`insert_forward` for node ``p``, on the calling thread's scratch row."""
    t = numba.get_thread_id()
    q = vectors[p]
    hv, hi = res_v[t], res_i[t]
    top = levels[p]
    cur = entry
    cur_d = np.float32(0.0)
    if start > 0:
        cur_d = _dist(vectors, entry, q, ip)
        for layer in range(max_level, top, -1):
            cur, cur_d, _ = greedy_descent(q, vectors, ulinks, ucounts, offsets, layer, cur,
                                           cur_d, ip)
    for layer in range(top, -1, -1):  # every node a candidate, deleted ones too (hnswlib)
        hv[:] = EMPTY
        hi[:] = -1
        if start > 0 and layer <= max_level:
            stamp = _next_stamp(stamps, gens, t)
            if layer == 0:
                beam_search(q, vectors, links0, counts0, offsets, 0, cur, cur_d, hv, hi,
                            cand_v[t], cand_i[t], stamps[t], stamp, NO_FILTER, ip)
            else:
                beam_search(q, vectors, ulinks, ucounts, offsets, layer, cur, cur_d, hv, hi,
                            cand_v[t], cand_i[t], stamps[t], stamp, NO_FILTER, ip)
            for s in range(hv.shape[0]):  # the closest result enters the next layer
                if hi[s] >= 0 and (hv[s] < cur_d or (hv[s] == cur_d and hi[s] < cur)):
                    cur, cur_d = hi[s], hv[s]
        for j in range(start, p):
            if levels[j] >= layer:
                dj = _dist(vectors, j, q, ip)
                if dj < hv[0]:
                    heap_replace_top(hv, hi, dj, j)
        heap_sort(hv, hi)
        n = 0
        while n < hi.shape[0] and hi[n] >= 0:
            n += 1
        if layer == 0:
            select_neighbors(vectors, hv, hi, n, M, links0, counts0, p, ip)
        else:
            select_neighbors(vectors, hv, hi, n, M, ulinks, ucounts, offsets[p] + layer - 1,
                             ip)


@njit(parallel=True, fastmath=True, cache=True)
def insert_forward(vectors, levels, offsets, links0, counts0, ulinks, ucounts, start, stop,
                   entry, max_level, M, stamps, gens, cand_v, cand_i, res_v, res_i, ip):
    """Phase 1 of inserting nodes ``start … stop−1``: their own neighbour lists, in parallel.

    For node ``p`` (paper Algorithm 1, INSERT): greedy descent from ``entry`` through the
    layers above ``levels[p]``, then on each layer ``l ≤ levels[p]`` a beam search with
    ``ef = res_v.shape[1]`` (``ef_construction``) whose closest result enters layer
    ``l − 1``. The graph searched is the one before this batch (nodes ``< start``), which
    no thread modifies; the earlier nodes of the batch (``start ≤ j < p``, level ≥ l) are
    added to the candidates exactly, by brute force. ``M`` neighbours are selected with
    :func:`select_neighbors`. Scratch row ``t`` belongs to thread ``t``.
    """
    for p in prange(start, stop):
        _insert_one(p, vectors, levels, offsets, links0, counts0, ulinks, ucounts, start,
                    entry, max_level, M, stamps, gens, cand_v, cand_i, res_v, res_i, ip)


@njit(fastmath=True, cache=True)
def _link_back_one(g, vectors, offsets, links0, counts0, ulinks, ucounts, group_layer,
                   group_target, group_ptr, sources, M, ip):
    """Body of :func:`insert_reverse` for group ``g``."""
    layer = group_layer[g]
    tgt = group_target[g]
    if layer == 0:
        links, counts, row, mmax = links0, counts0, tgt, 2 * M
    else:
        links, counts, row, mmax = ulinks, ucounts, offsets[tgt] + layer - 1, M
    hv = np.empty(mmax + 1, dtype=np.float32)
    hi = np.empty(mmax + 1, dtype=np.int64)
    x = vectors[tgt]
    for s in range(group_ptr[g], group_ptr[g + 1]):
        src = sources[s]
        c = counts[row]
        if c < mmax:
            links[row, c] = src
            counts[row] = c + 1
            continue
        hv[:] = EMPTY
        hi[:] = -1
        heap_replace_top(hv, hi, _dist(vectors, src, x, ip), src)
        for r in range(c):
            j = links[row, r]
            heap_replace_top(hv, hi, _dist(vectors, j, x, ip), j)
        heap_sort(hv, hi)
        select_neighbors(vectors, hv, hi, c + 1, mmax, links, counts, row, ip)


@njit(parallel=True, fastmath=True, cache=True)
def insert_reverse(vectors, offsets, links0, counts0, ulinks, ucounts, group_layer,
                   group_target, group_ptr, sources, M, ip):
    """Phase 2: the reverse links, in parallel over the (layer, target) lists they change.

    Group ``g`` adds ``sources[group_ptr[g]:group_ptr[g+1]]`` (ascending ids) to the list
    of ``group_target[g]`` on layer ``group_layer[g]``. A list with room (``2M`` on layer 0,
    ``M`` above) takes the new id; a full one is re-selected by :func:`select_neighbors`
    among its links and the new id (hnswlib's ``mutuallyConnectNewElement``). One thread
    owns a list, and a list sees its sources in id order, so the result does not depend on
    the thread count.
    """
    for g in prange(group_layer.shape[0]):
        _link_back_one(g, vectors, offsets, links0, counts0, ulinks, ucounts, group_layer,
                       group_target, group_ptr, sources, M, ip)


@njit(fastmath=True, cache=True)
def _search_one(q, vectors, links0, counts0, ulinks, ucounts, offsets, entry, max_level,
                hv, hi, cand_v, cand_i, stamps, stamp, allowed, ip):
    """Paper Algorithm 5 (K-NN-SEARCH): greedy descent to layer 1, then beam search on 0.

    Leaves the ``ef`` results sorted ascending in ``(hv, hi)``; returns the distance count.
    """
    cur_d = _dist(vectors, entry, q, ip)
    cur = entry
    ndis = 1
    for layer in range(max_level, 0, -1):
        cur, cur_d, nd = greedy_descent(q, vectors, ulinks, ucounts, offsets, layer, cur,
                                        cur_d, ip)
        ndis += nd
    ndis += beam_search(q, vectors, links0, counts0, offsets, 0, cur, cur_d, hv, hi, cand_v,
                        cand_i, stamps, stamp, allowed, ip)
    heap_sort(hv, hi)
    return ndis


@njit(parallel=True, fastmath=True, cache=True)
def search_parallel(queries, vectors, links0, counts0, ulinks, ucounts, offsets, entry,
                    max_level, stamps, gens, cand_v, cand_i, res_v, res_i, labels, out_d,
                    out_i, ndis, allowed, ip):
    """Search every query (in parallel); the ``k`` best of each go to ``out_d, out_i`` as
    FAISS-style rows (:func:`~retgen_ref.distances.write_result_row`: the nodes' ``labels``,
    similarities for ip, padding), only nodes ``allowed`` when it is not empty (see
    :func:`beam_search`)."""
    for i in prange(queries.shape[0]):
        t = numba.get_thread_id()
        hv, hi = res_v[t], res_i[t]
        ndis[i] = _search_one(queries[i], vectors, links0, counts0, ulinks, ucounts, offsets,
                              entry, max_level, hv, hi, cand_v[t], cand_i[t], stamps[t],
                              _next_stamp(stamps, gens, t), allowed, ip)
        write_result_row(hv, hi, labels, not ip, out_d[i], out_i[i])


@njit(fastmath=True, cache=True)
def search_serial(queries, vectors, links0, counts0, ulinks, ucounts, offsets, entry,
                  max_level, stamps, gens, cand_v, cand_i, res_v, res_i, labels, out_d, out_i,
                  ndis, allowed, ip):
    """:func:`search_parallel` on one thread, without the cost of starting the pool."""
    hv, hi = res_v[0], res_i[0]
    for i in range(queries.shape[0]):
        ndis[i] = _search_one(queries[i], vectors, links0, counts0, ulinks, ucounts, offsets,
                              entry, max_level, hv, hi, cand_v[0], cand_i[0], stamps[0],
                              _next_stamp(stamps, gens, 0), allowed, ip)
        write_result_row(hv, hi, labels, not ip, out_d[i], out_i[i])


class Scratch:
    """Per-thread visited stamps and candidate heaps for one search or build at a time."""

    def __init__(self, capacity: int):
        rows = numba.config.NUMBA_NUM_THREADS
        self.capacity = capacity
        self.stamps = np.zeros((rows, capacity), dtype=np.int32)
        self.gens = np.zeros(rows, dtype=np.int32)
        self.cand_v = np.empty((rows, capacity), dtype=np.float32)
        self.cand_i = np.empty((rows, capacity), dtype=np.int32)
        self._results = (np.empty((rows, 0), np.float32), np.empty((rows, 0), np.int64))

    def results(self, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-thread result heaps of size ``ef`` (kept between calls with the same ``ef``)."""
        if self._results[0].shape[1] != ef:
            rows = self.stamps.shape[0]
            self._results = (np.empty((rows, ef), np.float32), np.empty((rows, ef), np.int64))
        return self._results


class ScratchPool:
    """Scratch buffers reused across calls; concurrent callers each get their own."""

    def __init__(self):
        self._free: list[Scratch] = []
        self._lock = threading.Lock()

    def acquire(self, capacity: int) -> Scratch:
        """A scratch for graphs of up to ``capacity`` nodes; give it back with :meth:`release`."""
        with self._lock:
            scratch = self._free.pop() if self._free else None
        if scratch is None or scratch.capacity < capacity:
            scratch = Scratch(capacity)
        return scratch

    def release(self, scratch: Scratch) -> None:
        with self._lock:
            self._free.append(scratch)
