"""FlatIndex: exact search over every stored vector (the brute-force baseline).

Search cost is ``O(nq · n · d)``: a float32 scan (:mod:`retgen_ref.distances`) whose
candidates are scored again in float64 and certified exact (:mod:`retgen_ref.exact`).
"""

from __future__ import annotations

import numpy as np

from ..exact import exact_topk
from .base import Index, register_index
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
        self.last_search_stats: dict | None = None

    @property
    def ntotal(self) -> int:
        return len(self._vectors)

    @property
    def vectors(self) -> np.ndarray:
        """Read-only view of the stored vectors ``(ntotal, d)`` (unit rows for cosine)."""
        return self._vectors.view()

    _stored_rows = vectors.fget

    def _reset(self) -> None:
        self._vectors.clear()
        self._norms.clear()
        self._max_sq_norm = 0.0

    def _add(self, x: np.ndarray) -> None:
        norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)
        self._vectors.append(x)
        self._norms.append(norms.astype(np.float32))
        self._max_sq_norm = max(self._max_sq_norm, float(norms.max()))

    def _search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        D, I, rescanned = exact_topk(xq, self._vectors.view(), self._norms.view(), k,
                                     self.metric, self._max_sq_norm)
        self.last_search_stats = {"rescanned": rescanned}
        return D, I

    def _state(self):
        return {}, {"vectors": self._vectors.view()}

    @classmethod
    def _from_state(cls, params, arrays):
        index = cls(params["d"], params["metric"])
        vectors = arrays["vectors"]
        if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != index.d:
            raise ValueError(f"vectors have shape {vectors.shape} and dtype {vectors.dtype}")
        if len(vectors):
            index._add(np.ascontiguousarray(vectors))
        return index
