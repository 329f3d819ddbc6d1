"""One switch for the thread count of every library a search runs on."""

from __future__ import annotations

from contextlib import contextmanager

import numba
from threadpoolctl import threadpool_limits

from ._validation import check_int


@contextmanager
def num_threads(n: int):
    """Run the enclosed code with ``n`` threads: Numba's pool and every BLAS/OpenMP pool.

    Benchmarks use it so that our kernels and the peers (FAISS's OpenMP and BLAS) get the
    same number of threads. ``n`` may not exceed ``numba.config.NUMBA_NUM_THREADS``.

    >>> from retgen_ref import num_threads
    >>> with num_threads(1):
    ...     pass
    """
    n = check_int(n, "n", maximum=numba.config.NUMBA_NUM_THREADS)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(previous)
