"""Numba kernels that scan the probed inverted lists of IVF indexes.

Every kernel keeps, per query, the k best ``(value, position)`` pairs in a heap of
:mod:`retgen_ref.heap` (smaller value = better), where the position is the entry's row in
the lists' pool (the caller maps it to the stored id, or to the stored vector for exact
re-ranking), and counts the entries it scored, for the cost model of
``docs/03-ivf-hnsw-lsh.md``.

The work for one query is written once (``*_one``); the batch kernels run it in parallel
across queries, and the single-query kernels run the coarse search, the list scan, the
final sort and the result row in one call, because for one query the overhead of separate calls would cost
more than the search itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..distances import minimised_value, scan_one, write_result_row
from ..heap import heap_replace_top, heap_sort, new_heap


@njit(fastmath=True, cache=True)
def flat_scan_one(q, probes, pool, offsets, sizes, use_l2, allowed, hv, hi):
    """IVF-Flat, one query: score every stored vector of the lists in ``probes``.

    Values by :func:`~retgen_ref.distances.minimised_value`. ``-1`` entries of ``probes``
    are skipped, and so are the pool positions ``j`` with ``allowed[j]`` false when
    ``allowed`` is not empty (a filtered search). Returns the number of vectors scored.
    """
    filtered = allowed.shape[0] > 0
    count = 0
    for p in range(probes.shape[0]):
        lst = probes[p]
        if lst < 0:
            continue
        start = offsets[lst]
        end = start + sizes[lst]
        count += end - start
        for j in range(start, end):
            if filtered and not allowed[j]:
                count -= 1
                continue
            v = minimised_value(q, pool, j, use_l2)
            if v < hv[0]:
                heap_replace_top(hv, hi, v, j)
    return count


@njit(cache=True, inline="always")
def _sum_tables(list_table, query_table, out):
    for j in range(out.shape[0]):
        for c in range(out.shape[1]):
            out[j, c] = list_table[j, c] + query_table[j, c]


@njit(cache=True)
def pq_scan_one(query_table, list_terms, coarse_terms, probes, codes, offsets, sizes, table,
                allowed, hv, hi):
    """IVF-PQ, one query: score the PQ codes of the lists in ``probes`` by table look-ups.

    The value of a code ``c`` in list ``l = probes[p]`` is

        coarse_terms[p] + Σ_j (list_terms[l, j, c_j] + query_table[j, c_j])

    which covers both metrics (see ``IVFPQIndex``): for l2 with residuals,
    ``‖q − y_l‖² + Σ_j (‖r_j‖² + 2 y_l,j·r_j) − 2 Σ_j q_j·r_j``; for ip, ``−q·y_l − Σ_j q_j·r_j``.
    ``list_terms`` may have a first axis of length 1 when it does not depend on the list.
    The two tables are summed into ``table`` (``(m, ksub)`` scratch) once per probed list,
    or once per query when ``list_terms`` is shared, so a code costs ``m`` look-ups and
    adds. Positions ``e`` with ``allowed[e]`` false are skipped when ``allowed`` is not
    empty. Returns the number of codes scored.
    """
    filtered = allowed.shape[0] > 0
    m = query_table.shape[0]
    shared = list_terms.shape[0] == 1
    if shared:
        _sum_tables(list_terms[0], query_table, table)
    count = 0
    for p in range(probes.shape[0]):
        lst = probes[p]
        if lst < 0:
            continue
        if not shared:
            _sum_tables(list_terms[lst], query_table, table)
        base = coarse_terms[p]
        start = offsets[lst]
        end = start + sizes[lst]
        count += end - start
        for e in range(start, end):
            if filtered and not allowed[e]:
                count -= 1
                continue
            code = codes[e]
            v = base
            for j in range(m):
                v += table[j, code[j]]
            if v < hv[0]:
                heap_replace_top(hv, hi, v, e)
    return count


@njit(parallel=True, cache=True)
def scan_flat_lists(queries, probes, pool, offsets, sizes, use_l2, allowed, heap_vals,
                    heap_ids, scanned):
    """:func:`flat_scan_one` for every query, in parallel; counts into ``scanned``."""
    for i in prange(queries.shape[0]):
        scanned[i] = flat_scan_one(queries[i], probes[i], pool, offsets, sizes, use_l2,
                                   allowed, heap_vals[i], heap_ids[i])


@njit(parallel=True, cache=True)
def scan_pq_lists(query_tables, list_terms, coarse_terms, probes, codes, offsets, sizes,
                  allowed, heap_vals, heap_ids, scanned):
    """:func:`pq_scan_one` for every query, in parallel; counts into ``scanned``."""
    m, ksub = query_tables.shape[1], query_tables.shape[2]
    for i in prange(query_tables.shape[0]):
        table = np.empty((m, ksub), dtype=np.float32)
        scanned[i] = pq_scan_one(query_tables[i], list_terms, coarse_terms[i], probes[i],
                                 codes, offsets, sizes, table, allowed, heap_vals[i],
                                 heap_ids[i])


@njit(cache=True)
def coarse_one(q, centroids, centroid_norms, alpha, beta, nprobe):
    """The ``nprobe`` best lists of one query: ``(values, lists)``, best first.

    Values are the minimised coarse values of :mod:`retgen_ref.distances`
    (``‖y‖² − 2q·y`` for l2, ``−q·y`` for ip).
    """
    values, lists = new_heap(nprobe)
    scan_one(q, centroids, centroid_norms, alpha, beta, values, lists)
    heap_sort(values, lists)
    return values, lists


@njit(cache=True)
def flat_search_serial(queries, centroids, centroid_norms, alpha, beta, nprobe, pool, offsets,
                       sizes, use_l2, allowed, ids, out_d, out_i, scanned):
    """IVF-Flat search of each query in turn, on the calling thread, in one call from
    Python: the coarse search, the list scan and the result row
    (:func:`~retgen_ref.distances.write_result_row`) written into the query's row of
    ``out_d``, ``out_i``; the vectors it scanned into ``scanned``."""
    for i in range(queries.shape[0]):
        q = queries[i]
        _, lists = coarse_one(q, centroids, centroid_norms, alpha, beta, nprobe)
        hv, hi = new_heap(out_d.shape[1])
        scanned[i] = flat_scan_one(q, lists, pool, offsets, sizes, use_l2, allowed, hv, hi)
        heap_sort(hv, hi)
        write_result_row(hv, hi, ids, use_l2, out_d[i], out_i[i])


@njit(cache=True)
def pq_search_serial(queries, codebooks_t, list_terms, centroids, centroid_norms, alpha, beta,
                     nprobe, by_residual, codes, offsets, sizes, allowed, ids, use_l2, out_d,
                     out_i, scanned):
    """IVF-PQ search of each query in turn, as :func:`flat_search_serial`.

    A query's table is ``−2 q_j·C_jc`` (l2) or ``−q_j·C_jc`` (ip) from the transposed
    codebooks ``(m, dsub, ksub)``. The coarse term of probed list ``p`` (see
    ``IVFPQIndex``) is ``‖q − y_l‖² = value_p + ‖q‖²`` for l2 with residuals, ``‖q‖²``
    without; ``−q·y_l = value_p`` for ip with residuals, 0 without.
    """
    m, dsub, ksub = codebooks_t.shape
    table_scale = np.float32(-2.0) if use_l2 else np.float32(-1.0)
    coarse_weight = np.float32(1.0) if by_residual else np.float32(0.0)
    query_table = np.empty((m, ksub), dtype=np.float32)
    table = np.empty((m, ksub), dtype=np.float32)
    for i in range(queries.shape[0]):
        q = queries[i]
        query_table[:] = 0.0
        for j in range(m):
            for t in range(dsub):
                qt = table_scale * q[j * dsub + t]
                row = codebooks_t[j, t]
                for c in range(ksub):
                    query_table[j, c] += qt * row[c]
        coarse_offset = np.float32(0.0)
        if use_l2:
            for t in range(q.shape[0]):
                coarse_offset += q[t] * q[t]
        values, lists = coarse_one(q, centroids, centroid_norms, alpha, beta, nprobe)
        coarse_terms = coarse_weight * values + coarse_offset
        hv, hi = new_heap(out_d.shape[1])
        scanned[i] = pq_scan_one(query_table, list_terms, coarse_terms, lists, codes, offsets,
                                 sizes, table, allowed, hv, hi)
        heap_sort(hv, hi)
        write_result_row(hv, hi, ids, use_l2, out_d[i], out_i[i])
