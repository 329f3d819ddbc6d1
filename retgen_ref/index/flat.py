"""FlatIndex: exact search over every stored vector (the brute-force baseline).

Search cost is ``O(nq · n · d)``: a float32 scan (:mod:`retgen_ref.distances`) whose
candidates are scored again in float64 and certified exact (:mod:`retgen_ref.exact`).
"""

from __future__ import annotations

import numpy as np

from ..exact import exact_topk
from .base import Index, register_index, rows_with_ids
from .growable import GrowableRows


@register_index
class FlatIndex(Index):
    """Exact k-NN index, the counterpart of FAISS ``IndexFlatL2`` / ``IndexFlatIP``.

    Vectors are stored as float32 (unit-normalised for ``metric="cosine"``) with their
    squared norms, in buffers that grow geometrically, so adding in many small batches
    costs amortised ``O(n · d)`` in total.

    Results are exact: the ids and distances of a float64 brute force over the stored
    float32 vectors, ties broken by id, also for data far from the origin (where the
    float32 formula ``‖x‖² − 2q·x`` alone ranks neighbours wrongly).

    Attributes
    ----------
    last_search_stats : dict
        ``rescanned``: queries of the last search whose float32 candidates could not be
        certified and were scanned again in float64 (:mod:`retgen_ref.exact`).

    Examples
    --------
    >>> import numpy as np
    >>> from retgen_ref import FlatIndex
    >>> index = FlatIndex(2)
    >>> index.add(np.array([[0, 0], [1, 0], [0, 2]], dtype=np.float32))
    >>> D, I = index.search(np.array([[0.9, 0.1]]), k=2)
    >>> I.tolist(), [[round(float(v), 2) for v in row] for row in D]
    ([[1, 0]], [[0.02, 0.82]])
    """

    kind = "FlatIndex"

    def __init__(self, d: int, metric: str = "l2"):
        super().__init__(d, metric)
        self._vectors = GrowableRows(self.d, np.float32)
        self._norms = GrowableRows(None, np.float32)
        self._max_sq_norm = 0.0
        self._ids: GrowableRows | None = None  # None: the ids are the positions
        self.last_search_stats: dict | None = None

    @property
    def ntotal(self) -> int:
        return len(self._vectors)

    @property
    def vectors(self) -> np.ndarray:
        """Read-only view of the stored vectors ``(ntotal, d)`` (unit rows for cosine)."""
        return self._vectors.view()

    @property
    def ids(self) -> np.ndarray:
        """The id of each stored row, in storage order (``0 … ntotal − 1`` unless
        :meth:`add_with_ids` or :meth:`remove_ids` was used)."""
        return np.arange(self.ntotal) if self._ids is None else self._ids.view()

    def add_with_ids(self, x, ids) -> None:
        """Store the rows of ``x`` under the given int64 ``ids`` (FAISS ``IndexIDMap``);
        a later :meth:`add` numbers on from the largest id. Ties in a search are broken by
        storage order, which is id order only for the default ids."""
        x = self._prepare(x, "x")
        self._write(self._add, x, self._checked_ids(ids, len(x)))

    def remove_ids(self, ids) -> int:
        """Remove every stored vector whose id is in ``ids``; return how many were removed.
        Costs ``O(ntotal · d)``: the rows that stay are copied together."""
        return self._write(self._remove, self._ids_to_remove(ids))

    def _remove(self, ids: np.ndarray) -> int:
        stored = self.ids
        keep = ~np.isin(stored, ids)
        removed = int(len(keep) - keep.sum())
        if removed:
            vectors = self._vectors.view()[keep]
            self._reset()
            self._add(vectors, stored[keep])
        return removed

    def _stored_rows(self) -> np.ndarray:
        return self.vectors

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if self._ids is None:
            return super()._reconstruct(ids)
        return self.vectors[rows_with_ids(self._ids.view(), ids, "FlatIndex")].copy()

    def _reset(self) -> None:
        self._vectors.clear()
        self._norms.clear()
        self._max_sq_norm = 0.0
        self._ids = None

    def _add(self, x: np.ndarray, ids: np.ndarray | None = None) -> None:
        if ids is not None and self._ids is None:  # from positions to an id map
            self._ids = GrowableRows(None, np.int64)
            self._ids.append(np.arange(self.ntotal))
        if self._ids is not None:
            if ids is None:
                start = int(self._ids.view().max()) + 1 if self.ntotal else 0
                ids = np.arange(start, start + len(x))
            self._ids.append(ids)
        norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        self._vectors.append(x)
        self._norms.append(norms.astype(np.float32))
        if len(x):
            self._max_sq_norm = max(self._max_sq_norm, float(norms.max()))

    def _search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        D, I, rescanned = exact_topk(xq, self._vectors.view(), self._norms.view(), k,
                                     self.metric, self._max_sq_norm)
        self.last_search_stats = {"rescanned": rescanned}
        if self._ids is not None:
            I = np.where(I >= 0, self._ids.view()[np.maximum(I, 0)], -1)
        return D, I

    def _state(self):
        arrays = {"vectors": self._vectors.view()}
        return {}, arrays if self._ids is None else {**arrays, "ids": self._ids.view()}

    @classmethod
    def _from_state(cls, params, arrays):
        index = cls(params["d"], params["metric"])
        vectors = arrays["vectors"]
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != index.d:
            raise ValueError(f"vectors have shape {vectors.shape} and dtype {vectors.dtype}")
        ids = arrays.get("ids")
        if ids is not None and (ids.dtype != np.int64 or ids.shape != (len(vectors),)):
            raise ValueError(f"ids have shape {ids.shape} and dtype {ids.dtype}")
        if len(vectors) or ids is not None:
            index._add(np.ascontiguousarray(vectors), ids)
        return index
