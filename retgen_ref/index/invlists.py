"""Inverted lists in flat arrays: one pool of rows, each list a contiguous block in it.

An IVF index keeps, for every coarse centroid, the entries (a vector, a PQ code, its id)
of the vectors assigned to it. Kernels want plain arrays, so all lists share one pool:
each field (``"ids"`` and, say, ``"vectors"`` or ``"codes"``) is an array whose rows are
pool positions, and list ``l`` occupies positions ``offsets[l] … offsets[l] + sizes[l] − 1``
inside a block of ``capacities[l]`` rows.

Appending to a full list moves it to the end of the pool with twice the capacity, so a
list that grows to ``s`` entries has been copied at most ``2s`` times in all: adding ``n``
entries in any batches costs ``O(n)`` (no quadratic re-copying). The abandoned blocks are
reclaimed by :meth:`InvertedLists.compact` once they make up more than half the pool.
"""

from __future__ import annotations

import numpy as np

from .base import rows_with_ids

_MIN_CAPACITY = 8


class InvertedLists:
    """``nlist`` lists whose entries have an int64 id and fixed-width rows of each field.

    Parameters
    ----------
    nlist : int
    fields : dict
        ``name -> (width, dtype)``, e.g. ``{"vectors": (d, np.float32)}``; an ``"ids"``
        field (int64) is always added.
    """

    def __init__(self, nlist: int, fields: dict):
        self.nlist = nlist
        self.fields = {"ids": ((), np.dtype(np.int64))}
        self.fields.update({name: ((width,), np.dtype(dtype))
                            for name, (width, dtype) in fields.items()})
        self.clear()

    def clear(self) -> None:
        self.columns = {name: np.empty((0, *tail), dtype=dtype)
                        for name, (tail, dtype) in self.fields.items()}
        self.offsets = np.zeros(self.nlist, dtype=np.int64)
        self.sizes = np.zeros(self.nlist, dtype=np.int64)
        self.capacities = np.zeros(self.nlist, dtype=np.int64)
        self._ntotal = 0  # sizes.sum(), kept by every change of sizes (read per search)
        self._end = 0  # first unused row of the pool
        self.rows_moved = 0  # rows copied by relocation, pool growth and compaction

    @property
    def ntotal(self) -> int:
        return self._ntotal

    @property
    def ids(self) -> np.ndarray:
        return self.columns["ids"]

    def live_positions(self) -> np.ndarray:
        """Pool positions of the live entries, list after list (``(ntotal,)`` int64)."""
        first = np.cumsum(self.sizes) - self.sizes
        return np.repeat(self.offsets - first, self.sizes) + np.arange(self.ntotal)

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pool positions and lists of the entries with ``ids``
        (:func:`~.base.rows_with_ids` over the live entries)."""
        lists = np.repeat(np.arange(self.nlist), self.sizes)
        positions = self.live_positions()
        rows = rows_with_ids(self.ids[positions], ids, "index")
        return positions[rows], lists[rows]

    def _copy_rows(self, dst: int, src: int, count: int) -> None:
        for column in self.columns.values():
            column[dst:dst + count] = column[src:src + count]

    def add(self, list_ids: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        """Append entry ``i`` (``rows[name][i]`` of every field) to list ``list_ids[i]``.

        Entries keep their order of arrival within a list (the search results do not
        depend on it, but the stored layout is then reproducible).
        """
        order = np.argsort(list_ids, kind="stable")
        lists, starts, counts = np.unique(list_ids[order], return_index=True,
                                          return_counts=True)
        self._reserve(lists, self.sizes[lists] + counts)
        for l, s, c in zip(lists.tolist(), starts.tolist(), counts.tolist()):
            at = self.offsets[l] + self.sizes[l]
            chunk = order[s:s + c]
            for name, column in self.columns.items():
                column[at:at + c] = rows[name][chunk]
            self.sizes[l] += c
        self._ntotal += len(list_ids)

    def _reserve(self, lists: np.ndarray, needed: np.ndarray) -> None:
        """Give every list in ``lists`` room for ``needed`` rows, relocating full ones."""
        grow = needed > self.capacities[lists]
        if grow.any() and self._end > 2 * self.ntotal + 64 * self.nlist:
            self.compact()  # abandoned blocks outweigh the live ones: reclaim them first
            grow = needed > self.capacities[lists]
        if not grow.any():
            return
        lists, needed = lists[grow], needed[grow]
        new_caps = np.maximum(np.maximum(needed, 2 * self.capacities[lists]), _MIN_CAPACITY)
        new_end = self._end + int(new_caps.sum())
        if new_end > len(self.ids):
            self._grow_pool(max(new_end, 2 * len(self.ids)))
        for l, cap in zip(lists.tolist(), new_caps.tolist()):
            old, size = self.offsets[l], self.sizes[l]
            if self.capacities[l] and old + self.capacities[l] == self._end:
                self._end = old + cap  # the last block grows in place
            else:
                self._copy_rows(self._end, old, size)
                self.offsets[l] = self._end
                self._end += cap
                self.rows_moved += size
            self.capacities[l] = cap

    def _grow_pool(self, rows: int) -> None:
        for name, (tail, dtype) in self.fields.items():
            grown = np.empty((rows, *tail), dtype=dtype)
            grown[:self._end] = self.columns[name][:self._end]
            self.columns[name] = grown
        self.rows_moved += self._end

    def compact(self) -> None:
        """Rewrite the pool with every list at its own size (plus room to grow by half)."""
        caps = np.maximum(self.sizes + self.sizes // 2, _MIN_CAPACITY)
        offsets = np.concatenate([[0], np.cumsum(caps)[:-1]]).astype(np.int64)
        rows = int(caps.sum())
        for name, (tail, dtype) in self.fields.items():
            old, new = self.columns[name], np.empty((rows, *tail), dtype=dtype)
            for l in range(self.nlist):
                o, n, s = offsets[l], self.sizes[l], self.offsets[l]
                new[o:o + n] = old[s:s + n]
            self.columns[name] = new
        self.offsets, self.capacities, self._end = offsets, caps, rows
        self.rows_moved += self.ntotal

    def remove_ids(self, remove: np.ndarray) -> int:
        """Delete every entry whose id is in ``remove``; return how many were deleted."""
        removed = 0
        for l in np.flatnonzero(self.sizes).tolist():
            o, n = self.offsets[l], self.sizes[l]
            keep = ~np.isin(self.ids[o:o + n], remove)
            kept = int(keep.sum())
            if kept < n:
                for column in self.columns.values():
                    column[o:o + kept] = column[o:o + n][keep]
                self.sizes[l] = kept
                removed += n - kept
        self._ntotal -= removed
        return removed

    def list_entries(self, l: int, field: str) -> tuple[np.ndarray, np.ndarray]:
        """``(rows of field, ids)`` of list ``l`` (views into the pool)."""
        o, n = self.offsets[l], self.sizes[l]
        return self.columns[field][o:o + n], self.ids[o:o + n]

    # -- persistence: every list written contiguously, in list order -------------------
    def state(self, prefix: str) -> dict[str, np.ndarray]:
        """Packed copies (no spare capacity) of every field, with offsets and sizes."""
        rows = np.concatenate([np.arange(o, o + n) for o, n in zip(self.offsets.tolist(),
                                                                   self.sizes.tolist())]
                              + [np.empty(0, dtype=np.int64)])
        offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        return {**{f"{prefix}{name}": column[rows] for name, column in self.columns.items()},
                f"{prefix}offsets": offsets, f"{prefix}sizes": self.sizes.copy(),
                f"{prefix}capacities": self.sizes.copy()}

    @classmethod
    def from_state(cls, nlist: int, fields: dict, arrays: dict, prefix: str):
        lists = cls(nlist, fields)
        offsets, sizes = arrays[f"{prefix}offsets"], arrays[f"{prefix}sizes"]
        caps = arrays[f"{prefix}capacities"]
        rows = len(arrays[f"{prefix}ids"])
        for name, (tail, dtype) in lists.fields.items():
            column = arrays[f"{prefix}{name}"]
            if column.dtype != dtype or column.shape != (rows, *tail):
                raise ValueError(f"inverted-list field {name!r} has shape {column.shape} "
                                 f"and dtype {column.dtype}")
            lists.columns[name] = column.copy()
        if (offsets.shape != (nlist,) or sizes.shape != (nlist,) or caps.shape != (nlist,)
                or (sizes < 0).any() or (sizes > caps).any() or (offsets < 0).any()
                or (offsets + caps > rows).any()):
            raise ValueError("inverted lists have inconsistent offsets or sizes")
        lists.offsets, lists.sizes = offsets.astype(np.int64), sizes.astype(np.int64)
        lists.capacities, lists._end = caps.astype(np.int64), rows
        lists._ntotal = int(lists.sizes.sum())
        return lists
