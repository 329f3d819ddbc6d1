"""What every index shares: validation at the boundary, FAISS conventions, persistence.

Subclasses implement ``_add(x)``, ``_search(xq, k)``, ``_state()`` and ``_from_state``;
this class checks arguments once (DESIGN.md, conventions 1 and 6) so the subclasses and
their kernels never have to.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from .. import persist
from .._validation import as_array, check_int, check_metric
from ..distances import needs_normalisation, normalise_rows

_INDEX_KINDS: dict[str, type["Index"]] = {}


def register_index(cls: type["Index"]) -> type["Index"]:
    """Class decorator: make ``cls`` loadable by :func:`load_index` under ``cls.kind``."""
    _INDEX_KINDS[cls.kind] = cls
    return cls


class Index(ABC):
    """Base of all indexes: ``add``, ``search``, ``ntotal``, ``reset``, ``save``.

    Parameters
    ----------
    d : int
        Dimension of the vectors.
    metric : {"l2", "ip", "cosine"}
        ``search`` returns squared L2 distances (ascending), inner products or cosine
        similarities (descending).
    """

    kind: str = ""

    def __init__(self, d: int, metric: str = "l2"):
        self.d = check_int(d, "d")
        self.metric = check_metric(metric)

    # -- public API -----------------------------------------------------------------
    @property
    @abstractmethod
    def ntotal(self) -> int:
        """Number of stored vectors."""

    @property
    def is_trained(self) -> bool:
        return True

    def add(self, x) -> None:
        """Store the rows of ``x`` (shape ``(n, d)``); they get ids ``ntotal … ntotal+n-1``."""
        if not self.is_trained:
            raise ValueError(f"{type(self).__name__} must be trained before add(); call train(x)")
        self._add(self._prepare(x, "x"))

    def search(self, xq, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(D, I)`` of the ``k`` nearest stored vectors of every row of ``xq``.

        ``D`` is ``(nq, k)`` float32 and ``I`` ``(nq, k)`` int64, best first. When fewer
        than ``k`` results exist the rest of a row is padded with id ``-1`` and distance
        ``+inf`` (l2) or ``-inf`` (ip, cosine).
        """
        k = check_int(k, "k")
        xq = self._prepare(xq, "xq")
        if self.ntotal == 0:
            raise ValueError(f"the {type(self).__name__} is empty; add vectors before searching")
        return self._search(xq, k)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the index needs to answer queries (what ``save`` writes)."""
        return sum(a.nbytes for a in self._state()[1].values())

    def save(self, path) -> None:
        """Write the index to ``path`` (a checksummed ``.npz``); reopen with ``load_index``."""
        params, arrays = self._state()
        persist.save_state(path, self.kind, {"d": self.d, "metric": self.metric, **params},
                           arrays)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, metric={self.metric!r}, ntotal={self.ntotal})"

    # -- for subclasses ---------------------------------------------------------------
    def _prepare(self, x, name: str) -> np.ndarray:
        """Validate ``x`` as ``(n, d)`` finite reals; float32, unit rows for cosine."""
        x = as_array(x, name, ndim=2, dtype=np.float32, d=self.d,
                     d_name="d (this index's dimension)")
        return normalise_rows(x) if needs_normalisation(self.metric) else x

    @abstractmethod
    def _add(self, x: np.ndarray) -> None: ...

    @abstractmethod
    def _search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    @abstractmethod
    def reset(self) -> None:
        """Remove every stored vector (training, if any, is kept)."""

    @abstractmethod
    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Scalar parameters (JSON-able) and arrays that reconstruct the index."""

    @classmethod
    @abstractmethod
    def _from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> "Index": ...


def load_index(path) -> Index:
    """Load any index saved with ``index.save(path)``, or reopen the :class:`ShardedIndex`
    whose directory is ``path`` (``retgen_v2.md`` §8.2).

    Raises ``ValueError`` for a damaged file, a file of another format version, or a file
    that does not hold an index; for a directory, when it holds no ShardedIndex or a
    damaged one.
    """
    if os.path.isdir(path):
        from .store import ShardedIndex  # imported here: store.py builds on this module

        return ShardedIndex.open(path)
    kind, params, arrays = persist.load_state(path)
    cls = _INDEX_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"{path} holds a {kind!r}, not an index; known index kinds: "
                         f"{', '.join(sorted(_INDEX_KINDS))}")
    try:
        return cls._from_state(params, arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} holds an inconsistent {kind}: {exc}") from None
