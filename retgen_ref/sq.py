"""Scalar quantization to 8 bits per dimension (FAISS ``ScalarQuantizer(d, QT_8bit)``).

Each dimension ``t`` gets its own range ``[vmin_t, vmin_t + vdiff_t]``, learned from
training data (``range_stat="minmax"``: the column's minimum and maximum;
``"quantile"``: its ``q`` and ``1 − q`` order statistics, values outside are clipped).
A component is mapped to one of 256 equal bins and stored as a byte:

    t_i  = clip((x_i − vmin_i) / vdiff_i, 0, 1)        (0 when vdiff_i = 0)
    c_i  = min(⌊255 · t_i⌋, 255)                        encode: bin index, 0 … 255
    x̂_i  = vmin_i + (c_i + ½) / 255 · vdiff_i           decode: centre of the bin

so bin ``c`` covers ``t ∈ [c/255, (c+1)/255)`` (the last, ``c = 255``, is the single point
``t = 1``) and is decoded to its centre. For ``x_i`` inside its range the error is at most
half a bin, ``|x_i − x̂_i| ≤ vdiff_i / 510``; a clipped value adds its distance to the
range. A vector shrinks from ``4 d`` to ``d`` bytes (compression ratio 4).

This is FAISS's convention exactly (``Codec8bit`` truncates ``255 · t`` to an integer and
decodes ``(c + 0.5) / 255``): the codes equal FAISS's ``compute_codes`` bit for bit
(float32 arithmetic), and the decoded values its ``decode``, whose float32 rounding is
that of a fused multiply-add ``vmin + t̂ · vdiff`` with ``t̂ = fl((c + 0.5) / 255)``.

The decoded value of every (dimension, code) pair is tabulated once, in
``lut[t, c] = x̂`` ``(d, 256)`` float32; :meth:`ScalarQuantizer.decode` and the search
kernels of :mod:`retgen_ref.index.sq` read the same table, so a distance is computed from
exactly the float32 vector ``decode`` returns.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import persist
from ._validation import as_array, check_int

#: Number of levels of an 8-bit code.
LEVELS = 256
RANGE_STATS = ("minmax", "quantile")
_NOT_FITTED = "this ScalarQuantizer is not fitted; call fit(x) first"


def check_range_stat(range_stat, quantile) -> tuple[str, float]:
    """Validate ``range_stat`` and ``quantile`` (``0 ≤ quantile < 0.5``)."""
    if not isinstance(range_stat, str) or range_stat not in RANGE_STATS:
        raise ValueError(f"unknown range_stat {range_stat!r}; use one of "
                         f"{', '.join(repr(r) for r in RANGE_STATS)}")
    if isinstance(quantile, bool) or not isinstance(quantile, numbers.Real):
        raise TypeError(f"quantile must be a real number, got {type(quantile).__name__} "
                        f"{quantile!r}")
    quantile = float(quantile)
    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"quantile must lie in [0, 0.5), got {quantile}")
    return range_stat, quantile


def decode_table(vmin: np.ndarray, vdiff: np.ndarray) -> np.ndarray:
    """``lut[t, c] = fl32(vmin_t + fl32((c + ½) / 255) · vdiff_t)``, ``(d, 256)`` float32.

    The product and sum are formed in float64 (exact product of two float32 numbers) and
    rounded once to float32, as FAISS's fused multiply-add does.
    """
    centres = (np.arange(LEVELS, dtype=np.float32) + np.float32(0.5)) / np.float32(LEVELS - 1)
    lut = (vmin.astype(np.float64)[:, None]
           + centres.astype(np.float64)[None, :] * vdiff.astype(np.float64)[:, None])
    return np.ascontiguousarray(lut.astype(np.float32))


class ScalarQuantizer:
    """Per-dimension 8-bit scalar quantizer (FAISS ``ScalarQuantizer(d, QT_8bit)``).

    Parameters
    ----------
    d : int
        Vector dimension; a code takes ``d`` bytes.
    range_stat : {"minmax", "quantile"}
        How :meth:`fit` chooses each dimension's range: the column's minimum and maximum
        (FAISS ``RS_minmax``, the default), or its order statistics ``s[o]`` and
        ``s[n − 1 − o]`` of the sorted column with ``o = ⌊quantile · n⌋`` (FAISS
        ``RS_quantiles``), which ignores outliers: values outside are clipped.
    quantile : float
        The fraction ``q`` cut off each end with ``range_stat="quantile"``, ``0 ≤ q < 0.5``.

    Attributes
    ----------
    code_size : int
        Bytes per code, ``d``.
    vmin_, vdiff_ : ndarray, shape (d,), float32, read-only
        Learned ranges ``[vmin_t, vmin_t + vdiff_t]``; set by :meth:`fit` or
        :meth:`set_range` (e.g. to FAISS's trained values).

    Examples
    --------
    >>> import numpy as np
    >>> from retgen_ref.sq import ScalarQuantizer
    >>> x = np.array([[0.0, -1.0], [1.0, 1.0], [0.5, 0.0]], dtype=np.float32)
    >>> sq = ScalarQuantizer(2).fit(x)
    >>> sq.encode(x).tolist()
    [[0, 0], [255, 255], [127, 127]]
    >>> [round(float(v), 4) for v in sq.decode([[0, 255]])[0]]
    [0.002, 1.0039]
    """

    kind = "ScalarQuantizer"

    def __init__(self, d: int, *, range_stat: str = "minmax", quantile: float = 0.001):
        self.d = check_int(d, "d")
        self.range_stat, self.quantile = check_range_stat(range_stat, quantile)
        self.code_size = self.d

    def __repr__(self) -> str:
        state = "fitted" if hasattr(self, "_lut") else "not fitted"
        return (f"ScalarQuantizer(d={self.d}, range_stat={self.range_stat!r}, "
                f"quantile={self.quantile}, {state})")

    # -- ranges -------------------------------------------------------------------------
    @property
    def vmin_(self) -> np.ndarray:
        if not hasattr(self, "_lut"):  # AttributeError, so hasattr() works as usual
            raise AttributeError(_NOT_FITTED)
        return self._vmin

    @property
    def vdiff_(self) -> np.ndarray:
        if not hasattr(self, "_lut"):
            raise AttributeError(_NOT_FITTED)
        return self._vdiff

    @property
    def lut_(self) -> np.ndarray:
        """``(d, 256)`` float32, ``lut_[t, c]`` = decoded value of code ``c`` in dimension
        ``t`` (:func:`decode_table`); read-only."""
        if not hasattr(self, "_lut"):
            raise AttributeError(_NOT_FITTED)
        return self._lut

    def set_range(self, vmin, vdiff) -> "ScalarQuantizer":
        """Use the ranges ``[vmin_t, vmin_t + vdiff_t]`` (each ``(d,)``, ``vdiff ≥ 0``)."""
        vmin = as_array(vmin, "vmin", ndim=1, dtype=np.float32, d=self.d)
        vdiff = as_array(vdiff, "vdiff", ndim=1, dtype=np.float32, d=self.d)
        if (vdiff < 0).any():
            t = int(np.argmax(vdiff < 0))
            raise ValueError(f"vdiff[{t}] = {vdiff[t]} is negative; a range's width is >= 0")
        lut = decode_table(vmin, vdiff)
        if not np.isfinite(lut).all():
            raise ValueError("vmin + vdiff overflows float32; scale the data down")
        for a in (vmin, vdiff, lut):
            a.flags.writeable = False
        self._vmin, self._vdiff, self._lut = vmin, vdiff, lut
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "_lut"):
            raise ValueError(_NOT_FITTED)

    def fit(self, x) -> "ScalarQuantizer":
        """Learn every dimension's range from ``x`` ``(n, d)``; return self.

        ``minmax``: ``vmin_t = min_i x_it``, ``vdiff_t = max_i x_it − vmin_t``.
        ``quantile``: with ``s`` column ``t`` sorted and ``o = ⌊q · n⌋`` (``n // 2`` if
        that passes the middle), ``vmin_t = s[o]``, ``vdiff_t = s[n − 1 − o] − s[o]``.
        The differences are taken in float32, as FAISS does.
        """
        x = self._vectors(x, "x")
        n = x.shape[0]
        if self.range_stat == "minmax":
            lo, hi = x.min(axis=0), x.max(axis=0)
        else:
            o = int(self.quantile * n)
            if o > n - o:
                o = n // 2
            s = np.sort(x, axis=0)
            lo, hi = s[o], s[n - 1 - o]
        with np.errstate(over="ignore"):
            vdiff = hi - lo  # float32, may overflow for data near float32's limits
        if not np.isfinite(vdiff).all():
            raise ValueError("x spans more than float32 can hold in one dimension; "
                             "scale the data down")
        return self.set_range(lo, vdiff)

    # -- codes --------------------------------------------------------------------------
    def _vectors(self, x, name: str) -> np.ndarray:
        return as_array(x, name, ndim=2, dtype=np.float32, d=self.d,
                        d_name="d (this quantizer's dimension)")

    def _codes(self, codes, name: str = "codes") -> np.ndarray:
        """Checked C-contiguous uint8 codes ``(n, d)`` with values in 0 … 255."""
        raw = np.asarray(codes)
        if raw.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array (e.g. the uint8 output of "
                            f"encode); got dtype {raw.dtype}")
        arr = as_array(raw, name, ndim=2, dtype=raw.dtype, d=self.d, d_name="d")
        if raw.dtype != np.uint8:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= LEVELS:
                raise ValueError(f"{name} holds values in [{lo}, {hi}]; each must lie in "
                                 f"[0, {LEVELS})")
        return arr.astype(np.uint8, copy=False)

    def encode_unchecked(self, x: np.ndarray) -> np.ndarray:
        """:meth:`encode` of an already validated float32 ``(n, d)`` array."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            t = np.divide(x - self._vmin, self._vdiff, out=np.zeros_like(x),
                          where=self._vdiff != 0)
        np.clip(t, np.float32(0.0), np.float32(1.0), out=t)
        t *= np.float32(LEVELS - 1)
        return t.astype(np.uint8)  # truncation toward zero: ⌊255 t⌋ for t ≥ 0

    def encode(self, x) -> np.ndarray:
        """Codes ``c = ⌊255 · clip((x − vmin) / vdiff, 0, 1)⌋`` of ``x`` ``(n, d)``:
        ``(n, d)`` uint8 (module docstring)."""
        self._check_fitted()
        return self.encode_unchecked(self._vectors(x, "x"))

    def decode(self, codes) -> np.ndarray:
        """Reconstructions ``x̂ = vmin + (c + ½) / 255 · vdiff`` of codes ``(n, d)``:
        ``(n, d)`` float32."""
        self._check_fitted()
        codes = self._codes(codes)
        return self._lut[np.arange(self.d), codes]

    def reconstruction_error(self, x) -> float:
        """Mean squared reconstruction error ``(1/n) Σ_i ‖x_i − x̂_i‖²`` (float64)."""
        self._check_fitted()
        x = self._vectors(x, "x")
        diff = x.astype(np.float64) - self.decode(self.encode_unchecked(x))
        return float(np.einsum("ij,ij->", diff, diff) / x.shape[0])

    # -- persistence --------------------------------------------------------------------
    def _params(self) -> dict:
        return {"d": self.d, "range_stat": self.range_stat, "quantile": self.quantile}

    def save(self, path) -> None:
        """Write the quantizer to ``path`` (checksummed ``.npz``, :mod:`retgen_ref.persist`)."""
        self._check_fitted()
        persist.save_state(path, self.kind, self._params(),
                           {"vmin": self._vmin, "vdiff": self._vdiff})

    @classmethod
    def load(cls, path) -> "ScalarQuantizer":
        """Read a quantizer written by :meth:`save`; ``ValueError`` for any other file."""
        kind, params, arrays = persist.load_state(path)
        if kind != cls.kind:
            raise ValueError(f"{path} holds a {kind!r}, not a {cls.kind!r}")
        try:
            return cls(params["d"], range_stat=params["range_stat"],
                       quantile=params["quantile"]).set_range(arrays["vmin"], arrays["vdiff"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} holds an inconsistent {cls.kind}: {exc}") from None
