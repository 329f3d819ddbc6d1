"""FlatIndex: exact search over every stored vector (the brute-force baseline).

Search cost is ``O(nq · n · d)``: a float32 scan (:mod:`retgen_ref.distances`) whose
candidates are scored again in float64 and certified exact (:mod:`retgen_ref.exact`).
"""

from __future__ import annotations

import numpy as np

from ..exact import exact_topk, exact_topk_rows
from .base import Index, register_index
from .growable import GrowableRows
from .rowids import PositionalIds


@register_index
class FlatIndex(PositionalIds, Index):
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
        self.last_search_stats: dict | None = None

    @property
    def ntotal(self) -> int:
        return len(self._vectors)

    @property
    def vectors(self) -> np.ndarray:
        """Read-only view of the stored vectors ``(ntotal, d)`` (unit rows for cosine)."""
        return self._vectors.view()

    def _stored_rows(self) -> np.ndarray:
        return self.vectors

    def _reset(self) -> None:
        self._clear_rows()
        self._clear_ids()

    def _clear_rows(self) -> None:
        self._vectors.clear()
        self._norms.clear()
        self._max_sq_norm = 0.0

    def _add_rows(self, x: np.ndarray) -> None:
        norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        self._vectors.append(x)
        self._norms.append(norms.astype(np.float32))
        if len(x):
            self._max_sq_norm = max(self._max_sq_norm, float(norms.max()))

    def _keep_rows(self, keep: np.ndarray) -> None:
        vectors = self._vectors.view()[keep]
        self._clear_rows()
        self._add_rows(vectors)

    def _search(self, xq: np.ndarray, k: int, id_filter=None):
        vectors, norms = self._vectors.view(), self._norms.view()
        if id_filter is None:
            D, I, rescanned = exact_topk(xq, vectors, norms, k, self.metric, self._max_sq_norm)
        else:
            rows = np.flatnonzero(self._allowed(id_filter))
            D, I, rescanned = exact_topk_rows(xq, vectors, norms, rows, k, self.metric,
                                              self._max_sq_norm)
        self.last_search_stats = {"rescanned": rescanned}
        return D, self._labels(I)

    def _state(self):
        return {}, {"vectors": self._vectors.view(), **self._ids_state()}

    @classmethod
    def _from_state(cls, params, arrays):
        index = cls(params["d"], params["metric"])
        vectors = arrays["vectors"]
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != index.d:
            raise ValueError(f"vectors have shape {vectors.shape} and dtype {vectors.dtype}")
        ids = index._checked_saved_ids(arrays, len(vectors))
        if len(vectors) or ids is not None:
            index._add(np.ascontiguousarray(vectors), ids)
        return index
