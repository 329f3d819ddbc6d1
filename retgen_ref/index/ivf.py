"""Inverted-file indexes: IVF-Flat and IVF-PQ (``retgen_v2.md`` §2, §4).

A coarse k-means quantizer with ``nlist`` centroids ``y_1 … y_nlist`` partitions the
vectors; each is stored in the inverted list of its nearest centroid. A query scores the
``nlist`` centroids, then only the vectors of its ``nprobe`` nearest lists:

    cost ≈ nlist · d  +  nprobe · (n / nlist) · (cost of scoring one stored entry)

(``retgen_v2.md`` Theorem 2.1 with ``k = nlist``). IVF-Flat stores the vectors and scores
them exactly; IVF-PQ stores ``m``-byte product-quantization codes of the residuals
``x − y_l`` and scores them with lookup tables. With ``nprobe = nlist`` IVF-Flat is exact.

Ids: ``add`` numbers vectors ``0, 1, 2, …`` in the order they are added (since the last
``reset``, so ids stay unique after ``remove_ids``); ``add_with_ids`` takes your own int64
ids (keeping them unique is then up to you, as in FAISS).
"""

from __future__ import annotations

import warnings

import numpy as np

from .._validation import check_int
from ..distances import METRIC_FORM, fast_topk, sort_heaps, squared_norms, write_results
from ..heap import new_heaps
from ..kmeans import KMeans
from ..pq import ProductQuantizer
from .base import NO_FILTER, Index, register_index
from .invlists import InvertedLists
from .ivf_kernels import flat_search_serial, pq_search_serial, scan_flat_lists, scan_pq_lists

#: Lloyd iterations of the coarse quantizer (FAISS's IVF default; k-means is run on up to
#: 256 points per list).
COARSE_ITERATIONS = 10
SEARCH_BLOCK_BYTES = 256 * 2 ** 20  # memory for one block of queries' candidates


