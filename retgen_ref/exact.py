"""Exact k-NN search: float32 candidates, scored again in float64, certified by a bound.

The fast pass of :mod:`retgen_ref.distances` ranks the stored rows by the float32 value

    v_j = α‖x_j‖² + β q·x_j          (l2: ‖x_j‖² − 2q·x_j;  ip: −q·x_j)

whose rounding error has a bound that does not depend on how BLAS orders its sums
(Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1, ``γ_d ≈ d·u``):

    |v̂_j − v_j|  ≤  E(q) = 2 (d + 2) u (R² + 2‖q‖R)    (l2)
                          2 (d + 2) u ‖q‖ R           (ip, cosine)

with ``u = 2⁻²⁴`` and ``R = max_j ‖x_j‖``. When the vectors lie far from the origin
compared with their spread (``xb[:, 0] += 12345``) that error exceeds the gaps between
neighbours and the float32 ranking is wrong, for us as for any ``‖x‖² − 2q·x`` search.

So :func:`exact_topk` keeps ``k' = k + 8`` candidates, scores them in float64 directly
(``Σ_t (q_t − x_t)²``, no cancellation) and *certifies* the result. Every row left out
has ``v̂_j ≥ v̂_(k')``, the worst kept candidate, hence a true value ``≥ v̂_(k') − E``; if
the k-th best exact value ``t_(k)`` is below that, no row left out can enter the top k.
A query that is not certified is scanned again: every row with ``v̂_j ≤ t_(k) + E`` (the
only rows that can beat ``t_(k)``) is scored in float64. Well-conditioned data are
certified at once, at the cost of scoring ``k'`` rows in float64; badly conditioned data
fall back to scoring the rows the bound cannot rule out, never to a wrong answer.

Ties are broken by id, so the result is the float64 brute force's, row for row.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .distances import (METRIC_FORM, NO_IDS, candidate_topk, scan_one, sort_heaps,
                        squared_norms, write_result_row, write_results)
from .heap import heap_replace_top, heap_sort, new_heap

UNIT_ROUNDOFF = 2.0 ** -24  # u of float32
#: Extra candidates scored in float64 beyond k: ``k' = k + CANDIDATE_MARGIN``. Eight
#: certify every query of Gaussian-mixture, clustered-unit, duplicated, near-duplicate and
#: offset-100 data at k = 1, 10 and 100 (``2k + 16`` did too, at up to 1.6× the cost of a
#: single query: the heap of candidates is most of it).
CANDIDATE_MARGIN = 8
_EMPTY64 = np.finfo(np.float64).max  # no infinity in the kernels (see heap.py)


def n_candidates(k: int, n: int) -> int:
    """How many float32 candidates a query keeps: ``min(n, k + CANDIDATE_MARGIN)``."""
    return min(n, k + CANDIDATE_MARGIN)


@njit(cache=True)
def exact_value(q, base, j, use_l2):
    """``‖q − x_j‖²`` (l2) or ``−q·x_j`` in float64, summed directly.

    Four running sums (coordinates ``t ≡ 0, 1, 2, 3 mod 4``) added at the end: a fixed
    order, so the value does not depend on the caller, and four independent chains of
    additions instead of one (the float64 re-scoring was latency-bound)."""
    d = q.shape[0]
    x = base[j]
    s0 = s1 = s2 = s3 = 0.0
    end = d - d % 4
    if use_l2:
        for t in range(0, end, 4):
            u0 = np.float64(q[t]) - np.float64(x[t])
            u1 = np.float64(q[t + 1]) - np.float64(x[t + 1])
            u2 = np.float64(q[t + 2]) - np.float64(x[t + 2])
            u3 = np.float64(q[t + 3]) - np.float64(x[t + 3])
            s0 += u0 * u0
            s1 += u1 * u1
            s2 += u2 * u2
            s3 += u3 * u3
        for t in range(end, d):
            u0 = np.float64(q[t]) - np.float64(x[t])
            s0 += u0 * u0
        return (s0 + s1) + (s2 + s3)
    for t in range(0, end, 4):
        s0 += np.float64(q[t]) * np.float64(x[t])
        s1 += np.float64(q[t + 1]) * np.float64(x[t + 1])
        s2 += np.float64(q[t + 2]) * np.float64(x[t + 2])
        s3 += np.float64(q[t + 3]) * np.float64(x[t + 3])
    for t in range(end, d):
        s0 += np.float64(q[t]) * np.float64(x[t])
    return -((s0 + s1) + (s2 + s3))


@njit(cache=True, inline="always")
def _offer(vals, ids, v, j):
    """Keep ``(v, j)`` if it beats the heap's worst pair in ``(value, id)`` order."""
    if v < vals[0] or (v == vals[0] and j < ids[0]):
        heap_replace_top(vals, ids, v, j)


