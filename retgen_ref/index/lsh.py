"""LSHIndex: sign-random-projection hashing with exact re-ranking (``retgen.md`` §5.2, §6.2).

Each of ``L = n_tables`` tables draws ``nbits`` Gaussian hyperplanes ``w_1 … w_nbits``
(rows of ``W_t``) and files a vector ``x`` under the key

    h_t(x) = Σ_b [w_b · x > 0] · 2^b        (the bit pattern of sign(W_t x), a uint64)

(Charikar 2002). A query collects every stored vector that shares its bucket in at least
one table, removes duplicates, scores these ``K`` candidates exactly and keeps the top k.

Why a bit agrees with probability ``1 − θ/π``
    Let ``x, y`` make the angle ``θ``. Only the component of ``w`` in the plane spanned by
    ``x`` and ``y`` decides the signs of ``w·x`` and ``w·y``; for a Gaussian ``w`` it points
    in a uniformly random direction of that plane. ``w·x`` and ``w·y`` have different signs
    iff the line ``w⊥`` falls between ``x`` and ``y``, i.e. iff ``w`` lies in one of two
    opposite wedges of angle ``θ``: probability ``2θ / 2π = θ/π``. The ``nbits`` hyperplanes
    of a table and the tables are independent, so

        P[same bucket in one table]       = (1 − θ/π)^nbits
        P[candidate in ≥ 1 of L tables]   = 1 − (1 − (1 − θ/π)^nbits)^L.

    More bits make buckets smaller (fewer candidates, lower recall); more tables raise
    recall at the cost of more candidates.

Cost per query: ``L · nbits · d`` for the projections (the paper's ``O(d·L)`` counts one
projection per table), ``L · log n`` for the bucket look-ups and ``K · d`` for re-ranking
(``O(K)`` in ``retgen.md`` §6.2 if scoring a candidate is taken as constant).
``last_search_stats["candidates"]`` reports ``K`` per query.
"""

from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

from .._validation import check_int
from ..distances import minimised_value, sort_heaps
from ..heap import heap_replace_top, new_heaps
from .base import Index, register_index
from .growable import GrowableRows
from .rowids import PositionalIds

#: Keys are uint64 bit patterns, so a table has at most 64 hyperplanes.
MAX_BITS = 64


@njit(parallel=True, fastmath=True, cache=True)
def hash_rows(x, planes, keys):
    """Write into ``keys[i, t]`` (uint64) the bits ``[W_t x_i > 0]``, bit ``b`` for plane ``b``.

    ``x`` is ``(n, d)`` float32, ``planes`` ``(L, nbits, d)`` float32, ``keys`` ``(n, L)``.
    Parallel across rows; ``fastmath`` lets the dot products vectorise (the order of the
    sum is fixed at compile time, so a key does not depend on the thread count).
    """
    n, d = x.shape
    n_tables, nbits = planes.shape[0], planes.shape[1]
    for i in prange(n):
        row = x[i]
        for t in range(n_tables):
            key = np.uint64(0)
            for b in range(nbits):
                w = planes[t, b]
                s = np.float32(0.0)
                for j in range(d):
                    s += w[j] * row[j]
                if s > 0:
                    key |= np.uint64(1) << np.uint64(b)
            keys[i, t] = key


@njit(parallel=True, fastmath=True, cache=True)
def probe_and_rerank(queries, query_keys, sorted_keys, sorted_ids, base, use_l2, allowed,
                     heap_vals, heap_ids, candidates):
    """Gather the query's bucket in every table, deduplicate, score exactly into the heaps.

    ``sorted_keys[t]`` is table ``t``'s keys in ascending order and ``sorted_ids[t]`` the
    matching row positions (CSR without offsets: a bucket is the run of equal keys, found
    by binary search). Duplicates are removed by sorting the query's own candidate list, so
    the kernel keeps no shared scratch state and concurrent calls are safe. Value:
    ``‖q − x‖²`` if ``use_l2`` else ``−q·x``. Positions ``j`` with ``allowed[j]`` false are
    skipped before scoring when ``allowed`` is not empty (a filtered search).
    ``candidates[i]`` receives the number of distinct positions scored.
    """
    filtered = allowed.shape[0] > 0
    nq, d = queries.shape
    n_tables = sorted_keys.shape[0]
    for i in prange(nq):
        lo = np.empty(n_tables, dtype=np.int64)
        hi = np.empty(n_tables, dtype=np.int64)
        total = 0
        for t in range(n_tables):
            lo[t] = np.searchsorted(sorted_keys[t], query_keys[i, t], side="left")
            hi[t] = np.searchsorted(sorted_keys[t], query_keys[i, t], side="right")
            total += hi[t] - lo[t]
        found = np.empty(total, dtype=np.int64)
        pos = 0
        for t in range(n_tables):
            size = hi[t] - lo[t]
            found[pos:pos + size] = sorted_ids[t, lo[t]:hi[t]]
            pos += size
        found.sort()
        q = queries[i]
        hv = heap_vals[i]
        hi_ids = heap_ids[i]
        count = 0
        previous = -1
        for c in range(total):
            j = found[c]
            if j == previous:
                continue
            previous = j
            if filtered and not allowed[j]:
                continue
            count += 1
            v = minimised_value(q, base, j, use_l2)
            if v < hv[0]:
                heap_replace_top(hv, hi_ids, v, j)
        candidates[i] = count


