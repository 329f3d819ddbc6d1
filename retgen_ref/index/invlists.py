"""Inverted lists in flat arrays: one pool of rows, each list a contiguous block in it.

An IVF index keeps, for every coarse centroid, the entries (a vector or a PQ code, and an
id) of the vectors assigned to it. Kernels want plain arrays, so all lists share one
``pool`` array of rows; list ``l`` occupies ``pool[offsets[l] : offsets[l] + sizes[l]]``
inside a block of ``capacities[l]`` rows.

Appending to a full list moves it to the end of the pool with twice the capacity, so a
list that grows to ``s`` entries has been copied at most ``2s`` times in all: adding ``n``
entries in any batches costs ``O(n)`` (no quadratic re-copying). The abandoned blocks are
reclaimed by :meth:`InvertedLists.compact` once they make up more than half the pool.
"""

from __future__ import annotations

import numpy as np

_MIN_CAPACITY = 8


class InvertedLists:
    """``nlist`` lists of fixed-width rows (``dtype``, ``width`` columns) with int64 ids."""

    def __init__(self, nlist: int, width: int, dtype):
        self.nlist, self.width, self.dtype = nlist, width, np.dtype(dtype)
        self.clear()

    def clear(self) -> None:
        self.pool = np.empty((0, self.width), dtype=self.dtype)
        self.ids = np.empty(0, dtype=np.int64)
        self.offsets = np.zeros(self.nlist, dtype=np.int64)
        self.sizes = np.zeros(self.nlist, dtype=np.int64)
        self.capacities = np.zeros(self.nlist, dtype=np.int64)
        self._end = 0  # first unused row of the pool
        self.rows_moved = 0  # rows copied by relocation, pool growth and compaction

    @property
    def ntotal(self) -> int:
        return int(self.sizes.sum())

    def add(self, list_ids: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> None:
        """Append ``rows[i]`` with id ``ids[i]`` to list ``list_ids[i]``, for every ``i``.

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
            self.pool[at:at + c] = rows[chunk]
            self.ids[at:at + c] = ids[chunk]
            self.sizes[l] += c

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
        if new_end > len(self.pool):
            self._grow_pool(max(new_end, 2 * len(self.pool)))
        for l, cap in zip(lists.tolist(), new_caps.tolist()):
            old, size = self.offsets[l], self.sizes[l]
            if self.capacities[l] and old + self.capacities[l] == self._end:
                self._end = old + cap  # the last block grows in place
            else:
                self.pool[self._end:self._end + size] = self.pool[old:old + size]
                self.ids[self._end:self._end + size] = self.ids[old:old + size]
                self.offsets[l] = self._end
                self._end += cap
                self.rows_moved += size
            self.capacities[l] = cap

    def _grow_pool(self, rows: int) -> None:
        pool = np.empty((rows, self.width), dtype=self.dtype)
        ids = np.empty(rows, dtype=np.int64)
        pool[:self._end] = self.pool[:self._end]
        ids[:self._end] = self.ids[:self._end]
        self.pool, self.ids = pool, ids
        self.rows_moved += self._end

    def compact(self) -> None:
        """Rewrite the pool with every list at its own size (plus room to grow by half)."""
        caps = np.maximum(self.sizes + self.sizes // 2, _MIN_CAPACITY)
        offsets = np.concatenate([[0], np.cumsum(caps)[:-1]]).astype(np.int64)
        pool = np.empty((int(caps.sum()), self.width), dtype=self.dtype)
        ids = np.empty(len(pool), dtype=np.int64)
        for l in range(self.nlist):
            o, n, s = offsets[l], self.sizes[l], self.offsets[l]
            pool[o:o + n] = self.pool[s:s + n]
            ids[o:o + n] = self.ids[s:s + n]
        self.pool, self.ids, self.offsets, self.capacities = pool, ids, offsets, caps
        self._end = len(pool)
        self.rows_moved += self.ntotal

    def remove_ids(self, remove: np.ndarray) -> int:
        """Delete every entry whose id is in ``remove``; return how many were deleted."""
        removed = 0
        for l in np.flatnonzero(self.sizes).tolist():
            o, n = self.offsets[l], self.sizes[l]
            keep = ~np.isin(self.ids[o:o + n], remove)
            kept = int(keep.sum())
            if kept < n:
                self.pool[o:o + kept] = self.pool[o:o + n][keep]
                self.ids[o:o + kept] = self.ids[o:o + n][keep]
                self.sizes[l] = kept
                removed += n - kept
        return removed

    def list_entries(self, l: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, ids)`` of list ``l`` (views into the pool)."""
        o, n = self.offsets[l], self.sizes[l]
        return self.pool[o:o + n], self.ids[o:o + n]

    # -- persistence: every list written contiguously, in list order -------------------
    def state(self, prefix: str) -> dict[str, np.ndarray]:
        self.compact()
        return {f"{prefix}pool": self.pool, f"{prefix}ids": self.ids,
                f"{prefix}offsets": self.offsets, f"{prefix}sizes": self.sizes,
                f"{prefix}capacities": self.capacities}

    @classmethod
    def from_state(cls, nlist: int, width: int, dtype, arrays: dict, prefix: str):
        lists = cls(nlist, width, dtype)
        pool, ids = arrays[f"{prefix}pool"], arrays[f"{prefix}ids"]
        offsets, sizes = arrays[f"{prefix}offsets"], arrays[f"{prefix}sizes"]
        caps = arrays[f"{prefix}capacities"]
        if (pool.dtype != lists.dtype or pool.ndim != 2 or pool.shape[1] != width
                or len(ids) != len(pool) or offsets.shape != (nlist,) or sizes.shape != (nlist,)
                or caps.shape != (nlist,) or (sizes < 0).any() or (sizes > caps).any()
                or (offsets < 0).any() or (offsets + caps > len(pool)).any()):
            raise ValueError("inverted lists have inconsistent shapes or offsets")
        lists.pool, lists.ids = pool.copy(), ids.astype(np.int64)
        lists.offsets, lists.sizes = offsets.astype(np.int64), sizes.astype(np.int64)
        lists.capacities = caps.astype(np.int64)
        lists._end = len(pool)
        return lists
