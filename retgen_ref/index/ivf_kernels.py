"""Numba kernels that scan the probed inverted lists of IVF indexes, one query per thread.

Every kernel keeps, per query, the k best ``(value, position)`` pairs in a heap of
:mod:`retgen_ref.heap` (smaller value = better), where the position is the entry's row in
the lists' pool (the caller maps it to the stored id, or to the stored vector for exact
re-ranking), and counts the entries it scored, for the cost model of
``docs/03-ivf-hnsw-lsh.md``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..heap import heap_replace_top


@njit(parallel=True, fastmath=True, cache=True)
def scan_flat_lists(queries, probes, pool, offsets, sizes, use_l2,
                    heap_vals, heap_ids, scanned):
    """IVF-Flat: score every stored vector of the probed lists exactly.

    ``use_l2``: value ``‖q − x‖²`` summed directly (no cancellation); otherwise ``−q·x``.
    ``probes[i]`` holds the lists of query ``i`` (``-1`` entries are skipped).
    """
    nq, d = queries.shape
    for i in prange(nq):
        q = queries[i]
        hv = heap_vals[i]
        hi = heap_ids[i]
        count = 0
        for p in range(probes.shape[1]):
            lst = probes[i, p]
            if lst < 0:
                continue
            start = offsets[lst]
            end = start + sizes[lst]
            count += end - start
            for j in range(start, end):
                x = pool[j]
                s = np.float32(0.0)
                if use_l2:
                    for t in range(d):
                        diff = q[t] - x[t]
                        s += diff * diff
                else:
                    for t in range(d):
                        s += q[t] * x[t]
                    s = -s
                if s < hv[0]:
                    heap_replace_top(hv, hi, s, j)
        scanned[i] = count


@njit(parallel=True, cache=True)
def scan_pq_lists(query_tables, list_terms, coarse_terms, probes, codes, offsets, sizes,
                  heap_vals, heap_ids, scanned):
    """IVF-PQ: score the PQ codes of the probed lists with lookup tables (ADC).

    The value of a code ``c`` in list ``l`` for query ``i`` is

        coarse_terms[i, p] + Σ_j (list_terms[l, j, c_j] + query_tables[i, j, c_j])

    which covers both metrics (see ``IVFPQIndex``): for l2 with residuals,
    ``‖q − y_l‖² + Σ_j (‖r_j‖² + 2 y_l,j·r_j) − 2 Σ_j q_j·r_j``; for ip, ``−q·y_l − Σ_j q_j·r_j``.
    ``list_terms`` may have a first axis of length 1 when it does not depend on the list.
    Per probed list the two tables are summed once into an ``(m, ksub)`` table, so the scan
    costs ``m`` lookups and adds per code.
    """
    nq = query_tables.shape[0]
    m, ksub = query_tables.shape[1], query_tables.shape[2]
    shared = list_terms.shape[0] == 1
    for i in prange(nq):
        hv = heap_vals[i]
        hi = heap_ids[i]
        table = np.empty((m, ksub), dtype=np.float32)
        count = 0
        for p in range(probes.shape[1]):
            lst = probes[i, p]
            if lst < 0:
                continue
            lt = list_terms[0] if shared else list_terms[lst]
            for j in range(m):
                for c in range(ksub):
                    table[j, c] = lt[j, c] + query_tables[i, j, c]
            base = coarse_terms[i, p]
            start = offsets[lst]
            end = start + sizes[lst]
            count += end - start
            for e in range(start, end):
                code = codes[e]
                v = base
                for j in range(m):
                    v += table[j, code[j]]
                if v < hv[0]:
                    heap_replace_top(hv, hi, v, e)
        scanned[i] = count
