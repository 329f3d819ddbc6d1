"""What every index shares: validation at the boundary, FAISS conventions, persistence.

Subclasses implement ``_add(x)``, ``_search(xq, k, id_filter, **knobs)``, ``_reset()``,
``_state()`` and ``_from_state``; this class checks arguments once (DESIGN.md, conventions
1 and 6) so the subclasses and their kernels never have to. It also bounds what a search may cost and
makes concurrent use defined:

* ``search(xq, k)`` with ``k > ntotal`` searches for ``ntotal`` and pads, so its scratch
  memory is ``O(nq · min(k, ntotal))``; a result that would not fit in memory is refused
  before any work.
* searches from several threads run together; ``add``, ``reset`` (and ``train``,
  ``add_with_ids``, ``remove_ids`` where they exist) wait for the searches under way and
  run alone (:class:`~.rwlock.ReadWriteLock`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from .. import persist
from .._validation import (ALWAYS_FITS, as_array, check_finite, check_fits, check_int,
                           check_metric)
from ..distances import max_row_sq_norm, needs_normalisation, normalise_rows
from .rwlock import ReadWriteLock

#: Largest squared norm a stored or query vector may have: squared distances between
#: such vectors stay finite in float32 (``‖x − y‖² ≤ 4 · MAX_SQ_NORM``).
MAX_SQ_NORM = float(np.finfo(np.float32).max) / 8

#: Neighbours a :meth:`Index.range_search` asks for first (doubled while not enough).
RANGE_FIRST_K = 32

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
        self._lock = ReadWriteLock()

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
        x = self._prepare(x, "x")
        self._write(self._add, x)

    #: Per-call search parameters: name → ``(attribute holding the default, checker)``,
    #: the checker being the one the attribute's setter uses.
    _knobs: dict = {}

    def search(self, xq, k: int, *, ids=None, **params) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(D, I)`` of the ``k`` nearest stored vectors of every row of ``xq``.

        ``D`` is ``(nq, k)`` float32 and ``I`` ``(nq, k)`` int64, best first. When fewer
        than ``k`` results exist the rest of a row is padded with id ``-1`` and distance
        ``+inf`` (l2) or ``-inf`` (ip, cosine). ``k`` may exceed ``ntotal``; a result
        larger than half the available memory is refused (``ValueError``) before any work.

        ``ids`` restricts the results to some ids (:class:`IdFilter`: an array of allowed
        ids, or a boolean mask with ``mask[i]`` for id ``i``); ``params`` are this call's
        values of the index's search knobs (``nprobe=``, ``ef=``, … see ``_knobs``), in
        place of the attributes, which they leave unchanged.
        """
        if k.__class__ is not int or k < 1:  # the common case costs one test
            k = check_int(k, "k")
        knobs = self._checked_knobs(params)
        id_filter = None if ids is None else IdFilter(ids)
        xq = self._prepare(xq, "xq")
        if len(xq) * k * 12 >= ALWAYS_FITS:  # the message is not formatted for every call
            check_fits(len(xq) * k * 12, f"a result of {len(xq):,} × k={k:,}",
                       "ask for fewer neighbours or search the queries in batches")
        self._lock.acquire_read()
        try:
            ntotal = self.ntotal
            if ntotal == 0:
                raise ValueError(f"the {type(self).__name__} is empty; add vectors before "
                                 "searching")
            D, I = self._search(xq, min(k, ntotal), id_filter, **knobs)
        finally:
            self._lock.release_read()
        return (D, I) if k <= ntotal else _padded(D, I, k, self.metric)

    def _checked_knobs(self, params: dict) -> dict:
        """Every knob of ``_knobs``: the value given for this call (checked) or the
        attribute's; an unknown name is a ``TypeError`` listing the known ones."""
        if not params:
            return {name: getattr(self, attr) for name, (attr, _) in self._knobs.items()}
        unknown = sorted(set(params) - set(self._knobs))
        if unknown:
            raise TypeError(f"{type(self).__name__}.search() has no parameter "
                            f"{unknown[0]!r}; its per-call parameters: "
                            f"{', '.join(self._knobs) or 'none'}")
        return {name: getattr(self, attr) if params.get(name) is None
                else check(self, params[name])
                for name, (attr, check) in self._knobs.items()}

    def range_search(self, xq, radius: float, *, ids=None,
                     **params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every result within ``radius`` of each query, FAISS's ``(lims, D, I)``: query
        ``i``'s results are ``D[lims[i]:lims[i+1]]`` and ``I[lims[i]:lims[i+1]]``, best
        first. Within means a squared L2 distance ``< radius``, or an inner product or
        cosine ``> radius`` (FAISS's convention). ``ids`` and ``params`` as for
        :meth:`search`.

        The results are those :meth:`search` finds: ``k`` starts at
        :data:`RANGE_FIRST_K` and doubles for the queries whose ``k``-th result is still
        inside, until one falls outside or the search has no more to give (``ntotal``, or
        every candidate an approximate index examines). Exact for the exact kinds, and for
        IVF with ``nprobe = nlist``.
        """
        radius = float(radius)
        if not np.isfinite(radius):
            raise ValueError(f"radius must be a finite number, got {radius}")
        self._checked_knobs(params)
        id_filter = None if ids is None else IdFilter(ids)
        xq = as_array(xq, "xq", ndim=2, dtype=np.float32, d=self.d,
                      d_name="d (this index's dimension)")
        found: list = [None] * len(xq)
        pending, k = np.arange(len(xq)), min(RANGE_FIRST_K, max(self.ntotal, 1))
        while pending.size:
            D, I = self.search(xq[pending], k, ids=id_filter, **params)
            inside = (D < radius if self.metric == "l2" else D > radius) & (I >= 0)
            done = ~inside[:, -1] | (k >= self.ntotal)
            for row in np.flatnonzero(done):
                found[pending[row]] = (D[row][inside[row]], I[row][inside[row]])
            pending, k = pending[~done], min(2 * k, self.ntotal)
        lims = np.zeros(len(xq) + 1, dtype=np.int64)
        lims[1:] = np.cumsum([len(i) for _, i in found])
        empty = (np.empty(0, np.float32), np.empty(0, np.int64))
        D_all = np.concatenate([d for d, _ in found] or [empty[0]])
        I_all = np.concatenate([i for _, i in found] or [empty[1]])
        return lims, D_all.astype(np.float32), I_all.astype(np.int64)

    @staticmethod
    def _checked_ids(ids, n: int) -> np.ndarray:
        """``ids`` as int64 of shape ``(n,)`` (one per row added), else ``ValueError``."""
        ids = np.asarray(ids)
        if ids.shape != (n,) or (n and ids.dtype.kind not in "iu"):
            raise ValueError(f"ids must be {n} integers (one per row of x), "
                             f"got shape {ids.shape} and dtype {ids.dtype}")
        return ids.astype(np.int64)

    @staticmethod
    def _ids_to_remove(ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.size and ids.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        return ids.astype(np.int64).ravel()

    def reconstruct(self, key: int) -> np.ndarray:
        """The stored vector with id ``key``, ``(d,)`` float32 (FAISS ``reconstruct``): as
        stored, so a unit row for cosine and the decoded code for a quantized index."""
        return self.reconstruct_batch([key])[0]

    def reconstruct_n(self, i0: int, n: int) -> np.ndarray:
        """The stored vectors with ids ``i0 … i0 + n − 1``, ``(n, d)`` (FAISS
        ``reconstruct_n``)."""
        i0, n = check_int(i0, "i0", minimum=0), check_int(n, "n", minimum=0)
        return self.reconstruct_batch(np.arange(i0, i0 + n))

    def reconstruct_batch(self, ids) -> np.ndarray:
        """The stored vectors with the given ids, ``(len(ids), d)`` float32; an id that is
        not stored is a ``ValueError`` naming it."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise ValueError(f"ids must be a 1-d array of integers, got shape {ids.shape} and "
                             f"dtype {ids.dtype}")
        self._lock.acquire_read()
        try:
            return self._reconstruct(ids.astype(np.int64))
        finally:
            self._lock.release_read()

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` of :meth:`_stored_rows` for the kinds whose ids are positions."""
        rows = self._stored_rows()
        missing = (ids < 0) | (ids >= len(rows))
        if missing.any():
            raise ValueError(f"id {int(ids[missing][0])} is not in this {type(self).__name__} "
                             f"(ids 0 … {len(rows) - 1})")
        return rows[ids].copy()

    def _stored_rows(self) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} defines no stored rows")

    def reset(self) -> None:
        """Remove every stored vector (training, if any, is kept)."""
        self._write(self._reset)

    def _write(self, change, *args):
        """Run ``change(*args)`` alone: after the searches under way, before the next ones."""
        self._lock.acquire_write()
        try:
            return change(*args)
        finally:
            self._lock.release_write()

    #: Attributes that belong to one process and are not copied (locks, scratch pools):
    #: name → factory of the fresh one a pickled or deep-copied index gets.
    _transient = {"_lock": ReadWriteLock}

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self._transient}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for name, make in self._transient.items():
            setattr(self, name, make())

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the index needs to answer queries (what ``save`` writes)."""
        return sum(a.nbytes for a in self._state()[1].values())

    def save(self, path) -> None:
        """Write the index to ``path`` (a checksummed ``.npz``); reopen with ``load_index``."""
        params, arrays = self._state()
        persist.save_state(path, self.kind, {"d": self.d, "metric": self.metric, **params},
                           arrays)

    @classmethod
    def load(cls, path) -> "Index":
        """Read an index written by ``save`` (or reopen a :class:`ShardedIndex` directory).

        ``Index.load`` returns whatever kind ``path`` holds, as :func:`load_index` does;
        on a subclass (``FlatIndex.load``, ``HNSWIndex.load``, …) a file holding another
        kind is a ``ValueError`` naming both. Damaged or foreign files: as ``load_index``.
        """
        index = load_index(path)
        if not isinstance(index, cls):
            found = type(index).__name__
            raise ValueError(f"{path} holds a {found}, not a {cls.__name__}; open it with "
                             f"{found}.load(path), or load_index(path) for any kind")
        return index

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, metric={self.metric!r}, ntotal={self.ntotal})"

    # -- for subclasses ---------------------------------------------------------------
    def _prepare(self, x, name: str) -> np.ndarray:
        """Validate ``x`` as ``(n, d)`` finite reals; float32, unit rows for cosine.

        Outside cosine the finite check rides on the norm check: a NaN or infinity makes
        its row's float64 squared norm NaN or infinite (finite float32 values cannot),
        so the pass over ``x`` that bounds the norms also finds them."""
        cosine = needs_normalisation(self.metric)
        source = x
        x = as_array(x, name, ndim=2, dtype=np.float32, d=self.d,
                     d_name="d (this index's dimension)", finite=cosine)
        if cosine:
            return normalise_rows(x)
        if not max_row_sq_norm(x) <= MAX_SQ_NORM:  # also NaN
            check_finite(x, source, name)
            sq_norms = np.einsum("ij,ij->i", x, x, dtype=np.float64)
            row = int(np.argmax(sq_norms))
            raise ValueError(f"{name} row {row} has norm {np.sqrt(sq_norms[row]):.3g}; "
                             f"squared distances would overflow float32 (norms must stay "
                             f"below {np.sqrt(MAX_SQ_NORM):.3g}): scale the data down")
        return x

    @abstractmethod
    def _add(self, x: np.ndarray) -> None: ...

    @abstractmethod
    def _search(self, xq: np.ndarray, k: int, id_filter: "IdFilter | None",
                **knobs) -> tuple[np.ndarray, np.ndarray]:
        """``(D, I)`` of ``k ≤ ntotal`` results, only ids ``id_filter`` allows (None: all),
        with the knobs of ``_knobs`` given by name; padded when fewer are found."""

    @abstractmethod
    def _reset(self) -> None: ...

    @abstractmethod
    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Scalar parameters (JSON-able) and arrays that reconstruct the index."""

    @classmethod
    @abstractmethod
    def _from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> "Index": ...


class IdFilter:
    """The ids a search may return (FAISS ``IDSelectorBatch`` / ``IDSelectorBitmap``,
    hnswlib's ``filter``).

    ``ids`` is an array of allowed ids (integers, any order, repeats allowed) or a boolean
    mask over ids: ``mask[i]`` allows id ``i``, so the mask needs an entry for every stored
    id (a shorter one is an error, not a silent "not allowed"). An ``IdFilter`` may be
    passed again as ``ids``.

    Applying it costs ``O(ntotal)`` per search (each index turns it into a mask over its
    storage); a filter allowing few ids makes the search itself cheaper (exact kinds scan
    only those rows) or, for HNSW, more expensive per result (see ``HNSWIndex``).
    """

    def __init__(self, ids):
        if isinstance(ids, IdFilter):
            self._mask, self._ids = ids._mask, ids._ids
            return
        a = np.asarray(ids)
        if a.ndim != 1:
            raise ValueError(f"ids must be a 1-d array of allowed ids or a boolean mask over "
                             f"ids, got shape {a.shape}")
        if a.dtype == np.bool_:
            self._mask, self._ids = a, None
        elif a.size == 0 or a.dtype.kind in "iu":
            self._mask, self._ids = None, np.unique(a.astype(np.int64))
        else:
            raise TypeError(f"ids must be integers (the allowed ids) or booleans (a mask "
                            f"over ids), got dtype {a.dtype}")

    def allows(self, stored) -> np.ndarray:
        """Boolean array: may the row holding id ``stored[i]`` be returned? An int ``n``
        stands for the ids ``0 … n − 1`` (rows numbered by id)."""
        if isinstance(stored, (int, np.integer)):
            n = int(stored)
            if self._mask is not None:
                self._check_mask_covers(n - 1)
                return self._mask[:n].copy()
            allowed = np.zeros(n, dtype=np.bool_)
            allowed[self._ids[(self._ids >= 0) & (self._ids < n)]] = True
            return allowed
        stored = np.asarray(stored, dtype=np.int64)
        if self._mask is not None:
            if stored.size:
                self._check_mask_covers(int(stored.max()))
            return self._mask[np.maximum(stored, 0)] & (stored >= 0)
        found = np.minimum(np.searchsorted(self._ids, stored), max(len(self._ids) - 1, 0))
        return (self._ids[found] == stored) if len(self._ids) else np.zeros(len(stored), bool)

    def _check_mask_covers(self, largest_id: int) -> None:
        if largest_id >= len(self._mask):
            raise ValueError(f"the boolean mask has {len(self._mask)} entries but the index "
                             f"holds id {largest_id}: a mask needs an entry for every id "
                             f"(length ≥ {largest_id + 1}); or pass the allowed ids instead")


#: The ``allowed`` array of a kernel when no filter applies (kernels test its length).
NO_FILTER = np.empty(0, dtype=np.bool_)


def find_ids(stored: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, found)``: the row of ``stored`` (an id per row) holding each of ``ids``,
    the first of equal ids, and whether it is there at all (``rows`` is meaningless where
    not). Sorts ``stored``: one call for many ids is the efficient use."""
    order = np.argsort(stored, kind="stable")
    found = np.minimum(np.searchsorted(stored[order], ids), max(len(order) - 1, 0))
    if not len(order):
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    return order[found], stored[order[found]] == ids


def rows_with_ids(stored: np.ndarray, ids: np.ndarray, owner: str) -> np.ndarray:
    """:func:`find_ids`' rows; an id not stored is a ``ValueError`` naming it and ``owner``."""
    rows, found = find_ids(stored, ids)
    if not found.all():
        raise ValueError(f"id {int(ids[~found][0])} is not in this {owner}")
    return rows


def _padded(D: np.ndarray, I: np.ndarray, k: int, metric: str):
    """``(D, I)`` widened to ``k`` columns with ``∓inf`` / ``-1`` padding."""
    nq, kept = I.shape
    D_out = np.full((nq, k), np.inf if metric == "l2" else -np.inf, dtype=np.float32)
    I_out = np.full((nq, k), -1, dtype=np.int64)
    D_out[:, :kept], I_out[:, :kept] = D, I
    return D_out, I_out


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