@njit(cache=True)
def refine_one(q, base, cand_vals, cand_ids, shift, bound, use_l2, out_v, out_i):
    """Score one query's float32 candidates exactly into the heap ``(out_v, out_i)``.

    ``shift`` turns a float32 value into the exact value's scale (``‖q‖²`` for l2, 0 for
    ip). Returns True when the result is certified: the candidate heap was never full
    (every row is a candidate), or ``t_(k) < v̂_(k') + shift − bound``.
    """
    out_v[:] = _EMPTY64
    out_i[:] = -1
    worst = -_EMPTY64
    for c in range(cand_ids.shape[0]):  # a full heap: n_candidates() ≤ n
        j = cand_ids[c]
        worst = max(worst, np.float64(cand_vals[c]))
        _offer(out_v, out_i, exact_value(q, base, j, use_l2), j)
    every_row = cand_ids.shape[0] == base.shape[0]
    return every_row or out_v[0] < worst + shift - bound


@njit(fastmath=True, cache=True)
def rescan_one(q, base, base_norms, alpha, beta, limit, use_l2, out_v, out_i):
    """Score exactly every row whose float32 value ``v̂_j ≤ limit`` (``t_(k) + E − shift``)."""
    out_v[:] = _EMPTY64
    out_i[:] = -1
    d = q.shape[0]
    for j in range(base.shape[0]):
        x = base[j]
        s = np.float32(0.0)
        for t in range(d):
            s += q[t] * x[t]
        if alpha * base_norms[j] + beta * s <= limit:
            _offer(out_v, out_i, exact_value(q, base, j, use_l2), j)


@njit(cache=True)
def error_bound(query_sq_norm, d, max_sq_norm, use_l2):
    """``E(q)`` of the module docstring from ``‖q‖²``; scalars or arrays of ``‖q‖²``."""
    R = np.sqrt(max_sq_norm)
    qn = np.sqrt(query_sq_norm)
    gamma = 2.0 * (d + 2) * UNIT_ROUNDOFF
    return gamma * ((R * R + 2.0 * qn * R) if use_l2 else qn * R)


@njit(cache=True)
def exact_search_query(q, base, base_norms, n_cand, use_l2, max_sq_norm, out_d, out_i):
    """The whole search of one query in one serial call (no thread-pool wake-up, no
    NumPy temporaries): ``E(q)``, the float32 scan, the float64 certificate, the rescan
    if needed, and the FAISS-style row of ``len(out_d)`` results (float32 distances or
    similarities, ``±inf`` / ``-1`` padding) written into ``out_d`` and ``out_i``.

    Returns True if the query needed the rescan of :func:`rescan_one`.
    """
    k = out_d.shape[0]
    query_sq_norm = 0.0
    for t in range(q.shape[0]):
        query_sq_norm += np.float64(q[t]) * np.float64(q[t])
    bound = error_bound(query_sq_norm, q.shape[0], max_sq_norm, use_l2)
    shift = query_sq_norm if use_l2 else 0.0
    alpha = np.float32(1.0) if use_l2 else np.float32(0.0)
    beta = np.float32(-2.0) if use_l2 else np.float32(-1.0)
    cand_v, cand_i = new_heap(n_cand)
    scan_one(q, base, base_norms, alpha, beta, cand_v, cand_i)
    out_v = np.empty(k)
    rescanned = not refine_one(q, base, cand_v, cand_i, shift, bound, use_l2, out_v, out_i)
    if rescanned:
        rescan_one(q, base, base_norms, alpha, beta, out_v[0] + bound - shift, use_l2, out_v,
                   out_i)
    heap_sort(out_v, out_i)
    write_result_row(out_v, out_i, NO_IDS, use_l2, out_d, out_i)
    return rescanned


