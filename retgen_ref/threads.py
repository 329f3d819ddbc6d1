"""One switch for the thread count of every library a search runs on."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import lru_cache

import numba
from threadpoolctl import ThreadpoolController, threadpool_limits

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


@lru_cache(maxsize=1)
def _blas_pools():
    # Numba's np.dot calls SciPy's BLAS: load it first so the controller sees it.
    import scipy.linalg.cython_blas  # noqa: F401

    return ThreadpoolController().select(user_api="blas")


_blas_lock = threading.Lock()


@contextmanager
def single_threaded_blas():
    """Run the enclosed code alone, with every BLAS library on one thread.

    For kernels that call BLAS from inside their own parallel loop (DESIGN.md: parallelise
    across queries), where a multi-threaded BLAS would oversubscribe the cores. BLAS
    thread counts are process-wide state, so callers in several Python threads take turns
    (each still uses every Numba thread); this keeps concurrent searches exact and
    deterministic.
    """
    with _blas_lock, _blas_pools().limit(limits=1):
        yield