class _IVFIndex(Index):
    """Shared part of the IVF indexes: coarse quantizer, lists, ids, nprobe, persistence."""

    def __init__(self, d: int, nlist: int, metric: str = "l2", *, seed: int = 0):
        super().__init__(d, metric)
        self.nlist = check_int(nlist, "nlist")
        self.seed = check_int(seed, "seed", minimum=0)
        self.centroids = None
        self._nprobe = 1
        self._next_id = 0
        self.last_search_stats: dict | None = None

    # -- parameters -------------------------------------------------------------------
    def _check_nprobe(self, value) -> int:
        return check_int(value, "nprobe", maximum=self.nlist)

    _knobs = {"nprobe": ("nprobe", _check_nprobe)}

    @property
    def nprobe(self) -> int:
        """Number of inverted lists scanned per query, ``1 ≤ nprobe ≤ nlist`` (or per call:
        ``search(xq, k, nprobe=…)``)."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value) -> None:
        self._nprobe = self._check_nprobe(value)

    @property
    def is_trained(self) -> bool:
        return self.centroids is not None

    @property
    def ntotal(self) -> int:
        return self.lists.ntotal if self.is_trained else 0

    # -- training -----------------------------------------------------------------------
    def train(self, x) -> None:
        """Learn the ``nlist`` coarse centroids (and subclass codebooks) from ``x``."""
        x = self._prepare(x, "x")
        if len(x) < self.nlist:
            raise ValueError(f"training needs at least nlist={self.nlist} vectors, got {len(x)}")
        self._write(self._train, x)

    def _train(self, x: np.ndarray) -> None:
        with warnings.catch_warnings():  # subsampling to 256 points per list is intended
            warnings.simplefilter("ignore")
            km = KMeans(self.nlist, n_iter=COARSE_ITERATIONS, seed=self.seed, init="random",
                        spherical=self.metric != "l2").fit(x)
        self._set_centroids(km.cluster_centers_)
        self._train_codec(x, self._assign(x))
        self.lists = self._new_lists()

    def _set_centroids(self, centroids: np.ndarray) -> None:
        self.centroids = centroids
        self._centroid_norms = squared_norms(centroids)  # once, not per search
        alpha, beta, _ = METRIC_FORM[self._coarse_metric]
        self._coarse_args = (centroids, self._centroid_norms, np.float32(alpha),
                             np.float32(beta))

    def _assign(self, x: np.ndarray) -> np.ndarray:
        return self._coarse_search(x, 1)[1][:, 0]

    @property
    def _coarse_metric(self) -> str:
        return "l2" if self.metric == "l2" else "ip"

    def _coarse_search(self, xq: np.ndarray, nprobe: int):
        """The ``nprobe`` nearest centroids: ``(values, lists)``, l2 distance or inner product."""
        return fast_topk(xq, self.centroids, self._centroid_norms, nprobe, self._coarse_metric)

    def _coarse_form(self, nprobe: int):
        """``(centroids, norms, α, β, nprobe)`` for the single-query kernels' coarse search."""
        return (*self._coarse_args, nprobe)

    # -- adding and removing ----------------------------------------------------------
    def _add(self, x: np.ndarray) -> None:
        ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
        self._add_with_ids(x, ids)

    def add_with_ids(self, x, ids) -> None:
        """Store the rows of ``x`` under the given int64 ``ids`` (shape ``(n,)``)."""
        if not self.is_trained:
            raise ValueError(f"{type(self).__name__} must be trained before add(); call train(x)")
        x = self._prepare(x, "x")
        self._write(self._add_with_ids, x, self._checked_ids(ids, len(x)))

    def _add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        lists = self._assign(x)
        self.lists.add(lists, {"ids": ids, **self._entries(x, lists)})
        if len(ids):
            self._next_id = max(self._next_id, int(ids.max()) + 1)

    def remove_ids(self, ids) -> int:
        """Remove every stored vector whose id is in ``ids``; return how many were removed."""
        ids = self._ids_to_remove(ids)
        if not self.is_trained:
            return 0
        return self._write(self.lists.remove_ids, ids)

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if not self.is_trained:
            raise ValueError(f"the {type(self).__name__} is not trained and stores nothing")
        return self._decode(*self.lists.locate(ids))

    def _reset(self) -> None:
        self._next_id = 0
        if self.is_trained:
            self.lists.clear()

    # -- searching ----------------------------------------------------------------------
    def _search(self, xq: np.ndarray, k: int, id_filter=None, **knobs):
        # More candidates than stored vectors would only be padding.
        allowed = self._allowed(id_filter)
        if len(xq) == 1 and not self._refines(knobs):  # one kernel call, results included
            D = np.empty((1, k), dtype=np.float32)
            I = np.empty((1, k), dtype=np.int64)
            scanned = np.empty(1, dtype=np.int64)
            self._search_serial(xq, knobs["nprobe"], allowed, D, I, scanned)
        else:
            n_candidates = max(k, min(self._n_candidates(k, knobs), self.ntotal))
            # Queries in blocks, so the candidates (and the vectors gathered to re-rank
            # them) take at most about SEARCH_BLOCK_BYTES at a time.
            block = max(1, SEARCH_BLOCK_BYTES // (n_candidates * (self.d + 4) * 4))
            parts = [self._search_block(xq[i:i + block], k, n_candidates, knobs, allowed)
                     for i in range(0, len(xq), block)]
            D, I, scanned = (np.concatenate(a) for a in zip(*parts))
        self.last_search_stats = {"coarse_distances": self.nlist,
                                  "entries_scanned": scanned}
        return D, I

    def _allowed(self, id_filter) -> np.ndarray:
        """The kernels' ``allowed`` mask over pool positions (the live entries' ids tested;
        :data:`~.base.NO_FILTER` without a filter)."""
        if id_filter is None:
            return NO_FILTER
        allowed = np.zeros(len(self.lists.ids), dtype=np.bool_)
        live = self.lists.live_positions()
        allowed[live] = id_filter.allows(self.lists.ids[live])
        return allowed

    def _search_block(self, xq: np.ndarray, k: int, n_candidates: int, knobs: dict,
                      allowed: np.ndarray):
        coarse, probes = self._coarse_search(xq, knobs["nprobe"])
        heap_vals, heap_pos = new_heaps(len(xq), n_candidates)
        scanned = np.zeros(len(xq), dtype=np.int64)
        self._scan(xq, coarse, probes, heap_vals, heap_pos, scanned, allowed)
        sort_heaps(heap_vals, heap_pos)
        D, I = self._finish(*self._refine(xq, heap_vals, heap_pos, k, knobs))
        return D, I, scanned

    def _n_candidates(self, k: int, knobs: dict) -> int:
        """How many candidates the list scan keeps per query (more if re-ranked)."""
        return k

    def _refines(self, knobs: dict) -> bool:
        """Whether :meth:`_refine` re-ranks the candidates with these knobs."""
        return False

    def _refine(self, xq, heap_vals, heap_pos, k, knobs: dict):
        """Re-rank the scanned candidates; the base class keeps them as they are."""
        return heap_vals, heap_pos

    @property
    def nbytes(self) -> int:
        """Bytes held to answer queries: centroids, codebooks, derived tables and the live
        list entries (not the spare capacity the lists keep to grow)."""
        if not self.is_trained:
            return 0
        columns = self.lists.columns.values()
        entries = self.ntotal * sum(c.itemsize * int(np.prod(c.shape[1:])) for c in columns)
        codec = sum(a.nbytes for a in self._codec_state().values())
        derived = getattr(self, "_list_terms", np.empty(0)).nbytes
        return self.centroids.nbytes + entries + 3 * 8 * self.nlist + codec + derived

    def _finish(self, heap_vals, heap_pos):
        """Sorted heap values and pool positions -> FAISS-style ``(D, I)``."""
        D = np.empty(heap_vals.shape, dtype=np.float32)
        I = np.empty(heap_pos.shape, dtype=np.int64)
        write_results(heap_vals, heap_pos, self.lists.ids, self.metric == "l2", D, I)
        return D, I

    # -- persistence --------------------------------------------------------------------
    def _state(self):
        params = {"nlist": self.nlist, "seed": self.seed, "nprobe": self.nprobe,
                  "next_id": self._next_id, "trained": self.is_trained, **self._codec_params()}
        arrays = {}
        if self.is_trained:
            arrays = {"centroids": self.centroids, **self.lists.state("lists_"),
                      **self._codec_state()}
        return params, arrays

    @classmethod
    def _from_state(cls, params, arrays):
        index = cls._construct(params)
        index._next_id = int(params["next_id"])
        if params["trained"]:
            centroids = arrays["centroids"]
            if centroids.shape != (index.nlist, index.d) or centroids.dtype != np.float32:
                raise ValueError(f"centroids have shape {centroids.shape}")
            index._set_centroids(centroids.copy())
            index._load_codec(arrays)
            index.lists = InvertedLists.from_state(index.nlist, index._list_fields(), arrays,
                                                   "lists_")
        index.nprobe = params["nprobe"]
        return index

    def _new_lists(self) -> InvertedLists:
        return InvertedLists(self.nlist, self._list_fields())


@register_index
class IVFFlatIndex(_IVFIndex):
    """IVF with exact scoring of the stored vectors (FAISS ``IndexIVFFlat``).

    Parameters
    ----------
    d : int
    nlist : int
        Number of inverted lists (coarse centroids); ``≈ √n`` balances the two search terms.
    metric : {"l2", "ip", "cosine"}
        For ``ip``/``cosine`` the coarse quantizer is spherical k-means and lists are probed
        by largest inner product.
    seed : int
        Seed of the coarse k-means.

    Attributes
    ----------
    nprobe : int
        Lists scanned per query (default 1).
    last_search_stats : dict
        ``coarse_distances`` (per query) and ``entries_scanned`` (array, per query) of the
        last search: the two terms of the cost model.
    """

    kind = "IVFFlatIndex"

    @classmethod
    def _construct(cls, params):
        return cls(params["d"], params["nlist"], params["metric"], seed=params["seed"])

    def _train_codec(self, x, assign) -> None:
        pass

    def _codec_params(self) -> dict:
        return {}

    def _codec_state(self) -> dict:
        return {}

    def _load_codec(self, arrays) -> None:
        pass

    def _list_fields(self) -> dict:
        return {"vectors": (self.d, np.float32)}

    def _entries(self, x, lists) -> dict:
        return {"vectors": x}

    def _decode(self, positions, lists) -> np.ndarray:
        return self.lists.columns["vectors"][positions].copy()

    def _scan(self, xq, coarse, probes, heap_vals, heap_pos, scanned, allowed):
        lists = self.lists
        scan_flat_lists(xq, probes, lists.columns["vectors"], lists.offsets, lists.sizes,
                        self.metric == "l2", allowed, heap_vals, heap_pos, scanned)

    def _search_serial(self, xq, nprobe, allowed, out_d, out_i, scanned):
        lists = self.lists
        flat_search_serial(xq, *self._coarse_form(nprobe), lists.columns["vectors"],
                           lists.offsets, lists.sizes, self.metric == "l2", allowed,
                           lists.ids, out_d, out_i, scanned)


@register_index
class IVFPQIndex(_IVFIndex):
    """IVF whose lists hold product-quantization codes (FAISS ``IndexIVFPQ``).

    With ``by_residual`` (the default) a vector ``x`` in list ``l`` is stored as the PQ code
    of its residual ``r = x − y_l``, which is smaller than ``x`` and so better quantized.
    Distances use FAISS's precomputed tables. For l2, with ``r̂`` the decoded residual,

        ‖q − y_l − r̂‖² = ‖q − y_l‖²  +  Σ_j (‖r̂_j‖² + 2 y_l,j·r̂_j)  −  2 Σ_j q_j·r̂_j
                         coarse search   per list, precomputed       per query

    so a probed list costs ``m · ksub`` additions to combine two tables, then ``m``
    look-ups per code. For ip, ``q·(y_l + r̂) = q·y_l + Σ_j q_j·r̂_j``.

    Parameters
    ----------
    d, nlist, metric, seed
        As :class:`IVFFlatIndex`.
    m : int
        PQ sub-quantizers (bytes per code for ``nbits = 8``); must divide ``d``.
    nbits : int
        Bits per sub-code, 1..8.
    by_residual : bool
        Encode ``x − y_l`` (True) or ``x`` itself.
    store_vectors : bool
        Also keep the float32 vectors, for exact re-ranking (``refine_k``).

    Attributes
    ----------
    nprobe : int
        Lists scanned per query.
    refine_k : int
        If > 0 (needs ``store_vectors=True``), the best ``max(refine_k, k)`` candidates by
        PQ distance are re-ranked by their exact distance (FAISS ``IndexRefineFlat``).
    pq : ProductQuantizer
        The trained quantizer.
    """

    kind = "IVFPQIndex"

    def __init__(self, d: int, nlist: int, m: int, nbits: int = 8, metric: str = "l2", *,
                 by_residual: bool = True, store_vectors: bool = False, seed: int = 0):
        super().__init__(d, nlist, metric, seed=seed)
        self.pq = ProductQuantizer(self.d, m, nbits, seed=seed)
        self.by_residual = bool(by_residual)
        self.store_vectors = bool(store_vectors)
        self._refine_k = 0

    @property
    def refine_k(self) -> int:
        return self._refine_k

    @refine_k.setter
    def refine_k(self, value) -> None:
        self._refine_k = self._check_refine_k(value)

    def _check_refine_k(self, value) -> int:
        value = check_int(value, "refine_k", minimum=0)
        if value and not self.store_vectors:
            raise ValueError("refine_k needs the stored vectors; build the index with "
                             "store_vectors=True")
        return value

    _knobs = {**_IVFIndex._knobs, "refine_k": ("refine_k", _check_refine_k)}

    @classmethod
    def _construct(cls, params):
        return cls(params["d"], params["nlist"], params["m"], params["nbits"], params["metric"],
                   by_residual=params["by_residual"], store_vectors=params["store_vectors"],
                   seed=params["seed"])

    def _codec_params(self) -> dict:
        return {"m": self.pq.m, "nbits": self.pq.nbits, "by_residual": self.by_residual,
                "store_vectors": self.store_vectors, "refine_k": self.refine_k}

    def _codec_state(self) -> dict:
        return {"codebooks": self.pq.codebooks_}  # the list terms are derived from them

    def _load_codec(self, arrays) -> None:
        self.pq.codebooks_ = arrays["codebooks"]
        self._list_terms = self._precompute_list_terms()

    @classmethod
    def _from_state(cls, params, arrays):
        index = super()._from_state(params, arrays)
        index.refine_k = params["refine_k"]
        return index

    def _train_codec(self, x, assign) -> None:
        target = x - self.centroids[assign] if self.by_residual else x
        with warnings.catch_warnings():  # PQ trains on 256 · ksub points, as FAISS
            warnings.simplefilter("ignore")
            self.pq.fit(target)
        self._list_terms = self._precompute_list_terms()

    @property
    def _codebooks_t(self) -> np.ndarray:
        return self.pq._codebooks_t  # (m, dsub, ksub), as the table kernels read them

    def _precompute_list_terms(self) -> np.ndarray:
        """``(nlist or 1, m, ksub)`` float32: the per-list part of the ADC value."""
        cb = self.pq.codebooks_.astype(np.float64)  # (m, ksub, dsub)
        if self.metric != "l2":
            return np.zeros((1, self.pq.m, self.pq.ksub), dtype=np.float32)
        norms = np.einsum("jcs,jcs->jc", cb, cb)
        if not self.by_residual:
            return norms[None].astype(np.float32)
        y = self.centroids.astype(np.float64).reshape(self.nlist, self.pq.m, self.pq.dsub)
        return (norms[None] + 2.0 * np.einsum("ljs,jcs->ljc", y, cb)).astype(np.float32)

    def _list_fields(self) -> dict:
        fields = {"codes": (self.pq.m, np.uint8)}
        return {**fields, "vectors": (self.d, np.float32)} if self.store_vectors else fields

    def _entries(self, x, lists) -> dict:
        entries = {"codes": self.pq.encode(x - self.centroids[lists] if self.by_residual else x)}
        return {**entries, "vectors": x} if self.store_vectors else entries

    def _decode(self, positions, lists) -> np.ndarray:
        """The PQ reconstruction ``y_l + r̂`` (``r̂`` alone without residuals), also when
        the exact vectors are kept for re-ranking, as FAISS's ``IndexIVFPQ``."""
        decoded = self.pq.decode(self.lists.columns["codes"][positions])
        return decoded + self.centroids[lists] if self.by_residual else decoded

    def _exact_vectors(self, ids: np.ndarray) -> np.ndarray:
        """The vectors kept for re-ranking (``store_vectors=True``) under ``ids``, as
        added: what :meth:`_decode` approximates."""
        if not self.store_vectors:
            raise ValueError("this IVFPQIndex keeps PQ codes only (store_vectors=False)")
        return self.lists.columns["vectors"][self.lists.locate(ids)[0]].copy()

    def _query_tables(self, xq):
        """``(nq, m, ksub)``: ``−2 q_j·C_jc`` (l2) or ``−q_j·C_jc`` (ip)."""
        tables = self.pq.compute_distance_tables(xq, metric="ip")
        tables *= np.float32(-2.0 if self.metric == "l2" else -1.0)
        return tables

    def _scan(self, xq, coarse, probes, heap_vals, heap_pos, scanned, allowed):
        l2 = self.metric == "l2"
        if self.by_residual:
            coarse_terms = coarse if l2 else -coarse
        elif l2:
            coarse_terms = np.repeat(squared_norms(xq)[:, None], probes.shape[1], axis=1)
        else:
            coarse_terms = np.zeros(probes.shape, dtype=np.float32)
        lists = self.lists
        scan_pq_lists(self._query_tables(xq), self._list_terms,
                      np.ascontiguousarray(coarse_terms), probes, lists.columns["codes"],
                      lists.offsets, lists.sizes, allowed, heap_vals, heap_pos, scanned)

    def _search_serial(self, xq, nprobe, allowed, out_d, out_i, scanned):
        lists = self.lists
        pq_search_serial(xq, self._codebooks_t, self._list_terms, *self._coarse_form(nprobe),
                         self.by_residual, lists.columns["codes"], lists.offsets, lists.sizes,
                         allowed, lists.ids, self.metric == "l2", out_d, out_i, scanned)

    def _n_candidates(self, k: int, knobs: dict) -> int:
        return max(k, knobs["refine_k"])

    def _refines(self, knobs: dict) -> bool:
        return bool(knobs["refine_k"])

    def _refine(self, xq, heap_vals, heap_pos, k, knobs: dict):
        if not knobs["refine_k"]:
            return heap_vals, heap_pos
        valid = heap_pos >= 0
        vectors = self.lists.columns["vectors"][np.maximum(heap_pos, 0)]  # (nq, k', d)
        if self.metric == "l2":
            exact = np.einsum("qkd,qkd->qk", vectors - xq[:, None, :], vectors - xq[:, None, :])
        else:
            exact = -np.einsum("qkd,qd->qk", vectors, xq)
        exact = np.where(valid, exact, np.inf)
        order = np.argsort(exact, axis=1, kind="stable")[:, :k]
        values = np.take_along_axis(exact, order, axis=1).astype(np.float32)
        return values, np.take_along_axis(heap_pos, order, axis=1)
