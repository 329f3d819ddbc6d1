"""Metrics and the blocked float32 top-k scan under every exact search.

Every metric is turned into one quantity to *minimise* per stored vector ``x_j``:

=========  ==========================================  =================================
metric     minimised value ``v_j``                      returned ``D``
=========  ==========================================  =================================
``l2``     ``‖x_j‖² − 2 q·x_j``                         ``max(v_j + ‖q‖², 0)`` = ‖q − x_j‖²
``ip``     ``− q·x_j``                                  ``−v_j`` = q·x_j
``cosine`` ``− q̂·x̂_j`` (both rows unit-normalised)     ``−v_j`` = cos(q, x_j)
=========  ==========================================  =================================

so a single selection kernel serves all three: ``v_j = α‖x_j‖² + β q·x_j`` with
``(α, β) = (1, −2)`` for l2 and ``(0, −1)`` otherwise.

Two paths compute the products ``q·x_j``:

* a batch of queries (``nq >= BLAS_THRESHOLD``) multiplies tiles of queries and stored
  vectors with BLAS and merges each tile into per-query heaps, in parallel across blocks
  of queries (:func:`blas_tiles_topk`);
* a few queries are scanned directly by a Numba loop (:func:`scan_topk`), one query per
  thread, which avoids the cost of setting up a matrix product for a single row; one query
  alone runs in one serial call (:func:`scan_sorted_one`).

The float32 value ``‖x_j‖² − 2 q·x_j`` loses the distance when ``‖x_j‖²`` dwarfs it;
:mod:`retgen_ref.exact` turns these candidates into certified exact answers.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .heap import heap_replace_top, heap_sort, new_heaps
from .threads import single_threaded_blas

#: Below this many queries the direct scan beats a matrix product (FAISS uses 20 too).
BLAS_THRESHOLD = 20
#: Most queries one thread multiplies at a time in the batch path (measured best on
#: 2 cores: benchmarks/bench_flat.py). The block size depends on the batch and on the
#: machine's core count, never on ``num_threads``, so the BLAS calls, and the rounding of
#: every distance, are the same whatever the thread count.
QUERY_BLOCK = 512
MIN_QUERY_BLOCK = 32
#: Stored vectors per tile of the batch path (a tile of scores is ≤ 512 × 4096 float32).
BASE_BLOCK = 4096
_CHUNK = 32

# metric -> (alpha, beta, rows are unit-normalised)
METRIC_FORM = {"l2": (1.0, -2.0, False), "ip": (0.0, -1.0, False), "cosine": (0.0, -1.0, True)}


def needs_normalisation(metric: str) -> bool:
    """True if vectors and queries are unit-normalised before the inner product."""
    return METRIC_FORM[metric][2]


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Return ``x`` with every row scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))
    norms[norms == 0] = 1.0
    return (x / norms[:, None]).astype(x.dtype, copy=False)


@njit(cache=True)
def max_row_sq_norm(x):
    """``max_i ‖x_i‖²`` of a 2-d array, accumulated in float64; NaN as soon as a row's
    is NaN (a NaN in ``x``), infinite if one is infinite. One pass, no temporaries: a
    single query pays well under a microsecond (``np.einsum`` costs several)."""
    largest = 0.0
    for i in range(x.shape[0]):
        s = 0.0
        for t in range(x.shape[1]):
            s += np.float64(x[i, t]) * np.float64(x[i, t])
        if s != s:
            return s
        largest = max(largest, s)
    return largest


def squared_norms(x: np.ndarray) -> np.ndarray:
    """Row-wise ``‖x_i‖²`` as float32 (accumulated in float64)."""
    return np.einsum("ij,ij->i", x, x, dtype=np.float64).astype(np.float32)


@njit(parallel=True, fastmath=True, cache=True)
def blas_tiles_topk(queries, base, base_norms, alpha, beta, query_block, base_block,
                    heap_vals, heap_ids):
    """Batch path: per tile, a BLAS product of queries and stored vectors, then a merge.

    Each thread takes whole blocks of ``query_block`` queries and walks the stored vectors
    in blocks of ``base_block``: ``scores = Q_blk · X_blkᵀ`` (single-threaded BLAS, see
    :func:`candidate_topk`), then every candidate value ``α‖x‖² + β·score`` is merged into the
    query's heap. The merge first counts, in a vectorised loop, the candidates of a chunk
    of 32 that beat the heap's root, and walks the chunk only if there are any, which after
    the first blocks is rare. Parallel across query blocks only.
    """
    nq, n = queries.shape[0], base.shape[0]
    n_query_blocks = (nq + query_block - 1) // query_block
    for qb in prange(n_query_blocks):
        q0 = qb * query_block
        q1 = min(q0 + query_block, nq)
        for b0 in range(0, n, base_block):
            b1 = min(b0 + base_block, n)
            scores = np.dot(queries[q0:q1], base[b0:b1].T)
            for i in range(q1 - q0):
                hv = heap_vals[q0 + i]
                hi = heap_ids[q0 + i]
                for c0 in range(b0, b1, _CHUNK):
                    # Slices (not offset indexing) let LLVM vectorise the counting loop.
                    row = scores[i, c0 - b0:min(c0 - b0 + _CHUNK, b1 - b0)]
                    norms = base_norms[c0:c0 + row.shape[0]]
                    threshold = hv[0]
                    hits = 0
                    for j in range(row.shape[0]):
                        hits += alpha * norms[j] + beta * row[j] < threshold
                    if hits:
                        for j in range(row.shape[0]):
                            v = alpha * norms[j] + beta * row[j]
                            if v < hv[0]:
                                heap_replace_top(hv, hi, v, c0 + j)


@njit(fastmath=True, inline="always", cache=True)
def minimised_value(q, vectors, j, use_l2):
    """The value searches minimise for ``q`` and row ``j``: ``‖q − x_j‖²`` or ``−q·x_j``.

    The squared distance is summed directly (no ``‖x‖² − 2q·x`` cancellation); used by the
    kernels that score candidates one by one (IVF lists, HNSW, LSH re-ranking).
    """
    s = np.float32(0.0)
    if use_l2:
        for t in range(q.shape[0]):
            u = q[t] - vectors[j, t]
            s += u * u
        return s
    for t in range(q.shape[0]):
        s += q[t] * vectors[j, t]
    return -s


NO_IDS = np.empty(0, dtype=np.int64)  # write_results: the positions are the ids


@njit(cache=True, inline="always")
def write_result_row(values, positions, ids, use_l2, out_d, out_i):
    """Sorted minimised values and their positions → one FAISS-style result row.

    ``out_d[j]`` is the squared distance ``values[j]`` (l2) or the similarity
    ``−values[j]`` (ip); ``out_i[j]`` the stored id ``ids[positions[j]]``, or the position
    itself when ``ids`` is empty (:data:`NO_IDS`); an empty slot (position ``-1``) gets
    ``+inf`` (l2) or ``−inf`` and id ``-1``. ``out_i`` may be ``positions`` itself.
    """
    for j in range(out_d.shape[0]):
        p = positions[j]
        if p < 0:
            out_d[j] = np.inf if use_l2 else -np.inf
            out_i[j] = -1
        else:
            out_d[j] = values[j] if use_l2 else -values[j]
            out_i[j] = ids[p] if ids.shape[0] else p


@njit(parallel=True, cache=True)
def write_results(values, positions, ids, use_l2, out_d, out_i):
    """:func:`write_result_row` for every row, in parallel."""
    for i in prange(out_d.shape[0]):
        write_result_row(values[i], positions[i], ids, use_l2, out_d[i], out_i[i])


@njit(fastmath=True, cache=True)
def scan_one(q, base, base_norms, alpha, beta, hv, hi):
    """Direct scan for one query: every stored vector's value, kept in the heap ``(hv, hi)``.

    ``fastmath`` lets the dot product vectorise (3–4× faster); tests check it against the
    float64 reference in :mod:`retgen_ref.reference`.
    """
    d = q.shape[0]
    for j in range(base.shape[0]):
        x = base[j]
        s = np.float32(0.0)
        for t in range(d):
            s += q[t] * x[t]
        v = alpha * base_norms[j] + beta * s
        if v < hv[0]:
            heap_replace_top(hv, hi, v, j)


@njit(parallel=True, cache=True)
def scan_topk(queries, base, base_norms, alpha, beta, heap_vals, heap_ids):
    """:func:`scan_one` for every query, in parallel across queries."""
    for i in prange(queries.shape[0]):
        scan_one(queries[i], base, base_norms, alpha, beta, heap_vals[i], heap_ids[i])


@njit(parallel=True, cache=True)
def sort_heaps(heap_vals, heap_ids):
    """Sort every heap row into ascending ``(value, id)`` order, in parallel."""
    for i in prange(heap_vals.shape[0]):
        heap_sort(heap_vals[i], heap_ids[i])


@njit(cache=True)
def scan_sorted_one(q, base, base_norms, alpha, beta, hv, hi):
    """One query's scan and sort in one serial call: no thread-pool wake-up, which would
    cost more than the whole search of a small index. A separate function (not a serial
    build of :func:`scan_topk`): Numba keys its disk cache by function, not by build
    options, so two builds of one function would share, and swap, one cache entry."""
    scan_one(q, base, base_norms, alpha, beta, hv, hi)
    heap_sort(hv, hi)


def candidate_topk(queries: np.ndarray, base: np.ndarray, base_norms: np.ndarray, k: int,
                   metric: str, sort: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The k best stored vectors by the float32 value ``α‖x‖² + β q·x``.

    Returns the heaps ``(values, ids)`` of minimised values (module docstring), sorted
    unless ``sort=False``. Exact up to the float32 rounding of that value, which is all a
    k-means assignment or a coarse quantizer needs; :func:`retgen_ref.exact.exact_topk`
    builds exact search on it.
    """
    alpha, beta, _ = METRIC_FORM[metric]
    alpha, beta = np.float32(alpha), np.float32(beta)
    nq = queries.shape[0]
    heap_vals, heap_ids = new_heaps(nq, k)
    if nq == 1:
        scan_sorted_one(queries[0], base, base_norms, alpha, beta, heap_vals[0], heap_ids[0])
        return heap_vals, heap_ids
    if nq < BLAS_THRESHOLD:
        scan_topk(queries, base, base_norms, alpha, beta, heap_vals, heap_ids)
    else:
        # Threads split the queries, so each BLAS call must stay on its own thread: a
        # multi-threaded BLAS inside our parallel loop would oversubscribe the cores.
        per_core = -(-nq // numba.config.NUMBA_NUM_THREADS)
        query_block = min(QUERY_BLOCK, max(MIN_QUERY_BLOCK, per_core))
        with single_threaded_blas():
            blas_tiles_topk(queries, base, base_norms, alpha, beta, query_block, BASE_BLOCK,
                            heap_vals, heap_ids)
    if sort:
        sort_heaps(heap_vals, heap_ids)
    return heap_vals, heap_ids


def fast_topk(queries: np.ndarray, base: np.ndarray, base_norms: np.ndarray, k: int,
              metric: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`candidate_topk` as FAISS-style ``(D, I)``: ``max(v + ‖q‖², 0)`` for l2, ``−v``
    for ip; ``±inf`` / ``-1`` padding past ``n``.

    The ranking is that of the float32 value ``‖x‖² − 2q·x``, which is wrong when the
    vectors' norms dwarf their distances (see :mod:`retgen_ref.exact`): good for k-means
    and coarse quantizers, whose answers only need to be near-best. Exact search is
    :func:`retgen_ref.exact.exact_topk`.
    """
    heap_vals, heap_ids = candidate_topk(queries, base, base_norms, k, metric)
    empty = heap_ids < 0
    if metric == "l2":
        heap_vals += squared_norms(queries)[:, None]
        np.maximum(heap_vals, 0.0, out=heap_vals)
    else:
        np.negative(heap_vals, out=heap_vals)
    heap_vals[empty] = np.inf if metric == "l2" else -np.inf
    return heap_vals, heap_ids