@njit(cache=True)
def exact_search_serial(queries, base, base_norms, n_cand, use_l2, max_sq_norm, out_d, out_i):
    """:func:`exact_search_query` for each row of ``queries`` in turn, into the rows of
    ``out_d``, ``out_i``, on the calling thread (the path of a single query: one call
    from Python, no thread pool). Returns how many queries needed the rescan."""
    rescanned = 0
    for i in range(queries.shape[0]):
        rescanned += exact_search_query(queries[i], base, base_norms, n_cand, use_l2,
                                        max_sq_norm, out_d[i], out_i[i])
    return rescanned


@njit(parallel=True, cache=True)
def refine_all(queries, base, cand_vals, cand_ids, shifts, bounds, use_l2, out_v, out_i,
               certified):
    """:func:`refine_one` for every query, in parallel."""
    for i in prange(queries.shape[0]):
        certified[i] = refine_one(queries[i], base, cand_vals[i], cand_ids[i], shifts[i],
                                  bounds[i], use_l2, out_v[i], out_i[i])


@njit(parallel=True, cache=True)
def rescan_some(queries, rows, base, base_norms, alpha, beta, limits, use_l2, out_v, out_i):
    """:func:`rescan_one` for the queries ``rows``, in parallel."""
    for r in prange(rows.shape[0]):
        i = rows[r]
        rescan_one(queries[i], base, base_norms, alpha, beta, limits[r], use_l2, out_v[i],
                   out_i[i])


def exact_topk(queries: np.ndarray, base: np.ndarray, base_norms: np.ndarray, k: int,
               metric: str, max_sq_norm: float | None = None, float64: bool = False):
    """Exact k nearest stored vectors of every query, FAISS conventions.

    Parameters
    ----------
    queries : (nq, d) float32, C-contiguous, already unit-normalised for ``cosine``
    base : (n, d) float32, C-contiguous, already unit-normalised for ``cosine``
    base_norms : (n,) float32
        ``‖x_j‖²`` (only read for ``l2``; pass zeros otherwise).
    k : int
        Number of neighbours; slots beyond ``n`` are padded with id ``-1`` and distance
        ``+inf`` (l2) or ``-inf`` (ip, cosine).
    max_sq_norm : float, optional
        ``max_j ‖x_j‖²`` (computed from ``base`` if not given).
    float64 : bool
        Return ``D`` unrounded, in float64 (to merge results without losing their order).

    Returns
    -------
    D : (nq, k) float32
        Squared L2 distances (ascending) or inner products (descending), computed in
        float64 and rounded once.
    I : (nq, k) int64
    rescanned : int
        Queries that the bound could not certify and were scanned again.
    """
    nq, n = queries.shape[0], base.shape[0]
    if max_sq_norm is None:
        max_sq_norm = float(np.einsum("ij,ij->i", base, base, dtype=np.float64).max())
    use_l2 = metric == "l2"
    n_cand = n_candidates(k, n)
    if nq == 1:
        D = np.empty((1, k), dtype=np.float64 if float64 else np.float32)
        I = np.empty((1, k), dtype=np.int64)
        rescanned = exact_search_serial(queries, base, base_norms, n_cand, use_l2,
                                        max_sq_norm, D, I)
        return D, I, rescanned
    alpha, beta, _ = METRIC_FORM[metric]
    alpha, beta = np.float32(alpha), np.float32(beta)
    query_sq_norms = np.einsum("ij,ij->i", queries, queries, dtype=np.float64)
    bounds = error_bound(query_sq_norms, queries.shape[1], max_sq_norm, use_l2)
    shifts = query_sq_norms if use_l2 else np.zeros(nq)
    out_v = np.empty((nq, k))
    out_i = np.empty((nq, k), dtype=np.int64)
    cand_v, cand_i = candidate_topk(queries, base, base_norms, n_cand, metric, sort=False)
    certified = np.empty(nq, dtype=np.bool_)
    refine_all(queries, base, cand_v, cand_i, shifts, bounds, use_l2, out_v, out_i,
               certified)
    rows = np.flatnonzero(~certified)
    rescanned = len(rows)
    if rescanned:
        limits = out_v[rows, 0] + bounds[rows] - shifts[rows]
        rescan_some(queries, rows, base, base_norms, alpha, beta, limits, use_l2, out_v,
                    out_i)
    sort_heaps(out_v, out_i)
    D = out_v if float64 else np.empty((nq, k), dtype=np.float32)
    write_results(out_v, out_i, NO_IDS, use_l2, D, out_i)
    return D, out_i, rescanned


