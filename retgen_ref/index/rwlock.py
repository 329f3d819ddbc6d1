"""A readers/writer lock: many searches at once, or one change of the index alone.

Searches only read an index, so any number may run together (each kernel call keeps its
own scratch state). ``add``, ``reset``, ``train`` and ``remove_ids`` rewrite arrays a
search is reading (an HNSW node's links, an inverted list's rows, a buffer that grows), so
each waits for the searches under way to finish and holds the others back until it is
done. Writers are preferred: a steady stream of searches cannot starve an ``add``.

The methods are plain calls rather than context managers, and a reader takes the
condition's mutex directly (a C-level ``with``) and notifies only when a writer waits, so
an uncontended search pays two mutex round-trips and nothing else.
"""

from __future__ import annotations

import threading


class ReadWriteLock:
    """``acquire_read``/``release_read`` around a search, ``acquire_write``/``release_write``
    around a change; not reentrant (a thread that writes must not search inside it)."""

    def __init__(self):
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    def acquire_read(self) -> None:
        with self._mutex:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1

    def release_read(self) -> None:
        with self._mutex:
            self._readers -= 1
            if not self._readers and self._writers_waiting:
                self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True

    def release_write(self) -> None:
        with self._cond:
            self._writing = False
            self._cond.notify_all()
