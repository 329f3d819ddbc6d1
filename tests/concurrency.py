"""Shared check that an index answers searches from several Python threads exactly as it
answers them one after another."""

from __future__ import annotations

import threading

import numpy as np


def run_in_threads(task, n_threads: int, repeats: int = 1) -> list:
    """Call ``task(i)`` in ``n_threads`` threads released together; return the last results."""
    barrier = threading.Barrier(n_threads)
    results = [None] * n_threads

    def run(i):
        barrier.wait()
        for _ in range(repeats):
            results[i] = task(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def assert_concurrent_searches_agree(search, n_threads: int, repeats: int = 1,
                                     expected: list | None = None) -> None:
    """``search(i) -> (D, I)`` run in threads equals ``search(i)`` run sequentially.

    Pass ``expected`` when the first concurrent call must also be the index's first search
    (e.g. to race a lazily built structure).
    """
    if expected is None:
        expected = [search(i) for i in range(n_threads)]
    for (D, I), (De, Ie) in zip(run_in_threads(search, n_threads, repeats), expected):
        assert np.array_equal(I, Ie) and np.array_equal(D, De)
