"""Product quantization: the compressed pattern store of ``retgen_v2.md`` §4 (and §2, IVF-PQ).

Jégou, Douze & Schmid (2011), "Product Quantization for Nearest Neighbor Search". A vector
``x ∈ ℝ^d`` is cut into ``m`` sub-vectors ``x = (x_1, …, x_m)``, ``x_j ∈ ℝ^{d/m}`` (§4.1),
and each sub-vector is replaced by the index of its nearest codeword in a per-subspace
codebook ``C_j = {C_{j,0}, …, C_{j,k_s−1}}`` learned by k-means, ``k_s = 2^nbits``:

    c_j(x) = argmin_c ‖x_j − C_{j,c}‖²,        x̂ = (C_{1,c_1(x)}, …, C_{m,c_m(x)}).

Because the subspaces are orthogonal, the distortion is the sum of the subspaces':
``‖x − x̂‖² = Σ_j min_c ‖x_j − C_{j,c}‖²``. A code takes ``m · nbits`` bits, so float32
vectors shrink by the ratio of Theorem 4.1, ``ρ = 32 d / (m · nbits)`` (d=384, m=48,
nbits=8: ρ = 32).

Distances to codes without decoding them:

* **ADC** (asymmetric): ``d(q, x̂) = Σ_j ‖q_j − C_{j,c_j(x)}‖²``. One table
  ``T[j, c] = ‖q_j − C_{j,c}‖²`` per query (``m · k_s`` entries) turns a distance into
  ``m`` lookups. With ``T[j, c] = q_j · C_{j,c}`` the same scan gives ``q · x̂``.
* **SDC** (symmetric): ``d(x̂, ŷ) = Σ_j ‖C_{j,c_j(x)} − C_{j,c_j(y)}‖²`` from one table of
  ``m · k_s²`` codeword distances shared by all queries.

The kernels work on each subspace's codebook transposed to ``(dsub, k_s)``, so the loop
over the ``k_s`` codewords is contiguous and vectorises; a distance is accumulated as
``Σ_t (x_t − C_t)²`` (exact zero for a codeword itself, no cancellation, never negative).
"""

from __future__ import annotations

import warnings

import numpy as np
from numba import njit, prange

from . import persist
from ._validation import as_array, check_int
from .kmeans import KMeans


#: Rows per task of :func:`nearest_codewords` (one scratch buffer per task, not per row).
_ROW_BLOCK = 64


@njit(inline="always", cache=True)
def subspace_l2(x, codebook_t, out):
    """``out[c] = Σ_t (x_t − codebook_t[t, c])²``: one sub-vector against one codebook.

    ``x`` ``(dsub,)``, ``codebook_t`` ``(dsub, ksub)``, ``out`` ``(ksub,)``. Four
    dimensions per pass over the codewords (fewer loads and stores of ``out``: 2.3× faster
    at ``dsub=32``, 1.1× at ``dsub=8``); the loop over ``c`` is contiguous and vectorises
    without ``fastmath``. Inlined, so it runs under its caller's ``fastmath`` setting.
    """
    dsub, ksub = codebook_t.shape
    out[:] = 0.0
    t = 0
    while t + 4 <= dsub:
        x0, x1, x2, x3 = x[t], x[t + 1], x[t + 2], x[t + 3]
        r0, r1, r2, r3 = codebook_t[t], codebook_t[t + 1], codebook_t[t + 2], codebook_t[t + 3]
        for c in range(ksub):
            d0, d1, d2, d3 = x0 - r0[c], x1 - r1[c], x2 - r2[c], x3 - r3[c]
            out[c] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
        t += 4
    for u in range(t, dsub):
        xt, row = x[u], codebook_t[u]
        for c in range(ksub):
            diff = xt - row[c]
            out[c] += diff * diff


