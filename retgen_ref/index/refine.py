"""Exact re-ranking with the float vectors left on disk (``retgen_v2.md`` §8, disk offloading).

A compressed index (IVF-PQ) ranks stored vectors by approximate distances; re-ranking its
best ``R`` candidates by their exact distances recovers most of the recall that
quantization loses (FAISS ``IndexRefineFlat``). The exact distances need the float vectors
of the candidates only, so they can stay in a ``.npy`` file on disk instead of in memory:
:class:`DiskRefine` reads just the candidates' rows, with one ``pread`` per row from a
Numba kernel, into a buffer of at most ``GATHER_BLOCK_BYTES`` per block of queries.

Memory held: the base index only (``nbytes``). Cost per query: the base search with ``R``
results plus ``R`` reads of ``d · 4`` bytes (about half a microsecond each when the file
is in the page cache; a random disk read each when it is not). POSIX only (``pread``).

Why ``pread`` and not a memory map: with the file mapped, every page touched stays in the
process's resident memory until the map is closed, and the kernel maps whole (large)
page-cache folios around a faulting page: reading 1,000 random rows of a 490 MB file
through ``mmap`` made about 450 MB of it resident (Linux 6.18, ext4, with or without
``MADV_RANDOM``). ``pread`` copies the rows and maps nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numba import njit, prange, types

from .._validation import as_array, check_int, check_metric
from ..distances import needs_normalisation, normalise_rows

# libc's pread(fd, buffer, count, offset), called by name (so the kernel can be cached)
_pread = types.ExternalFunction("pread", types.intp(types.int32, types.uintp, types.uintp,
                                                    types.int64))

#: Bytes of candidate vectors gathered at a time (one block of queries).
GATHER_BLOCK_BYTES = 32 * 2 ** 20


class DiskRefine:
    """A base index whose candidates are re-ranked exactly from vectors in a ``.npy`` file.

    Parameters
    ----------
    base : index
        Anything with ``d``, ``ntotal`` and ``search(xq, k) -> (D, I)``, e.g. an
        :class:`~retgen_ref.index.IVFPQIndex`. Its ids must be row numbers of the file
        (as ``add`` numbers them when the rows are added in file order).
    vectors_path : str or path-like
        A ``.npy`` file of shape ``(n, d)``, float32, C order, ``n ≥ base.ntotal``: row
        ``i`` is the vector stored under id ``i``.
    refine_k : int
        Candidates taken from the base and re-ranked, ``R`` (at least ``k`` are taken).
    metric : {"l2", "ip", "cosine"}, optional
        Exact distance of the re-ranking; by default ``base.metric``. For ``cosine`` the
        rows read are normalised, so the file may hold raw vectors.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from retgen_ref import IVFPQIndex
    >>> from retgen_ref.index.refine import DiskRefine
    >>> x = np.random.default_rng(0).standard_normal((3000, 16)).astype(np.float32)
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, x)
    >>> base = IVFPQIndex(16, nlist=16, m=4)
    >>> base.train(x); base.add(x); base.nprobe = 16
    >>> index = DiskRefine(base, path, refine_k=3000)  # every candidate: exact search
    >>> index.search(x[:2], k=1)[1].tolist()
    [[0], [1]]
    """

    def __init__(self, base, vectors_path, refine_k: int = 100, metric: str | None = None):
        self.base = base
        self.d = check_int(base.d, "base.d")
        self.metric = check_metric(metric if metric is not None else base.metric)
        self.refine_k = check_int(refine_k, "refine_k")
        self.vectors_path = Path(vectors_path)
        self.n_rows, self._offset = _npy_layout(self.vectors_path, self.d)
        if self.n_rows < base.ntotal:
            raise ValueError(f"{self.vectors_path} has {self.n_rows} rows but the base index "
                             f"holds {base.ntotal} vectors; row i must be the vector of id i")

    @property
    def ntotal(self) -> int:
        return self.base.ntotal

    @property
    def nbytes(self) -> int:
        """Bytes held in memory: the base index's (the vectors stay on disk)."""
        return self.base.nbytes

    def search(self, xq, k: int, *, ids=None, **params) -> tuple[np.ndarray, np.ndarray]:
        """``(D, I)`` of the ``k`` best of the base's ``max(k, refine_k)`` candidates, by
        exact distance; FAISS conventions (``-1`` / ``±inf`` padding). ``ids`` and
        ``params`` (the base's knobs) are passed to the base's search."""
        k = check_int(k, "k")
        xq = as_array(xq, "xq", ndim=2, dtype=np.float32, d=self.d,
                      d_name="d (this index's dimension)")
        if needs_normalisation(self.metric):
            xq = normalise_rows(xq)
        if self.ntotal == 0:
            raise ValueError("the base index is empty; add vectors before searching")
        n_cand = max(k, min(self.refine_k, self.ntotal))
        candidates = np.ascontiguousarray(self.base.search(xq, n_cand, ids=ids, **params)[1],
                                          dtype=np.int64)
        if candidates.size and candidates.max() >= self.n_rows:
            raise ValueError(f"the base index returned id {candidates.max()} but "
                             f"{self.vectors_path} has {self.n_rows} rows; the base's ids "
                             "must be row numbers of the vectors file")
        block = max(1, GATHER_BLOCK_BYTES // (n_cand * self.d * 4))
        parts = [self._rerank(xq[i:i + block], candidates[i:i + block], k)
                 for i in range(0, len(xq), block)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _rerank(self, xq, candidates, k):
        valid = candidates >= 0
        vectors = self._read_rows(np.where(valid, candidates, 0))  # (nq, R, d)
        if needs_normalisation(self.metric):
            vectors = normalise_rows(vectors.reshape(-1, self.d)).reshape(vectors.shape)
        if self.metric == "l2":  # the same formulas as IVFPQIndex's in-memory re-ranking
            diff = vectors - xq[:, None, :]
            exact = np.einsum("qkd,qkd->qk", diff, diff)
        else:
            exact = -np.einsum("qkd,qd->qk", vectors, xq)
        exact = np.where(valid, exact, np.inf)
        order = np.argsort(exact, axis=1, kind="stable")[:, :k]
        D = np.take_along_axis(exact, order, axis=1).astype(np.float32)
        I = np.take_along_axis(candidates, order, axis=1)
        empty = ~np.isfinite(D)
        I[empty] = -1
        if self.metric != "l2":
            D = -D
        D[empty] = np.inf if self.metric == "l2" else -np.inf
        return D, I

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """``vectors[rows]`` for ``rows`` of any shape, read from the file: ``(*shape, d)``."""
        out = np.empty((rows.size, self.d), dtype=np.float32)
        fd = os.open(self.vectors_path, os.O_RDONLY)
        try:
            if os.fstat(fd).st_size < self._offset + self.n_rows * self.d * 4:
                raise ValueError(f"{self.vectors_path} was truncated after it was opened")
            failed = read_rows(fd, self._offset, self.d * 4, rows.ravel(), out)
        finally:
            os.close(fd)
        if failed:
            raise OSError(f"could not read {failed} rows of {self.vectors_path}")
        return out.reshape(*rows.shape, self.d)


@njit(parallel=True, cache=True)
def read_rows(fd, offset, row_bytes, rows, out):
    """``out[i] = row rows[i]`` of the file ``fd`` (rows of ``row_bytes`` from ``offset``),
    one ``pread`` each, in parallel across rows. Returns how many reads came back short."""
    failed = 0
    for i in prange(rows.shape[0]):
        got = _pread(fd, out[i].ctypes.data, row_bytes, offset + rows[i] * row_bytes)
        if got != row_bytes:
            failed += 1
    return failed


def _npy_layout(path: Path, d: int) -> tuple[int, int]:
    """``(rows, byte offset of the data)`` of a float32 C-order ``(rows, d)`` ``.npy``."""
    if not path.is_file():
        raise FileNotFoundError(f"no vectors file {path}; write the stored vectors with "
                                "np.save(path, x) (float32, one row per id)")
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
        except ValueError as exc:
            raise ValueError(f"{path} is not a .npy file: {exc}") from None
        offset = f.tell()
    if dtype != np.float32 or len(shape) != 2 or fortran:
        raise ValueError(f"{path} holds a {'Fortran-order ' if fortran else ''}{dtype} array "
                         f"of shape {shape}; expected float32 of shape (n, {d}) in C order")
    if shape[1] != d:
        raise ValueError(f"{path} has {shape[1]} columns; the base index has d={d}")
    if os.path.getsize(path) < offset + shape[0] * d * 4:
        raise ValueError(f"{path} is truncated: its header says {shape[0]} rows")
    return int(shape[0]), offset
