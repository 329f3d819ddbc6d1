"""HNSWIndex: hierarchical navigable small-world graph search, as hnswlib implements it.

Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
Hierarchical Navigable Small World graphs" (arXiv:1603.09320). Every node gets a level
``l = ⌊−ln(U) · m_L⌋``, ``U ~ Uniform(0, 1]``, ``m_L = 1/ln M`` (§4; a node reaches
layer 1 with probability ``1/M``), and belongs to layers ``0 … l``. Layers ≥ 1 keep up to ``M``
links per node, layer 0 up to ``2M``. A search (Algorithm 5) descends greedily from the
entry point (a node of the highest level) through the upper layers and finishes with a
beam search of ``ef`` candidates on layer 0 (Algorithm 2). ``retgen.md`` §6.2 (Theorem 6.2)
prices it at ``S(M) = O(d · log M)`` for a database of ``M`` vectors (the paper's ``M`` is
the database size, not the degree ``M`` here): ``O(log n)`` hops of at most ``2M`` distance
computations of cost ``O(d)`` each. ``HNSWIndex.last_search_stats`` counts the distance
computations of every query, so the cost model can be checked against measurement.

Insertion (Algorithm 1) is hnswlib's: beam searches with ``ef_construction`` candidates
from the node's level down, ``M`` neighbours chosen by the heuristic of Algorithm 4
(keep a candidate only if it is closer to the new node than to every neighbour kept so
far; no candidate extension, no pruned fill-up), then reverse links, a full list being
re-selected with the same heuristic (``2M`` on layer 0, ``M`` above).

Parallel, deterministic build. Numba has no locks, so points are inserted in batches
(:func:`batch_size`: one at a time at first, then a fraction of the graph, at most
``MAX_BATCH``). In a batch, every point searches the graph as it stood before the batch, in
parallel, and also takes the batch's earlier points as exact candidates; then the reverse
links are applied in parallel over the lists they change, each list receiving its new
links in id order. Batches depend only on the number of stored points, so the same seed
and the same adds give the same graph whatever the thread count.
"""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np
from tqdm import tqdm

from .._validation import check_int
from . import hnsw_kernels as K
from ..exact import exact_topk_rows
from .base import NO_FILTER, Index, register_index, rows_with_ids

#: Default beam width of a search (FAISS's ``efSearch`` default; hnswlib's is 10).
DEFAULT_EF_SEARCH = 16
#: Largest insertion batch; below it a batch is the graph's size ÷ ``BATCH_DIVISOR``. The
#: recall of the graph does not change with these (the batch's points are exact candidates
#: of each other); a larger batch costs more brute force, a smaller one more thread starts.
MAX_BATCH = 512
BATCH_DIVISOR = 2
#: See :meth:`HNSWIndex._exact_below`: a filtered search scans the allowed nodes exactly
#: while their number ``a`` satisfies ``a² ≤ EXACT_SCAN_FACTOR · 2M · ef · n``. Above 1
#: because a scanned distance (contiguous rows, BLAS) costs less than a walked one
#: (``benchmarks/bench_filter.py``: 100k × 64, M = 16, ef = 64, 1 thread: the scan of 10 %
#: ran at 37k q/s against the walk's 3.9k; with 50 % the walk wins).
EXACT_SCAN_FACTOR = 4.0
#: Work items a thread takes at a time from a parallel loop (dynamic scheduling: a thread
#: slowed down by another process does not hold up the others).
POINTS_PER_TASK = 2
LISTS_PER_TASK = 64
QUERIES_PER_TASK = 4


@contextmanager
def _chunks(size: int):
    """Run the enclosed Numba parallel loops with dynamic chunks of ``size`` iterations."""
    previous = numba.set_parallel_chunksize(size)
    try:
        yield
    finally:
        numba.set_parallel_chunksize(previous)