@njit(parallel=True, fastmath=True, cache=True)
def nearest_codewords(x, codebooks_t, codes, sq_dists):
    """``codes[i, j] = argmin_c ‖x_{i,j} − C_{j,c}‖²`` (ties: smallest ``c``) and its distance.

    ``x`` ``(n, m·dsub)`` float32, ``codebooks_t`` ``(m, dsub, ksub)`` float32 with
    ``ksub ≤ 256``; written: ``codes`` ``(n, m)`` uint8, ``sq_dists`` ``(n, m)`` float32
    (pass a ``(0, m)`` array to skip the distances). Parallel over blocks of rows.

    The argmin is one vectorised integer ``min`` over keys ``bits(dist) · 256 + c``: a
    non-negative float32 orders like its bit pattern, so the smallest key holds the
    smallest distance and, among equal ones, the smallest code. (A float argmin does not
    vectorise: Numba's ``select`` carries no fast-math flags.) ``fastmath`` (FMA,
    reassociation) agrees with the float64 brute force in the tests.
    """
    n = x.shape[0]
    m, dsub, ksub = codebooks_t.shape
    for block in prange((n + _ROW_BLOCK - 1) // _ROW_BLOCK):
        dist = np.empty(ksub, dtype=np.float32)
        bits = dist.view(np.int32)
        for i in range(block * _ROW_BLOCK, min(n, (block + 1) * _ROW_BLOCK)):
            for j in range(m):
                subspace_l2(x[i, j * dsub:(j + 1) * dsub], codebooks_t[j], dist)
                key = np.int64(1) << 62
                for c in range(ksub):  # & 0x7FFFFFFF: a -0.0 would still sort as 0
                    key = min(key, (np.int64(bits[c] & 0x7FFFFFFF) << 8) | c)
                code = key & 255
                codes[i, j] = code
                if sq_dists.shape[0]:
                    sq_dists[i, j] = dist[code]


@njit(parallel=True, cache=True)
def l2_tables(xq, codebooks_t, tables):
    """``tables[q, j, c] = ‖xq_{q,j} − C_{j,c}‖²`` (dtype of ``tables``), parallel over queries."""
    m, dsub = codebooks_t.shape[:2]
    for q in prange(xq.shape[0]):
        for j in range(m):
            subspace_l2(xq[q, j * dsub:(j + 1) * dsub], codebooks_t[j], tables[q, j])


@njit(parallel=True, cache=True)
def ip_tables(xq, codebooks_t, tables):
    """``tables[q, j, c] = xq_{q,j} · C_{j,c}`` (dtype of ``tables``), parallel over queries."""
    m, dsub, ksub = codebooks_t.shape
    for q in prange(xq.shape[0]):
        for j in range(m):
            out = tables[q, j]
            out[:] = 0.0
            for t in range(dsub):
                xt = xq[q, j * dsub + t]
                row = codebooks_t[j, t]
                for c in range(ksub):
                    out[c] += xt * row[c]


@njit(cache=True)
def adc_scan(table, codes, out):
    """ADC scan of one query: ``out[i] = Σ_j table[j, codes[i, j]]``.

    ``table`` ``(m, ksub)`` (one query's slice of :meth:`ProductQuantizer.compute_distance_tables`),
    ``codes`` ``(n, m)`` uint8, ``out`` ``(n,)`` (written). The sum runs over ``j`` in order,
    in float64. Serial: callers (ADC over many queries, IVF-PQ lists) parallelise outside.
    """
    n, m = codes.shape
    for i in range(n):
        s = 0.0
        for j in range(m):
            s += table[j, codes[i, j]]
        out[i] = s


@njit(parallel=True, cache=True)
def adc_scan_batch(tables, codes, out):
    """:func:`adc_scan` of every query, ``out[q] = scan(tables[q], codes)``, in parallel."""
    for q in prange(tables.shape[0]):
        adc_scan(tables[q], codes, out[q])


_TABLE_KERNELS = {"l2": l2_tables, "ip": ip_tables}
_NOT_FITTED = "this ProductQuantizer is not fitted; call fit(x) first"


class _SubspaceKMeans(KMeans):
    """:class:`KMeans` whose assignment step runs :func:`nearest_codewords` (``k ≤ 256``).

    Fitting is dominated by assignment, and for the small dimensions of PQ subspaces this
    kernel is about 3× faster than the general BLAS-tiles-plus-heaps path (65,536 points,
    d=8, k=256: 4.5 ms against 13 ms on one thread).
    """

    def _assign(self, x, centres):
        codes = np.empty((x.shape[0], 1), dtype=np.uint8)
        dist = np.empty((x.shape[0], 1), dtype=np.float32)
        nearest_codewords(x, np.ascontiguousarray(centres.T[None]), codes, dist)
        return codes[:, 0].astype(np.int64), dist[:, 0]


class ProductQuantizer:
    """Product quantizer with ``m`` subspaces of ``2^nbits`` codewords (FAISS ``ProductQuantizer``).

    Parameters
    ----------
    d : int
        Vector dimension; must be a multiple of ``m``.
    m : int
        Number of subspaces, each of dimension ``dsub = d / m``.
    nbits : int
        Bits per sub-code, 1..8: ``ksub = 2^nbits`` codewords per subspace.
    seed : int
        Seed of training: the subsample, and subspace ``j``'s k-means seed, drawn from
        ``SeedSequence([seed, j])``.

    Attributes
    ----------
    dsub, ksub : int
    code_size : int
        Bytes per packed code, ``ceil(m · nbits / 8)`` (:meth:`pack_codes`); the
        compression ratio for float32 input is ``4 d / code_size`` (``32 d / (m · nbits)``
        when ``m · nbits`` is a multiple of 8, Theorem 4.1 of ``retgen_v2.md`` §4.2).
    codebooks_ : ndarray, shape (m, ksub, dsub), float32, read-only
        ``codebooks_[j, c] = C_{j,c}``. Set by :meth:`fit`; may also be assigned (checked),
        e.g. with codebooks trained by FAISS.

    Examples
    --------
    >>> import numpy as np
    >>> from retgen_ref.pq import ProductQuantizer
    >>> x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    >>> pq = ProductQuantizer(16, m=4, nbits=4).fit(x)
    >>> codes = pq.encode(x)
    >>> codes.shape, codes.dtype.name, pq.pack_codes(codes).shape
    ((2000, 4), 'uint8', (2000, 2))
    """

    kind = "ProductQuantizer"

    def __init__(self, d: int, m: int, nbits: int = 8, *, seed: int = 0):
        self.d = check_int(d, "d")
        self.m = check_int(m, "m")
        self.nbits = check_int(nbits, "nbits", maximum=8)
        self.seed = check_int(seed, "seed", minimum=0)
        if self.d % self.m:
            divisors = [k for k in range(1, self.d + 1) if self.d % k == 0]
            raise ValueError(f"m={self.m} does not divide d={self.d}; use one of {divisors}")
        self.dsub = self.d // self.m
        self.ksub = 2 ** self.nbits
        self.code_size = -(-self.m * self.nbits // 8)

    def __repr__(self) -> str:
        state = "fitted" if hasattr(self, "_codebooks") else "not fitted"
        return f"ProductQuantizer(d={self.d}, m={self.m}, nbits={self.nbits}, {state})"

    # -- codebooks ----------------------------------------------------------------------
    @property
    def codebooks_(self) -> np.ndarray:
        if not hasattr(self, "_codebooks"):  # AttributeError, so hasattr() works as usual
            raise AttributeError(_NOT_FITTED)
        return self._codebooks

    @codebooks_.setter
    def codebooks_(self, codebooks) -> None:
        cb = as_array(codebooks, "codebooks_", ndim=3, dtype=np.float32, d=self.dsub,
                      d_name="dsub").copy()
        if cb.shape[:2] != (self.m, self.ksub):
            raise ValueError(f"codebooks_ has shape {cb.shape}; expected "
                             f"(m, ksub, dsub) = {(self.m, self.ksub, self.dsub)}")
        cb.flags.writeable = False
        self._codebooks = cb
        self._codebooks_t = np.array(cb.transpose(0, 2, 1), order="C")  # (m, dsub, ksub)

    def _check_fitted(self) -> None:
        if not hasattr(self, "_codebooks"):
            raise ValueError(_NOT_FITTED)

    def fit(self, x) -> "ProductQuantizer":
        """Learn one codebook per subspace by k-means on ``x[:, j·dsub:(j+1)·dsub]``; return self.

        ``x`` is ``(n, d)`` with ``n ≥ ksub``. Each subspace runs :class:`KMeans` (k-means++,
        25 Lloyd iterations). Like FAISS, at most ``256 · ksub`` rows train each subspace:
        larger sets are subsampled once (the same rows for every subspace), with one warning.
        """
        x = as_array(x, "x", ndim=2, dtype=np.float32, d=self.d)
        n, limit = x.shape[0], 256 * self.ksub
        if n < self.ksub:
            raise ValueError(f"cannot train ksub={self.ksub} codewords per subspace on "
                             f"{n} vectors; pass at least {self.ksub} rows or lower nbits")
        if n > limit:
            warnings.warn(f"ProductQuantizer: training each subspace on {limit} of {n} "
                          f"vectors (256 × ksub, as FAISS)", stacklevel=2)
            rng = np.random.default_rng(self.seed)
            x = x[np.sort(rng.choice(n, size=limit, replace=False))]
        codebooks = np.empty((self.m, self.ksub, self.dsub), dtype=np.float32)
        for j in range(self.m):
            seed_j = int(np.random.SeedSequence([self.seed, j]).generate_state(1)[0])
            km = _SubspaceKMeans(self.ksub, n_iter=25, seed=seed_j, init="k-means++",
                                 max_points_per_centroid=256)
            codebooks[j] = km.fit(x[:, j * self.dsub:(j + 1) * self.dsub]).cluster_centers_
        self.codebooks_ = codebooks
        return self

    # -- codes ----------------------------------------------------------------------------
    def _vectors(self, x, name: str, dtype=np.float32) -> np.ndarray:
        return as_array(x, name, ndim=2, dtype=dtype, d=self.d,
                        d_name="d (this quantizer's dimension)")

    def _codes(self, codes, name: str, packed: bool = False) -> np.ndarray:
        """Checked C-contiguous uint8: codes ``(n, m)`` < ksub, or packed ``(n, code_size)``."""
        width, bound, d_name = ((self.code_size, 256, "code_size") if packed
                                else (self.m, self.ksub, "m"))
        raw = np.asarray(codes)
        if raw.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array (e.g. the uint8 output of "
                            f"encode); got dtype {raw.dtype}")
        arr = as_array(raw, name, ndim=2, dtype=raw.dtype, d=width, d_name=d_name)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= bound:
            raise ValueError(f"{name} holds values in [{lo}, {hi}]; each must lie in "
                             f"[0, {bound}) for nbits={self.nbits}")
        return arr.astype(np.uint8, copy=False)

    def encode(self, x) -> np.ndarray:
        """Codes ``c_j(x) = argmin_c ‖x_j − C_{j,c}‖²`` of ``x`` ``(n, d)``: ``(n, m)`` uint8.

        One code per byte whatever ``nbits`` (see :meth:`pack_codes`). Ties go to the
        smallest code.
        """
        self._check_fitted()
        x = self._vectors(x, "x")
        codes = np.empty((x.shape[0], self.m), dtype=np.uint8)
        nearest_codewords(x, self._codebooks_t, codes, np.empty((0, self.m), np.float32))
        return codes

    def decode(self, codes) -> np.ndarray:
        """Reconstructions ``x̂ = (C_{1,c_1}, …, C_{m,c_m})`` of codes ``(n, m)``: ``(n, d)``."""
        self._check_fitted()
        codes = self._codes(codes, "codes")
        return self._codebooks[np.arange(self.m), codes].reshape(codes.shape[0], self.d)

    def pack_codes(self, codes) -> np.ndarray:
        """Bit-pack ``codes`` ``(n, m)`` into ``(n, code_size)`` uint8, FAISS's layout.

        Sub-code ``j`` occupies bits ``j·nbits … (j+1)·nbits − 1`` of the row's bit stream,
        least significant bit first, bit ``b`` of the stream being bit ``b mod 8`` of byte
        ``⌊b / 8⌋``; unused high bits of the last byte are zero. For ``nbits = 8`` this is
        the codes themselves.
        """
        codes = self._codes(codes, "codes")
        if self.nbits == 8:
            return codes.copy()
        bits = (codes[:, :, None] >> np.arange(self.nbits, dtype=np.uint8)) & 1
        return np.packbits(bits.reshape(len(codes), -1), axis=1, bitorder="little")

    def unpack_codes(self, packed) -> np.ndarray:
        """Inverse of :meth:`pack_codes`: ``(n, code_size)`` uint8 → ``(n, m)`` uint8."""
        packed = self._codes(packed, "packed", packed=True)
        if self.nbits == 8:
            return packed.copy()
        bits = np.unpackbits(packed, axis=1, count=self.m * self.nbits, bitorder="little")
        bits = bits.reshape(len(packed), self.m, self.nbits)
        return (bits << np.arange(self.nbits, dtype=np.uint8)).sum(axis=2, dtype=np.uint8)

    def reconstruction_error(self, x) -> float:
        """Mean squared reconstruction error ``(1/n) Σ_i ‖x_i − x̂_i‖²`` (float64).

        The mean over rows of the squared L2 error, not divided by ``d`` (FAISS users'
        ``((x - pq.decode(pq.compute_codes(x)))**2).sum(1).mean()``). Equal to the sum
        over subspaces of the mean subspace distortions ``min_c ‖x_j − C_{j,c}‖²``.
        """
        self._check_fitted()
        x = self._vectors(x, "x")
        diff = x.astype(np.float64) - self.decode(self.encode(x))
        return float(np.einsum("ij,ij->", diff, diff) / x.shape[0])

    # -- distances ----------------------------------------------------------------------
    def compute_distance_tables(self, xq, metric: str = "l2", dtype=np.float32) -> np.ndarray:
        """ADC lookup tables of the queries ``xq`` ``(nq, d)``: ``(nq, m, ksub)``.

        ``metric="l2"``: ``T[q, j, c] = ‖q_j − C_{j,c}‖²``; ``metric="ip"``:
        ``T[q, j, c] = q_j · C_{j,c}``. ``dtype`` (float32 or float64) is the precision of
        the whole computation; float64 gives reference-grade tables.
        """
        if metric not in _TABLE_KERNELS:
            raise ValueError(f"unknown metric {metric!r} for PQ tables; use 'l2' or 'ip'")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        self._check_fitted()
        xq = self._vectors(xq, "xq", dtype)
        tables = np.empty((xq.shape[0], self.m, self.ksub), dtype=dtype)
        _TABLE_KERNELS[metric](xq, self._codebooks_t.astype(dtype, copy=False), tables)
        return tables

    def adc_distances(self, tables, codes) -> np.ndarray:
        """ADC: ``D[q, i] = Σ_j tables[q, j, codes[i, j]]``, shape ``(nq, n)``.

        With l2 tables, ``D[q, i] = d(q, x̂_i) = Σ_j ‖q_j − C_{j,c_j(x_i)}‖² = ‖q − x̂_i‖²``;
        with ip tables, ``q · x̂_i``. The sums run in float64; ``D`` has the tables' dtype.
        """
        tables = np.asarray(tables)
        if tables.ndim != 3 or tables.shape[1:] != (self.m, self.ksub):
            raise ValueError(f"tables must have shape (nq, m, ksub) = (nq, {self.m}, "
                             f"{self.ksub}) from compute_distance_tables; got {tables.shape}")
        dtype = np.float64 if tables.dtype == np.float64 else np.float32
        tables = as_array(tables, "tables", ndim=3, dtype=dtype)
        codes = self._codes(codes, "codes")
        out = np.empty((tables.shape[0], codes.shape[0]), dtype=dtype)
        adc_scan_batch(tables, codes, out)
        return out

    def sdc_table(self) -> np.ndarray:
        """``S[j, a, b] = ‖C_{j,a} − C_{j,b}‖²``, ``(m, ksub, ksub)`` float32.

        Computed in float64 by differences, so exactly symmetric with a zero diagonal.
        """
        self._check_fitted()
        tables = np.empty((self.ksub, self.m, self.ksub), dtype=np.float64)
        codewords = np.ascontiguousarray(  # row a: codeword a of every subspace
            self._codebooks.transpose(1, 0, 2).reshape(self.ksub, self.d), dtype=np.float64)
        l2_tables(codewords, self._codebooks_t.astype(np.float64), tables)
        return tables.transpose(1, 0, 2).astype(np.float32)

    def sdc_distances(self, codes_a, codes_b) -> np.ndarray:
        """SDC distances ``(na, nb)`` float32 between two sets of codes.

        ``D[a, b] = Σ_j S[j, codes_a[a, j], codes_b[b, j]] = ‖x̂_a − x̂_b‖²`` with ``S`` the
        :meth:`sdc_table`.
        """
        codes_a = self._codes(codes_a, "codes_a")
        codes_b = self._codes(codes_b, "codes_b")
        tables = np.ascontiguousarray(self.sdc_table()[np.arange(self.m), codes_a])
        out = np.empty((codes_a.shape[0], codes_b.shape[0]), dtype=np.float32)
        adc_scan_batch(tables, codes_b, out)
        return out

    # -- persistence --------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the quantizer to ``path`` (checksummed ``.npz``, :mod:`retgen_ref.persist`)."""
        self._check_fitted()
        params = {"d": self.d, "m": self.m, "nbits": self.nbits, "seed": self.seed}
        persist.save_state(path, self.kind, params, {"codebooks": self._codebooks})

    @classmethod
    def load(cls, path) -> "ProductQuantizer":
        """Read a quantizer written by :meth:`save`; ``ValueError`` for any other file."""
        kind, params, arrays = persist.load_state(path)
        if kind != cls.kind:
            raise ValueError(f"{path} holds a {kind!r}, not a {cls.kind!r}")
        try:
            pq = cls(params["d"], params["m"], params["nbits"], seed=params["seed"])
            pq.codebooks_ = arrays["codebooks"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} holds an inconsistent {cls.kind}: {exc}") from None
        return pq
