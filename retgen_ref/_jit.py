"""Where the compiled kernels are cached on disk.

Numba's cache (``cache=True``) revalidates a kernel against its own source file only: a
kernel in ``distances.py`` that calls a helper in ``heap.py`` would keep running the old
helper after ``heap.py`` changes. So the package imports its kernel modules inside
:func:`kernel_cache`, which points Numba at a cache directory named after a hash of every
source file of the package: any change to any file starts a fresh cache. Numba's own
setting (``NUMBA_CACHE_DIR``) is restored afterwards and, if set, holds our directory.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path

import numba

PACKAGE = Path(__file__).resolve().parent


def source_fingerprint() -> str:
    """First 16 hex digits of SHA-256 over the package's ``.py`` files (paths and bytes)."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@contextmanager
def kernel_cache():
    """Compile and cache the kernels defined inside this block under a source-keyed path.

    If the directory cannot be written, Numba falls back to its default locations.
    """
    previous = numba.config.CACHE_DIR
    base = Path(previous) if previous else PACKAGE / "__pycache__"
    numba.config.CACHE_DIR = str(base / f"kernels-{source_fingerprint()}")
    try:
        yield
    finally:
        numba.config.CACHE_DIR = previous