def batch_size(n_stored: int) -> int:
    """Points inserted together when ``n_stored`` are in the graph (1 while it is empty)."""
    return min(MAX_BATCH, max(1, n_stored // BATCH_DIVISOR))


def _grown(a: np.ndarray, size: int, fill) -> np.ndarray:
    """``a`` copied into a buffer of ``max(size, 2·len(a))`` rows, new rows set to ``fill``."""
    out = np.full((max(size, 2 * len(a), 16), *a.shape[1:]), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


@register_index
class HNSWIndex(Index):
    """Approximate k-NN on an HNSW graph, the counterpart of hnswlib's ``Index``.

    Parameters
    ----------
    d : int
        Dimension of the vectors.
    M : int, >= 2
        Links per node on layers ≥ 1; ``2M`` on layer 0. Level multiplier ``1/ln M``.
    ef_construction : int, >= 1
        Candidates of the beam search that inserts a point (``max(ef_construction, M)``
        are used, as in hnswlib).
    metric : {"l2", "ip", "cosine"}
        ``"ip"`` searches the graph with ``−q·x`` as its "distance", which is not a metric
        (like hnswlib's ``"ip"`` space); ``"cosine"`` normalises, then uses ``"ip"``.
    seed : int
        Seed of the node levels; the same seed and adds give the same graph.

    Attributes
    ----------
    ef_search : int
        Beam width of a search (default 16, FAISS's default; hnswlib's is 10); a search
        uses ``max(ef_search, k)``. Settable at any time, like ``ef_construction`` (which
        applies to later adds).
    last_search_stats : dict
        ``distances``: an ``(nq,)`` int64 array, the distances computed for each query of
        the last search (the cost model's unit: one ``O(d)`` dot product or squared
        difference each). With searches from several threads, the last to finish wins.

    Notes
    -----
    Storage, for ``n`` nodes (arrays grow geometrically, so adds in any batches cost
    amortised ``O(n)`` copying): vectors ``(n, d)`` float32; levels ``(n,)``; layer-0 links
    ``(n, 2M)`` int32 with counts; the links of layers ≥ 1 only for the ``≈ n/(M−1)``
    (node, layer) pairs that exist, rows of ``M`` in one array addressed by a per-node
    offset. Searches may run from several Python threads at once (each takes its own
    scratch buffers); ``add`` must not run at the same time as anything else on the index.

    Examples
    --------
    >>> import numpy as np
    >>> from retgen_ref import HNSWIndex
    >>> x = np.random.default_rng(0).standard_normal((1000, 8)).astype(np.float32)
    >>> index = HNSWIndex(8, M=8)
    >>> index.add(x)
    >>> D, I = index.search(x[:2], k=3)
    >>> I[:, 0].tolist(), D[:, 0].tolist()
    ([0, 1], [0.0, 0.0])
    """

    kind = "HNSWIndex"
    _transient = {**Index._transient, "_pool": K.ScratchPool}

    def __init__(self, d: int, M: int = 16, *, ef_construction: int = 200, metric: str = "l2",
                 seed: int = 0):
        super().__init__(d, metric)
        self._M = check_int(M, "M", minimum=2)
        self.ef_construction = ef_construction
        self.seed = check_int(seed, "seed", minimum=0)
        self.ef_search = DEFAULT_EF_SEARCH
        self.last_search_stats: dict | None = None
        self._pool = K.ScratchPool()
        self._reset()

    # -- public API -----------------------------------------------------------------
    @property
    def M(self) -> int:
        """Links per node on layers ≥ 1 (read-only: the graph's arrays are sized by it)."""
        return self._M

    @property
    def ef_construction(self) -> int:
        return self._ef_construction

    @ef_construction.setter
    def ef_construction(self, value: int) -> None:
        self._ef_construction = check_int(value, "ef_construction")

    @property
    def ef_search(self) -> int:
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = self._check_ef(value, "ef_search")

    def _check_ef(self, value, name: str = "ef") -> int:
        """A beam width, named as the user gave it (the attribute, or the ``ef=`` knob)."""
        return check_int(value, name)

    _knobs = {"ef": ("ef_search", _check_ef)}

    @property
    def ntotal(self) -> int:
        """Vectors stored and not removed (the graph also holds ``n_deleted`` more)."""
        return self._n - self._n_deleted

    @property
    def n_deleted(self) -> int:
        """Nodes removed by :meth:`remove_ids`, still in the graph until :meth:`compact`."""
        return self._n_deleted

    @property
    def ids(self) -> np.ndarray:
        """The id of every node, in node order (deleted nodes included; see
        :meth:`is_deleted`). Node numbers and ids coincide unless :meth:`add_with_ids`
        was used or the graph was compacted."""
        v = self._labels[: self._n]
        v.flags.writeable = False
        return v

    def is_deleted(self) -> np.ndarray:
        """``(n nodes,)`` bool: which nodes :meth:`remove_ids` marked deleted (a copy)."""
        return self._deleted[: self._n].copy()

    # -- ids and deletion (hnswlib's labels, mark_deleted) --------------------------
    def add_with_ids(self, x, ids) -> None:
        """Insert the rows of ``x`` under the given int64 ``ids`` (hnswlib's labels;
        keeping them unique is up to you, as in FAISS's ``IndexIDMap``). A later
        :meth:`add` numbers on from the largest id ever used."""
        x = self._prepare(x, "x")
        self._write(self._add, x, self._checked_ids(ids, len(x)))

    def remove_ids(self, ids) -> int:
        """Mark deleted every node whose id is in ``ids`` (hnswlib's ``mark_deleted``);
        return how many were newly marked.

        A deleted node is never returned, but stays in the graph with its links, so
        searches still pass through it and recall holds. Its memory is reclaimed, and
        searches stop paying for it, by :meth:`compact`.
        """
        return self._write(self._mark_deleted, self._ids_to_remove(ids))

    def _mark_deleted(self, ids: np.ndarray) -> int:
        n = self._n
        hit = np.isin(self._labels[:n], ids) & ~self._deleted[:n]
        self._deleted[:n] |= hit
        marked = int(hit.sum())
        self._n_deleted += marked
        if marked:
            self._live = None
        return marked

    def compact(self) -> None:
        """Rebuild the graph from the nodes not deleted, with their ids, in node order (so
        a compacted index equals one built from those vectors with ``add_with_ids``)."""
        self._write(self._compact)

    def _compact(self) -> None:
        keep = ~self._deleted[: self._n]
        vectors, labels = self._vectors[: self._n][keep], self._labels[: self._n][keep]
        next_label = self._next_label
        self._reset()
        if len(vectors):
            self._add(np.ascontiguousarray(vectors), labels)
        self._next_label = next_label

    def _allowed(self, id_filter) -> np.ndarray:
        """The kernels' ``allowed`` over nodes: filtered ids, minus deleted nodes."""
        if id_filter is None:
            if not self._n_deleted:
                return NO_FILTER
            if self._live is None:  # cached until the next add or removal
                self._live = ~self._deleted[: len(self._vectors)]
            return self._live
        allowed = np.zeros(len(self._vectors), dtype=np.bool_)
        allowed[: self._n] = id_filter.allows(self._labels[: self._n]) & ~self._deleted[: self._n]
        return allowed

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        live = np.flatnonzero(~self._deleted[: self._n])
        nodes = live[rows_with_ids(self._labels[live], ids, "HNSWIndex")]
        return self._vectors[nodes].copy()

    @property
    def entry_point(self) -> int:
        """Id of the node searches start from (a node of the highest level; -1 if empty)."""
        return self._entry

    @property
    def max_level(self) -> int:
        """Highest layer of the graph (-1 if empty)."""
        return self._max_level

    @property
    def levels(self) -> np.ndarray:
        """Read-only ``(ntotal,)`` int32: the top layer of every node."""
        v = self._levels[: self._n]
        v.flags.writeable = False
        return v

    def neighbors(self, i: int, layer: int = 0) -> np.ndarray:
        """Ids linked from node ``i`` on ``layer`` (a copy; empty above the node's level)."""
        if self._n == 0:
            raise ValueError("the HNSWIndex is empty; add vectors first")
        i = check_int(i, "i", minimum=0, maximum=self._n - 1)
        layer = check_int(layer, "layer", minimum=0)
        if layer == 0:
            return self._links0[i, : self._counts0[i]].copy()
        if layer > self._levels[i]:
            return np.empty(0, dtype=np.int32)
        row = self._offsets[i] + layer - 1
        return self._ulinks[row, : self._ucounts[row]].copy()

    def _reset(self) -> None:
        """Remove every vector and restart the level generator from ``seed``."""
        self._rng = np.random.default_rng(self.seed)
        self._n = 0
        self._n_rows = 0
        self._n_deleted = 0
        self._next_label = 0
        self._live = None
        self._entry = -1
        self._max_level = -1
        self._vectors = np.empty((0, self.d), dtype=np.float32)
        self._levels = np.empty(0, dtype=np.int32)
        self._labels = np.empty(0, dtype=np.int64)
        self._deleted = np.empty(0, dtype=np.bool_)
        self._offsets = np.empty(0, dtype=np.int64)
        self._links0 = np.empty((0, 2 * self.M), dtype=np.int32)
        self._counts0 = np.empty(0, dtype=np.int32)
        self._ulinks = np.empty((0, self.M), dtype=np.int32)
        self._ucounts = np.empty(0, dtype=np.int32)

    def __repr__(self) -> str:
        return (f"HNSWIndex(d={self.d}, M={self.M}, ef_construction={self.ef_construction}, "
                f"metric={self.metric!r}, ntotal={self._n})")

    # -- building -------------------------------------------------------------------
    def _reserve(self, n: int, n_rows: int) -> None:
        if n > len(self._vectors):
            self._vectors = _grown(self._vectors, n, 0)
            self._levels = _grown(self._levels, n, 0)
            self._labels = _grown(self._labels, n, -1)
            self._deleted = _grown(self._deleted, n, False)
            self._offsets = _grown(self._offsets, n, 0)
            self._links0 = _grown(self._links0, n, -1)
            self._counts0 = _grown(self._counts0, n, 0)
        if n_rows > len(self._ulinks):
            self._ulinks = _grown(self._ulinks, n_rows, -1)
            self._ucounts = _grown(self._ucounts, n_rows, 0)

    def _add(self, x: np.ndarray, ids: np.ndarray | None = None) -> None:
        n0, n1 = self._n, self._n + len(x)
        if ids is None:
            ids = np.arange(self._next_label, self._next_label + len(x))
        u = 1.0 - self._rng.random(len(x))  # in (0, 1]
        levels = np.floor(-np.log(u) / np.log(self.M)).astype(np.int32)
        ends = self._n_rows + np.cumsum(levels, dtype=np.int64)
        self._reserve(n1, int(ends[-1]))
        self._vectors[n0:n1] = x
        self._levels[n0:n1] = levels
        self._labels[n0:n1] = ids
        self._live = None
        if len(ids):
            self._next_label = max(self._next_label, int(ids.max()) + 1)
        self._offsets[n0:n1] = ends - levels
        ef = max(self.ef_construction, self.M)
        s = self._pool.acquire(len(self._vectors))
        # A bar on a terminal only (disable=None), so quiet in tests and when piped.
        bar = tqdm(total=n1 - n0, desc="HNSW add", unit="vec", disable=None, leave=False)
        try:
            res_v, res_i = s.results(ef)
            while self._n < n1:
                start = self._n
                stop = min(n1, start + batch_size(start))
                with _chunks(POINTS_PER_TASK):
                    K.insert_forward(self._vectors, self._levels, self._offsets,
                                     self._links0, self._counts0, self._ulinks, self._ucounts,
                                     start, stop, self._entry, self._max_level, self.M,
                                     s.stamps, s.gens, s.cand_v, s.cand_i, res_v, res_i,
                                     self.metric != "l2")
                self._link_back(start, stop)
                top = start + int(np.argmax(self._levels[start:stop]))
                if self._levels[top] > self._max_level:
                    self._entry, self._max_level = top, int(self._levels[top])
                # Nodes < stop are complete: the index stays usable if interrupted here.
                self._n, self._n_rows = stop, int(ends[stop - 1 - n0])
                bar.update(stop - start)
        finally:
            bar.close()
            self._pool.release(s)

    def _link_back(self, start: int, stop: int) -> None:
        """Phase 2 of a batch: group the new nodes' links by (layer, target), then link back."""
        nodes = np.arange(start, stop)
        counts = self._counts0[start:stop]
        src = [np.repeat(nodes, counts)]
        tgt = [self._links0[start:stop][np.arange(2 * self.M) < counts[:, None]]]
        lay = [np.zeros(len(src[0]), dtype=np.int64)]
        levels = self._levels[start:stop]
        r0 = int(self._offsets[start])
        r1 = int(self._offsets[stop - 1] + levels[-1])
        if r1 > r0:
            row_node = np.repeat(nodes, levels)
            row_layer = np.arange(r0, r1) - self._offsets[row_node] + 1
            ucounts = self._ucounts[r0:r1]
            src.append(np.repeat(row_node, ucounts))
            lay.append(np.repeat(row_layer, ucounts))
            tgt.append(self._ulinks[r0:r1][np.arange(self.M) < ucounts[:, None]])
        src, tgt, lay = np.concatenate(src), np.concatenate(tgt), np.concatenate(lay)
        if len(src) == 0:
            return
        n = stop
        key = lay * n + tgt
        order = np.argsort(key, kind="stable")  # stable: sources stay in id order
        key = key[order]
        ptr = np.concatenate(([0], np.flatnonzero(np.diff(key)) + 1, [len(key)]))
        firsts = key[ptr[:-1]]
        with _chunks(LISTS_PER_TASK):
            K.insert_reverse(self._vectors, self._offsets, self._links0, self._counts0,
                             self._ulinks, self._ucounts, firsts // n, firsts % n, ptr,
                             src[order], self.M, self.metric != "l2")

    # -- searching ------------------------------------------------------------------
    def _search(self, xq: np.ndarray, k: int, id_filter=None, ef: int = DEFAULT_EF_SEARCH):
        allowed = self._allowed(id_filter)
        if id_filter is not None:
            n_allowed = int(allowed.sum())
            if n_allowed <= self._exact_below(max(ef, k)):
                return self._search_exact(xq, k, np.flatnonzero(allowed), n_allowed)
        nq = len(xq)
        out_v = np.empty((nq, k), dtype=np.float32)
        out_i = np.empty((nq, k), dtype=np.int64)
        ndis = np.empty(nq, dtype=np.int64)
        ip = self.metric != "l2"
        s = self._pool.acquire(len(self._vectors))
        try:
            # A beam wider than the graph holds nothing more: ef ≤ ntotal bounds the scratch.
            res_v, res_i = s.results(min(max(ef, k), self._n))
            args = (xq, self._vectors, self._links0, self._counts0, self._ulinks, self._ucounts,
                    self._offsets, self._entry, self._max_level, s.stamps, s.gens, s.cand_v,
                    s.cand_i, res_v, res_i, self._labels, out_v, out_i, ndis, allowed, ip)
            if nq == 1:
                K.search_serial(*args)
            else:
                with _chunks(QUERIES_PER_TASK):
                    K.search_parallel(*args)
        finally:
            self._pool.release(s)
        self.last_search_stats = {"distances": ndis, "path": "graph"}
        return out_v, out_i

    def _exact_below(self, ef: int) -> float:
        """Filtered searches allowing at most this many nodes scan them exactly.

        A graph search must collect ``ef`` allowed nodes: with a fraction ``s = a / n``
        of the ``n`` nodes allowed it expands about ``ef / s`` nodes of up to ``2M``
        links each, ``2M · ef · n / a`` distances, while scanning the ``a`` allowed
        nodes costs ``a``. The scan is cheaper, and exact, while
        ``a² ≤ EXACT_SCAN_FACTOR · 2M · ef · n``.
        """
        return float(np.sqrt(EXACT_SCAN_FACTOR * 2 * self.M * ef * self._n))

    def _search_exact(self, xq, k, nodes, n_allowed):
        D, I, _ = exact_topk_rows(xq, self._vectors[: self._n], None, nodes, k,
                                  "l2" if self.metric == "l2" else "ip")
        self.last_search_stats = {"distances": np.full(len(xq), n_allowed),
                                  "path": "exact scan"}
        return D, np.where(I >= 0, self._labels[np.maximum(I, 0)], -1)

    # -- persistence ----------------------------------------------------------------
    def _state(self):
        n, r = self._n, self._n_rows
        params = {"M": self.M, "ef_construction": self.ef_construction, "seed": self.seed,
                  "ef_search": self._ef_search, "entry_point": self._entry,
                  "max_level": self._max_level, "rng_state": self._rng.bit_generator.state,
                  "next_id": self._next_label}
        arrays = {"vectors": self._vectors[:n], "levels": self._levels[:n],
                  "links0": self._links0[:n], "counts0": self._counts0[:n],
                  "ulinks": self._ulinks[:r], "ucounts": self._ucounts[:r],
                  "ids": self._labels[:n], "deleted": self._deleted[:n]}
        return params, arrays

    @classmethod
    def _from_state(cls, params, arrays):
        index = cls(params["d"], params["M"], ef_construction=params["ef_construction"],
                    metric=params["metric"], seed=params["seed"])
        index.ef_search = params["ef_search"]
        index._rng.bit_generator.state = params["rng_state"]
        levels = _checked(arrays, "levels", np.int32, (None,))
        if levels.min(initial=0) < 0:
            raise ValueError("a level is negative")
        n, r, M = len(levels), int(levels.sum(dtype=np.int64)), index.M
        vectors = _checked(arrays, "vectors", np.float32, (n, index.d))
        links0 = _checked(arrays, "links0", np.int32, (n, 2 * M))
        counts0 = _checked(arrays, "counts0", np.int32, (n,))
        ulinks = _checked(arrays, "ulinks", np.int32, (r, M))
        ucounts = _checked(arrays, "ucounts", np.int32, (r,))
        entry = check_int(params["entry_point"], "entry_point", minimum=-1)
        max_level = check_int(params["max_level"], "max_level", minimum=-1)
        if not np.isfinite(vectors).all():
            raise ValueError("a vector is not finite")
        if not ((entry, max_level) == (-1, -1) if n == 0 else
                0 <= entry < n and levels[entry] == max_level == levels.max()):
            raise ValueError(f"entry point {entry} / max level {max_level} do not fit the levels")
        offsets = np.cumsum(levels, dtype=np.int64) - levels
        row_layer = np.arange(r) - np.repeat(offsets, levels) + 1
        for links, counts, width, layer in ((links0, counts0, 2 * M, np.zeros(n, np.int64)),
                                            (ulinks, ucounts, M, row_layer)):
            if ((counts < 0) | (counts > width)).any():
                raise ValueError("a neighbour count is out of range")
            used = np.arange(width) < counts[:, None]
            if ((links < 0) | (links >= n))[used].any() or (links[~used] != -1).any():
                raise ValueError("a neighbour id is out of range")
            if (levels[links[used]] < np.broadcast_to(layer[:, None], used.shape)[used]).any():
                raise ValueError("a link points to a node absent from its layer")
        index._reserve(n, r)
        index._vectors[:n], index._levels[:n], index._offsets[:n] = vectors, levels, offsets
        index._links0[:n], index._counts0[:n] = links0, counts0
        index._ulinks[:r], index._ucounts[:r] = ulinks, ucounts
        index._n, index._n_rows, index._entry, index._max_level = n, r, entry, max_level
        # Files written before ids and deletion existed: ids are node numbers, none deleted.
        labels = (_checked(arrays, "ids", np.int64, (n,)) if "ids" in arrays
                  else np.arange(n, dtype=np.int64))
        deleted = (_checked(arrays, "deleted", np.bool_, (n,)) if "deleted" in arrays
                   else np.zeros(n, dtype=np.bool_))
        index._labels[:n], index._deleted[:n] = labels, deleted
        index._n_deleted = int(deleted.sum())
        index._next_label = int(params.get("next_id", n))
        return index


def _checked(arrays: dict, name: str, dtype, shape: tuple) -> np.ndarray:
    """``arrays[name]`` if it has ``dtype`` and ``shape`` (``None`` = any length)."""
    a = arrays[name]
    if a.dtype != dtype or a.ndim != len(shape) or any(
            s is not None and s != t for s, t in zip(shape, a.shape)):
        raise ValueError(f"{name} has shape {a.shape} and dtype {a.dtype}; expected "
                         f"{shape} {np.dtype(dtype).name}")
    return a