#: Bytes of stored rows gathered at a time by :func:`exact_topk_rows`.
GATHER_BLOCK_BYTES = 64 * 2 ** 20


def exact_topk_rows(queries: np.ndarray, base: np.ndarray, base_norms: np.ndarray,
                    rows: np.ndarray, k: int, metric: str, max_sq_norm: float | None = None):
    """:func:`exact_topk` over the rows ``rows`` (ascending positions) of ``base`` only: a
    filtered exact search. ``I`` holds positions in ``base``, ties broken by position.
    ``base_norms`` may be ``None`` (computed for the rows gathered).

    The rows are gathered in blocks of about :data:`GATHER_BLOCK_BYTES` and the blocks'
    results merged, so the memory used does not grow with ``len(rows)``; the cost is the
    scan of ``len(rows)`` rows, not of ``base``. ``max_sq_norm`` bounds the whole base's
    norms, so it bounds the subset's (the certificate stays valid).
    """
    nq = len(queries)
    D = np.full((nq, k), np.inf if metric == "l2" else -np.inf)
    I = np.full((nq, k), -1, dtype=np.int64)
    rescanned = 0
    step = max(1, GATHER_BLOCK_BYTES // (4 * base.shape[1] + 4))
    for start in range(0, len(rows), step):
        block = rows[start:start + step]
        gathered = base[block]
        norms = squared_norms(gathered) if base_norms is None else base_norms[block]
        Db, Ib, r = exact_topk(queries, gathered, norms, min(k, len(block)), metric,
                               max_sq_norm, float64=True)
        # merged in float64, rounded once: values equal in float32 keep their exact order
        D, I = merge_results(D, I, Db, np.where(Ib >= 0, block[np.maximum(Ib, 0)], -1), k,
                             metric)
        rescanned += r
    return D.astype(np.float32), I, rescanned


def merge_results(D, I, D2, I2, k: int, metric: str):
    """Best ``k`` of two result sets, ordered by distance and then by id (deterministic;
    ``-1`` padding last)."""
    D, I = np.concatenate([D, D2], axis=1), np.concatenate([I, I2], axis=1)
    order = np.lexsort((np.where(I < 0, np.iinfo(np.int64).max, I),
                        D if metric == "l2" else -D), axis=1)[:, :k]
    return np.take_along_axis(D, order, axis=1), np.take_along_axis(I, order, axis=1)