@register_index
class LSHIndex(PositionalIds, Index):
    """Locality-sensitive hashing by sign random projections, re-ranked exactly.

    Parameters
    ----------
    d : int
        Dimension of the vectors.
    nbits : int
        Hyperplanes per table, ``1 ≤ nbits ≤ 64`` (the key is a uint64). About
        ``log2(n / bucket size)``: each extra bit halves the buckets of spread-out data.
    n_tables : int
        Number of independent tables ``L ≥ 1``.
    metric : {"cosine", "ip", "l2"}
        How candidates are re-ranked (the ``D`` returned). Hashing always uses the
        direction of a vector only (``sign(w·x)`` does not change when ``x`` is scaled), so
        the candidates are *angular* neighbours: "cosine" and "ip" on unit-norm data get what
        the collision probability promises; for "l2" recall is only good when the data are
        roughly normalised (close in direction ≈ close in L2).
    seed : int
        Seed of ``np.random.default_rng`` drawing the ``(n_tables, nbits, d)`` hyperplanes,
        table after table: the same seed gives the same index, and with the same ``nbits``
        an index with more tables extends one with fewer (its candidates are a superset).

    Attributes
    ----------
    hyperplanes : ndarray, shape (n_tables, nbits, d), float32
    last_search_stats : dict
        ``projections`` (per query, ``n_tables · nbits``) and ``candidates`` (array, per
        query: the distinct vectors scored, ``K`` of the cost model) of the last search.

    Notes
    -----
    ``add`` may be called at any time; ids are ``0, 1, 2, …`` in order of adding, or your
    own with ``add_with_ids`` (``remove_ids`` copies the rows that stay, ``O(n)``: see
    :mod:`~.rowids`). Keys are appended in amortised ``O(1)`` per vector; the per-table
    sorted view used by ``search`` is rebuilt lazily by the first search after an add or a
    removal, ``O(L · n log n)`` once, so add in batches rather than alternating single adds
    with searches. ``search(xq, k, ids=…)`` scores only the allowed candidates of the
    query's buckets (the filter does not bring in more candidates). Fewer than ``k`` candidates
    is normal for LSH: the row is padded with id ``-1`` and ``+inf`` (l2) / ``-inf``.

    Examples
    --------
    >>> import numpy as np
    >>> from retgen_ref import LSHIndex
    >>> index = LSHIndex(2, nbits=2, n_tables=8)
    >>> index.add(np.array([[1, 0], [0.9, 0.1], [-1, 0]], dtype=np.float32))
    >>> D, I = index.search(np.array([[1.0, 0.05]]), k=2)
    >>> I.tolist()
    [[0, 1]]
    """

    kind = "LSHIndex"
    _transient = {**Index._transient, "_sort_lock": threading.Lock}

    def __init__(self, d: int, nbits: int, n_tables: int, *, metric: str = "cosine",
                 seed: int = 0):
        super().__init__(d, metric)
        self.nbits = check_int(nbits, "nbits", maximum=MAX_BITS)
        self.n_tables = check_int(n_tables, "n_tables")
        self.seed = check_int(seed, "seed", minimum=0)
        rng = np.random.default_rng(self.seed)
        self.hyperplanes = rng.standard_normal((self.n_tables, self.nbits, self.d),
                                               dtype=np.float32)
        self.hyperplanes.flags.writeable = False
        self._vectors = GrowableRows(self.d, np.float32)
        self._keys = GrowableRows(self.n_tables, np.uint64)
        self._sorted = None  # (ntotal it was built for, sorted keys, sorted positions)
        self._sort_lock = threading.Lock()
        self.last_search_stats: dict | None = None

    @property
    def ntotal(self) -> int:
        return len(self._vectors)

    def _stored_rows(self) -> np.ndarray:
        return self._vectors.view()

    def hash_keys(self, x) -> np.ndarray:
        """Keys of the rows of ``x`` in every table: ``(n, n_tables)`` uint64.

        Bit ``b`` of key ``t`` is ``1`` iff ``hyperplanes[t, b] · x > 0``.
        """
        return self._hash(self._prepare(x, "x"))

    def _hash(self, x: np.ndarray) -> np.ndarray:
        keys = np.empty((len(x), self.n_tables), dtype=np.uint64)
        hash_rows(x, self.hyperplanes, keys)
        return keys

    def _reset(self) -> None:
        self._vectors.clear()
        self._keys.clear()
        self._sorted = None
        self._clear_ids()

    def _add_rows(self, x: np.ndarray, keys: np.ndarray | None = None) -> None:
        self._keys.append(self._hash(x) if keys is None else keys)
        self._vectors.append(x)

    def _keep_rows(self, keep: np.ndarray) -> None:
        self._vectors.keep(keep)
        self._keys.keep(keep)
        self._sorted = None  # positions changed: the buckets are sorted again when searched

    def _buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """Per table, keys in ascending order and their row positions
        ``(n_tables, ntotal)``; lazy (rebuilt after an add or a removal)."""
        with self._sort_lock:  # concurrent first searches after an add sort only once
            n = self.ntotal
            if self._sorted is None or self._sorted[0] != n:
                keys = self._keys.view()
                order = np.argsort(keys, axis=0, kind="stable")
                sorted_keys = np.ascontiguousarray(np.take_along_axis(keys, order, axis=0).T)
                self._sorted = (n, sorted_keys, np.ascontiguousarray(order.T, dtype=np.int64))
            return self._sorted[1], self._sorted[2]

    def _search(self, xq: np.ndarray, k: int, id_filter=None):
        sorted_keys, sorted_ids = self._buckets()
        heap_vals, heap_ids = new_heaps(len(xq), k)
        candidates = np.zeros(len(xq), dtype=np.int64)
        probe_and_rerank(xq, self._hash(xq), sorted_keys, sorted_ids, self._vectors.view(),
                         self.metric == "l2", self._allowed(id_filter), heap_vals, heap_ids,
                         candidates)
        sort_heaps(heap_vals, heap_ids)
        empty = heap_ids < 0
        D = heap_vals if self.metric == "l2" else -heap_vals
        D[empty] = np.inf if self.metric == "l2" else -np.inf
        self.last_search_stats = {"projections": self.n_tables * self.nbits,
                                  "candidates": candidates}
        return D, self._labels(heap_ids)

    def __repr__(self) -> str:
        return (f"LSHIndex(d={self.d}, nbits={self.nbits}, n_tables={self.n_tables}, "
                f"metric={self.metric!r}, ntotal={self.ntotal})")

    # -- persistence --------------------------------------------------------------------
    def _state(self):
        params = {"nbits": self.nbits, "n_tables": self.n_tables, "seed": self.seed}
        return params, {"hyperplanes": self.hyperplanes, "vectors": self._vectors.view(),
                        "keys": self._keys.view(), **self._ids_state()}

    @classmethod
    def _from_state(cls, params, arrays):
        index = cls(params["d"], params["nbits"], params["n_tables"], metric=params["metric"],
                    seed=params["seed"])
        planes, vectors, keys = arrays["hyperplanes"], arrays["vectors"], arrays["keys"]
        if planes.shape != index.hyperplanes.shape or planes.dtype != np.float32:
            raise ValueError(f"hyperplanes have shape {planes.shape} and dtype {planes.dtype}")
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != index.d \
                or keys.dtype != np.uint64 or keys.shape != (len(vectors), index.n_tables):
            raise ValueError(f"vectors {vectors.shape} {vectors.dtype} and keys {keys.shape} "
                             f"{keys.dtype} do not match")
        ids = index._checked_saved_ids(arrays, len(vectors))  # None: a file without ids
        index.hyperplanes = planes.copy()
        index.hyperplanes.flags.writeable = False
        if len(vectors) or ids is not None:
            index._add(np.ascontiguousarray(vectors), ids, np.ascontiguousarray(keys))
        return index
