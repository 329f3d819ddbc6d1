"""Inverted-file indexes: IVF-Flat and IVF-PQ (``retgen_v2.md`` §2, §4).

A coarse k-means quantizer with ``nlist`` centroids ``y_1 … y_nlist`` partitions the
vectors; each is stored in the inverted list of its nearest centroid. A query scores the
``nlist`` centroids, then only the vectors of its ``nprobe`` nearest lists:

    cost ≈ nlist · d  +  nprobe · (n / nlist) · (cost of scoring one stored entry)

(``retgen_v2.md`` Theorem 2.1 with ``k = nlist``). IVF-Flat stores the vectors and scores
them exactly; IVF-PQ stores ``m``-byte product-quantization codes of the residuals
``x − y_l`` and scores them with lookup tables. With ``nprobe = nlist`` IVF-Flat is exact.

Ids: ``add`` numbers vectors ``0, 1, 2, …`` in the order they are added (over the life of
the index, so ids stay unique after ``remove_ids``); ``add_with_ids`` takes your own int64
ids (keeping them unique is then up to you, as in FAISS).
"""

from __future__ import annotations

import warnings

import numpy as np

from .._validation import as_array, check_int
from ..distances import exact_topk, sort_heaps, squared_norms
from ..heap import new_heaps
from ..kmeans import KMeans
from .base import Index, register_index
from .invlists import InvertedLists
from .ivf_kernels import scan_flat_lists, scan_pq_lists

#: Lloyd iterations of the coarse quantizer (FAISS's IVF default; k-means is run on up to
#: 256 points per list).
COARSE_ITERATIONS = 10


class _IVFIndex(Index):
    """Shared part of the IVF indexes: coarse quantizer, lists, ids, nprobe, persistence."""

    def __init__(self, d: int, nlist: int, metric: str = "l2", seed: int = 0):
        super().__init__(d, metric)
        self.nlist = check_int(nlist, "nlist")
        self.seed = check_int(seed, "seed", minimum=0)
        self.centroids = None
        self._nprobe = 1
        self._next_id = 0
        self.last_search_stats: dict | None = None

    # -- parameters -------------------------------------------------------------------
    @property
    def nprobe(self) -> int:
        """Number of inverted lists scanned per query, ``1 ≤ nprobe ≤ nlist``."""
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value) -> None:
        self._nprobe = check_int(value, "nprobe", maximum=self.nlist)

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
        with warnings.catch_warnings():  # subsampling to 256 points per list is intended
            warnings.simplefilter("ignore")
            km = KMeans(self.nlist, n_iter=COARSE_ITERATIONS, seed=self.seed, init="random",
                        spherical=self.metric != "l2").fit(x)
        self.centroids = km.cluster_centers_
        self._train_codec(x, self._assign(x))
        self.lists = self._new_lists()

    def _assign(self, x: np.ndarray) -> np.ndarray:
        return self._coarse_search(x, 1)[1][:, 0]

    def _coarse_search(self, xq: np.ndarray, nprobe: int):
        """The ``nprobe`` nearest centroids: ``(values, lists)``, l2 distance or inner product."""
        coarse_metric = "l2" if self.metric == "l2" else "ip"
        return exact_topk(xq, self.centroids, squared_norms(self.centroids), nprobe,
                          coarse_metric)

    # -- adding and removing ----------------------------------------------------------
    def _add(self, x: np.ndarray) -> None:
        ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
        self._add_with_ids(x, ids)

    def add_with_ids(self, x, ids) -> None:
        """Store the rows of ``x`` under the given int64 ``ids`` (shape ``(n,)``)."""
        if not self.is_trained:
            raise ValueError(f"{type(self).__name__} must be trained before add(); call train(x)")
        x = self._prepare(x, "x")
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu" or ids.shape != (len(x),):
            raise ValueError(f"ids must be {len(x)} integers (one per row of x), "
                             f"got shape {ids.shape} and dtype {ids.dtype}")
        self._add_with_ids(x, ids.astype(np.int64))

    def _add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        lists = self._assign(x)
        self.lists.add(lists, self._encode(x, lists), ids)
        if len(ids):
            self._next_id = max(self._next_id, int(ids.max()) + 1)

    def remove_ids(self, ids) -> int:
        """Remove every stored vector whose id is in ``ids``; return how many were removed."""
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        return self.lists.remove_ids(ids.astype(np.int64).ravel()) if self.is_trained else 0

    def reset(self) -> None:
        if self.is_trained:
            self.lists.clear()

    # -- searching ----------------------------------------------------------------------
    def _search(self, xq: np.ndarray, k: int):
        coarse, probes = self._coarse_search(xq, self.nprobe)
        heap_vals, heap_pos = new_heaps(len(xq), k)
        scanned = np.zeros(len(xq), dtype=np.int64)
        self._scan(xq, coarse, probes, heap_vals, heap_pos, scanned)
        sort_heaps(heap_vals, heap_pos)
        D, I = self._finish(xq, heap_vals, heap_pos, k)
        self.last_search_stats = {"coarse_distances": self.nlist,
                                  "entries_scanned": scanned}
        return D, I

    def _finish(self, xq, heap_vals, heap_pos, k):
        """Heap values and pool positions -> FAISS-style ``(D, I)``."""
        empty = heap_pos < 0
        ids = np.where(empty, -1, self.lists.ids[np.maximum(heap_pos, 0)])
        D = heap_vals if self.metric == "l2" else -heap_vals
        D[empty] = np.inf if self.metric == "l2" else -np.inf
        return D, ids

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
            index.centroids = centroids.copy()
            index._load_codec(arrays)
            width, dtype = index._list_layout()
            index.lists = InvertedLists.from_state(index.nlist, width, dtype, arrays, "lists_")
        index.nprobe = params["nprobe"]
        return index

    def _new_lists(self) -> InvertedLists:
        return InvertedLists(self.nlist, *self._list_layout())


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
        return cls(params["d"], params["nlist"], params["metric"], params["seed"])

    def _train_codec(self, x, assign) -> None:
        pass

    def _codec_params(self) -> dict:
        return {}

    def _codec_state(self) -> dict:
        return {}

    def _load_codec(self, arrays) -> None:
        pass

    def _list_layout(self):
        return self.d, np.float32

    def _encode(self, x, lists):
        return x

    def _scan(self, xq, coarse, probes, heap_vals, heap_pos, scanned):
        lists = self.lists
        scan_flat_lists(xq, probes, lists.pool, lists.offsets, lists.sizes,
                        self.metric == "l2", heap_vals, heap_pos, scanned)
