"""A row buffer that grows geometrically: appending n rows in any batches costs O(n)."""

from __future__ import annotations

import numpy as np


class GrowableRows:
    """Rows of width ``d`` (or scalars when ``d`` is None) in one contiguous array.

    Capacity doubles when full, so the total copying over any sequence of appends is
    at most twice the final size (no quadratic re-copying of ``np.concatenate``).
    """

    def __init__(self, d: int | None, dtype):
        self._shape_tail = () if d is None else (d,)
        self._dtype = np.dtype(dtype)
        self.clear()

    def clear(self) -> None:
        self._data = np.empty((0, *self._shape_tail), dtype=self._dtype)
        self._size = 0
        self._view = None

    def __len__(self) -> int:
        return self._size

    def append(self, rows: np.ndarray) -> None:
        n = len(rows)
        need = self._size + n
        if need > len(self._data):
            capacity = max(need, 2 * len(self._data), 16)
            grown = np.empty((capacity, *self._shape_tail), dtype=self._dtype)
            grown[: self._size] = self._data[: self._size]
            self._data = grown
        self._data[self._size:need] = rows
        self._size = need
        self._view = None

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask`` (``(len,)`` bool) is true, in order, in place."""
        kept = self._data[: self._size][mask]
        self._data[: len(kept)] = kept
        self._size = len(kept)
        self._view = None

    def view(self) -> np.ndarray:
        """The filled rows, read-only, without a copy (made once per change: a search
        asks for it on every call)."""
        if self._view is None:
            self._view = self._data[: self._size]
            self._view.flags.writeable = False
        return self._view
