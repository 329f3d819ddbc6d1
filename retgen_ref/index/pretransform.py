"""PreTransformIndex: a learned rotation in front of any index (FAISS ``IndexPreTransform``).

The index stores ``z = xR`` and answers a query ``q`` by searching ``qR`` in the inner
index. ``R`` is orthogonal (:class:`~retgen_ref.opq.OPQ`, Ge et al. 2013), so the rotation
preserves every quantity a search ranks by,

    ‖qR − xR‖² = ‖q − x‖²,    qR · xR = q · x,    ‖xR‖ = ‖x‖,

and the inner index's distances are those of the original vectors (up to its own
approximation): squared L2, inner product and cosine all pass through unchanged (for
cosine the rows are normalised first, and stay unit after the rotation). What changes is
how well a product quantizer behind it encodes the data: in front of an
:class:`~retgen_ref.index.ivf.IVFPQIndex` with the same ``m``, OPQ lowers the
quantization error and raises recall; in front of a
:class:`~retgen_ref.index.flat.FlatIndex` it changes nothing but rounding.

The FAISS spelling ``index_factory(d, "OPQ8,IVF256,PQ8")`` reads here

    PreTransformIndex(OPQ(d, 8), IVFPQIndex(d, 256, m=8))

``train(x)`` fits the rotation on ``x`` (unless it is already fitted), then trains the inner
index on ``xR``; ``add``, ``add_with_ids``, ``search``, ``remove_ids`` and ``reset`` rotate
where needed and delegate. Runtime knobs are set on the inner index (``index.index.nprobe``;
``index.nprobe`` forwards to it).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..opq import OPQ
from .base import _INDEX_KINDS, Index, register_index

#: Transforms a PreTransformIndex can hold and reload, by ``kind``.
TRANSFORMS = {OPQ.kind: OPQ}


@register_index
class PreTransformIndex(Index):
    """An orthogonal transform followed by an index (FAISS ``IndexPreTransform``).

    Parameters
    ----------
    transform : OPQ
        The rotation, fitted or not (an unfitted one is fitted by :meth:`train`). Its ``d``
        must be the inner index's.
    index : Index
        The inner index, empty, of any kind that :func:`~retgen_ref.index.load_index` can
        reload (not a :class:`~retgen_ref.index.store.ShardedIndex`, which lives in a
        folder). Trained by :meth:`train` on the rotated data if it needs training.

    The metric is the inner index's.

    Attributes
    ----------
    transform : OPQ
    index : Index
        The inner index; it holds the rotated vectors ``xR``.

    Examples
    --------
    >>> import numpy as np
    >>> from retgen_ref import IVFPQIndex
    >>> from retgen_ref.opq import OPQ
    >>> x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    >>> index = PreTransformIndex(OPQ(16, 4, nbits=4, n_iter=5), IVFPQIndex(16, 8, m=4, nbits=4))
    >>> index.train(x)
    >>> index.add(x)
    >>> index.nprobe = 8
    >>> D, I = index.search(x[:3], k=1)
    >>> I[:, 0].tolist()
    [0, 1, 2]
    """

    kind = "PreTransformIndex"

    def __init__(self, transform, index):
        if isinstance(index, Index) and index.ntotal:
            raise ValueError(f"the inner {type(index).__name__} already holds {index.ntotal} "
                             "vectors that were not rotated; pass an empty index")
        self._attach(transform, index)

    def _attach(self, transform, index) -> None:
        """Check the pair and hold it (``__init__``, and ``_from_state`` for a filled index)."""
        if not isinstance(transform, tuple(TRANSFORMS.values())):
            raise TypeError(f"transform must be one of {', '.join(TRANSFORMS)} (an orthogonal "
                            f"rotation), got {type(transform).__name__}")
        if not isinstance(index, Index) or _INDEX_KINDS.get(index.kind) is not type(index):
            raise TypeError(f"index must be an index that load_index can reload (FlatIndex, "
                            f"IVFPQIndex, ...), got {type(index).__name__}")
        if transform.d != index.d:
            raise ValueError(f"the transform has d={transform.d} but the index d={index.d}; "
                             "they must agree (a rotation keeps the dimension)")
        if not transform.is_fitted and hasattr(index, "train") and index.is_trained:
            raise ValueError(f"the inner {type(index).__name__} is trained but the transform "
                             "is not: it was trained on unrotated data; pass an untrained "
                             "index or a fitted transform")
        super().__init__(index.d, index.metric)
        self.transform = transform
        self.index = index

    def __repr__(self) -> str:
        return f"PreTransformIndex({self.transform!r}, {self.index!r})"

    # -- state ----------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    @property
    def is_trained(self) -> bool:
        return self.transform.is_fitted and self.index.is_trained

    @property
    def nprobe(self) -> int:
        """The inner index's ``nprobe`` (IVF indexes only)."""
        return self._inner_attribute("nprobe")

    @nprobe.setter
    def nprobe(self, value) -> None:
        self._inner_attribute("nprobe")
        self.index.nprobe = value

    @property
    def last_search_stats(self):
        """The inner index's statistics of the last search."""
        return getattr(self.index, "last_search_stats", None)

    def _inner_attribute(self, name: str):
        if not hasattr(type(self.index), name):
            raise AttributeError(f"the inner {type(self.index).__name__} has no {name!r}")
        return getattr(self.index, name)

    @property
    def nbytes(self) -> int:
        rotation = self.transform.rotation_.nbytes if self.transform.is_fitted else 0
        return rotation + self.index.nbytes

    # -- training, adding, searching -------------------------------------------------------
    def train(self, x) -> None:
        """Fit the transform on ``x`` (if not fitted yet), then train the inner index on
        the transformed rows (if it needs training)."""
        x = self._prepare(x, "x")
        self._write(self._train, x)

    def _train(self, x: np.ndarray) -> None:
        if not self.transform.is_fitted:
            with warnings.catch_warnings():  # subsampling to 256 · ksub rows is intended
                warnings.simplefilter("ignore")
                self.transform.fit(x)
        if not self.index.is_trained:
            self.index.train(self.transform.transform(x))

    def _add(self, x: np.ndarray) -> None:
        self.index.add(self.transform.transform(x))

    def add_with_ids(self, x, ids) -> None:
        """Store the rows of ``x`` under ``ids`` (inner indexes that take ids, e.g. IVF)."""
        add = self._inner_attribute("add_with_ids")
        if not self.is_trained:
            raise ValueError("PreTransformIndex must be trained before add(); call train(x)")
        x = self._prepare(x, "x")
        self._write(add, self.transform.transform(x), ids)

    def remove_ids(self, ids) -> int:
        """Remove the vectors whose id is in ``ids`` (inner indexes that can, e.g. IVF)."""
        return self._write(self._inner_attribute("remove_ids"), ids)

    def _checked_knobs(self, params: dict) -> dict:
        """The inner index's knobs (``nprobe=`` for IVF, ``ef=`` for HNSW, …)."""
        return self.index._checked_knobs(params)

    def _search(self, xq: np.ndarray, k: int, id_filter=None, **knobs):
        return self.index.search(self.transform.transform(xq), k, ids=id_filter, **knobs)

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The inner index's reconstruction, rotated back: ``x̂ = ẑ·Rᵀ``."""
        return self.transform.reverse_transform(self.index.reconstruct_batch(ids))

    def _reset(self) -> None:
        self.index.reset()

    # -- persistence ------------------------------------------------------------------------
    def _state(self):
        inner_params, inner_arrays = self.index._state()
        params = {"transform": {"kind": self.transform.kind, **self.transform._params()},
                  "index": {"kind": self.index.kind, "d": self.index.d,
                            "metric": self.index.metric, **inner_params}}
        arrays = {**{f"transform_{k}": v for k, v in self.transform._arrays().items()},
                  **{f"index_{k}": v for k, v in inner_arrays.items()}}
        return params, arrays

    @classmethod
    def _from_state(cls, params, arrays):
        t_params, i_params = dict(params["transform"]), dict(params["index"])
        t_kind, i_kind = t_params.pop("kind"), i_params.pop("kind")
        if t_kind not in TRANSFORMS or i_kind not in _INDEX_KINDS:
            raise ValueError(f"unknown transform {t_kind!r} or index {i_kind!r}")
        transform = TRANSFORMS[t_kind]._from_params(t_params, _prefixed(arrays, "transform_"))
        index = _INDEX_KINDS[i_kind]._from_state(i_params, _prefixed(arrays, "index_"))
        if (index.d, index.metric) != (params["d"], params["metric"]):
            raise ValueError(f"the inner index has d={index.d}, metric={index.metric!r}; "
                             f"the file says d={params['d']}, metric={params['metric']!r}")
        restored = cls.__new__(cls)
        restored._attach(transform, index)  # its stored vectors were rotated when added
        return restored


def _prefixed(arrays: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
