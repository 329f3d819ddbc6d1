"""Ids for the indexes that store rows by position (Flat, LSH, SQ): FAISS's ``IndexIDMap``.

Until :meth:`add_with_ids` or :meth:`remove_ids` is used, the id of a row is its position
and nothing is stored. The first call turns on an int64 id per row (``8 · ntotal``
bytes); a later :meth:`add` numbers on from the largest id. Removing rebuilds the rows
that stay, in their order: ``O(ntotal · row size)``, as ``IndexIDMap::remove_ids``.
"""

from __future__ import annotations

import numpy as np

from .base import NO_FILTER, IdFilter, rows_with_ids
from .growable import GrowableRows


class PositionalIds:
    """Mixin of an :class:`~.base.Index` whose rows are numbered by position.

    The index implements ``_add_rows(x, *extra)`` (append rows), ``_keep_rows(keep)``
    (keep the rows of a boolean mask, in order) and, if its stored rows are not
    ``_stored_rows()``, ``_rows_at(positions)``; it calls :meth:`_allowed` and
    :meth:`_labels` around its kernels.
    """

    _id_map: GrowableRows | None = None  # None: the ids are the positions

    @property
    def ids(self) -> np.ndarray:
        """The id of each stored row, in storage order (``0 … ntotal − 1`` unless
        :meth:`add_with_ids` or :meth:`remove_ids` was used)."""
        return np.arange(self.ntotal) if self._id_map is None else self._id_map.view()

    def add_with_ids(self, x, ids) -> None:
        """Store the rows of ``x`` under the given int64 ``ids`` (FAISS ``IndexIDMap``;
        keeping them unique is up to you, as there). Ties in a search are broken by
        storage order, which is id order only for the default ids."""
        if not self.is_trained:
            raise ValueError(f"{type(self).__name__} must be trained before add(); call train(x)")
        x = self._prepare(x, "x")
        self._write(self._add, x, self._checked_ids(ids, len(x)))

    def remove_ids(self, ids) -> int:
        """Remove every stored vector whose id is in ``ids``; return how many were removed.
        The rows that stay are copied together (``O(ntotal)``)."""
        return self._write(self._remove, self._ids_to_remove(ids))

    _next_id = 0  # with an id map: one more than the largest id stored

    def _add(self, x: np.ndarray, ids: np.ndarray | None = None, *extra) -> None:
        if ids is not None:
            self._start_id_map()
        if self._id_map is not None:
            if ids is None:
                ids = np.arange(self._next_id, self._next_id + len(x))
            self._id_map.append(ids)
            if len(ids):
                self._next_id = max(self._next_id, int(ids.max()) + 1)
        self._add_rows(x, *extra)

    def _start_id_map(self) -> None:
        """From ids that are positions to an id map holding them."""
        if self._id_map is None:
            self._id_map = GrowableRows(None, np.int64)
            self._id_map.append(np.arange(self.ntotal))
            self._next_id = self.ntotal

    def _remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self.ids, ids)
        removed = int(len(keep) - keep.sum())
        if removed:
            self._start_id_map()
            self._id_map.keep(keep)
            self._next_id = int(self._id_map.view().max(initial=-1)) + 1
            self._keep_rows(keep)
        return removed

    def _clear_ids(self) -> None:
        self._id_map = None

    def _allowed(self, id_filter: IdFilter | None) -> np.ndarray:
        """The kernels' ``allowed`` mask over positions (:data:`~.base.NO_FILTER`: all)."""
        if id_filter is None:
            return NO_FILTER
        return id_filter.allows(self.ntotal if self._id_map is None else self._id_map.view())

    def _labels(self, positions: np.ndarray) -> np.ndarray:
        """Result positions (``-1`` = none) → ids."""
        if self._id_map is None:
            return positions
        return np.where(positions >= 0, self._id_map.view()[np.maximum(positions, 0)], -1)

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        if self._id_map is None:
            missing = (ids < 0) | (ids >= self.ntotal)
            if missing.any():
                raise ValueError(f"id {int(ids[missing][0])} is not in this "
                                 f"{type(self).__name__} (ids 0 … {self.ntotal - 1})")
            return self._rows_at(ids)
        return self._rows_at(rows_with_ids(self._id_map.view(), ids, type(self).__name__))

    def _rows_at(self, positions: np.ndarray) -> np.ndarray:
        return self._stored_rows()[positions].copy()

    def _ids_state(self) -> dict:
        return {} if self._id_map is None else {"ids": self._id_map.view()}

    def _checked_saved_ids(self, arrays: dict, n: int) -> np.ndarray | None:
        """The saved ids (``None`` if the file has none), checked against ``n`` rows."""
        ids = arrays.get("ids")
        if ids is not None and (ids.dtype != np.int64 or ids.shape != (n,)):
            raise ValueError(f"ids have shape {ids.shape} and dtype {ids.dtype}")
        return ids
