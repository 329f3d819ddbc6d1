"""Optimized product quantization: a learned rotation in front of PQ (FAISS ``OPQMatrix``).

Ge, He, Ke & Sun (2013), "Optimized Product Quantization for Approximate Nearest Neighbor
Search" (CVPR), §3.1, the non-parametric method. :mod:`retgen_ref.pq` quantizes the ``m``
subspaces independently, so its error depends on how the data's variance falls across
them: variance concentrated in a few coordinates, or correlated between coordinates of
different subspaces, is spent on codewords that cannot share it. OPQ learns an orthogonal
``R`` (``d × d``, ``RᵀR = I``) and quantizes ``z = xR`` instead:

    min_{R, C}  Σ_i ‖x_i R − C(x_i R)‖²    s.t.  RᵀR = I,

``C(z) = (C_{1,c_1(z)}, …, C_{m,c_m(z)})`` the PQ reconstruction of ``z``. Because ``R`` is
orthogonal, ``‖xR − ẑ‖ = ‖x − ẑRᵀ‖``: the objective is the error in the original space,
and distances and inner products are unchanged by the rotation (``‖xR − yR‖ = ‖x − y‖``,
``xR·yR = x·y``), so an index may search rotated data for rotated queries.

The objective is minimised by alternation (§3.1), each step lowering it:

1. **codebooks** (``R`` fixed): ``n_pq_iter`` Lloyd iterations per subspace on ``Z = XR``,
   warm-started from the previous codebooks (the first time, a full
   :meth:`ProductQuantizer.fit <retgen_ref.pq.ProductQuantizer.fit>`);
2. **rotation** (codes fixed, ``Y = C(XR)`` the ``(n, d)`` reconstructions): the orthogonal
   Procrustes problem ``min_R ‖XR − Y‖²_F``. Since ``‖XR − Y‖² = ‖X‖² + ‖Y‖² − 2 tr(Rᵀ XᵀY)``,
   with the SVD ``XᵀY = U S Vᵀ`` the maximiser of ``tr(Rᵀ U S Vᵀ)`` over orthogonal
   matrices is

       R = U Vᵀ.

The rotation step does not raise ``‖XR − Y‖²`` for the old codes, re-encoding and each
Lloyd step then cannot raise it either, so :attr:`OPQ.objective_history_` is non-increasing
(up to float32 rounding), a property the tests check.

**Start.** ``R₀`` is a random orthogonal matrix (Haar-distributed, the QR of a Gaussian
matrix with the signs of ``diag(R)`` fixed), as in FAISS. The alternation only finds a
local minimum, and from the identity it starts at PQ's own subspace split: on data whose
variance is sorted along the axes (principal components, say) the identity puts all the
large directions into the first subspaces, and the Procrustes steps, each a small move
from the current codes, undo that only slowly (d=64, m=8, variance ``1/i``: 0.99 after 25
alternations against 0.85 from a random start, ``benchmarks/plot_opq.py``). A random
rotation spreads the variance evenly over the subspaces from the start, which is where
OPQ wants to go. ``init="identity"`` is available for comparisons (its first objective is
then plain PQ's).
"""

from __future__ import annotations

import warnings

import numpy as np

from . import persist
from ._validation import as_array, check_int
from .pq import ProductQuantizer, _SubspaceKMeans

INITS = ("random", "identity")


class _WarmStartKMeans(_SubspaceKMeans):
    """Lloyd iterations from given centres, keeping the last assignment (``labels_``).

    OPQ refines each subspace's codebook after every rotation; starting from the previous
    codebook (rather than a new k-means++ seeding) keeps the objective non-increasing.
    """

    def __init__(self, centres: np.ndarray, n_iter: int, seed: int):
        super().__init__(len(centres), n_iter=n_iter, seed=seed,
                         max_points_per_centroid=2 ** 62)  # the caller has subsampled
        self._start = centres

    def _initial_centres(self, x, rng):
        return self._start.copy()

    def _assign(self, x, centres):
        self.labels_, dist = super()._assign(x, centres)
        return self.labels_, dist


def random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal ``(d, d)`` float64 matrix: QR of a Gaussian matrix, with
    the columns' signs chosen so that ``diag(R) > 0`` (Mezzadri 2007)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``argmin_{RᵀR=I} ‖xR − y‖²_F = U Vᵀ`` with ``xᵀy = U S Vᵀ``: ``(d, d)`` float64."""
    u, _, vt = np.linalg.svd(x.T.astype(np.float64) @ y.astype(np.float64))
    return u @ vt


class OPQ:
    """Learned rotation ``R`` that minimises PQ's reconstruction error (FAISS ``OPQMatrix``).

    Parameters
    ----------
    d : int
        Vector dimension; must be a multiple of ``m``.
    m : int
        Subspaces of the product quantizer the rotation is learned for (use the ``m`` of
        the PQ or IVF-PQ index it will sit in front of).
    nbits : int
        Bits per sub-code of that quantizer, 1..8.
    n_iter : int
        Alternations of (codebooks, rotation). FAISS's default is 50; most of the gain
        comes in the first 10–20.
    n_pq_iter : int
        Warm-started Lloyd iterations of every subspace's codebook per alternation (FAISS
        ``niter_pq = 4``).
    seed : int
        Seed of ``R₀``, of the subsample and of the PQ training.
    init : {"random", "identity"}
        ``R₀``: a random orthogonal matrix (default, as FAISS) or the identity.

    Attributes
    ----------
    rotation_ : ndarray, shape (d, d), float32, read-only
        ``R``: :meth:`transform` is ``x @ rotation_``.
    pq_ : ProductQuantizer
        The product quantizer of the rotated training data, fitted together with ``R``.
    objective_history_ : ndarray, shape (n_iter + 1,)
        Mean ``‖xR − C(xR)‖²`` over the training rows: with ``R₀`` after the first PQ fit,
        then after each alternation. Non-increasing.

    Examples
    --------
    >>> import numpy as np
    >>> from retgen_ref.opq import OPQ
    >>> x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    >>> opq = OPQ(16, 4, nbits=4, n_iter=5).fit(x)
    >>> R = opq.rotation_
    >>> bool(np.allclose(R.T @ R, np.eye(16), atol=1e-5)), opq.transform(x).shape
    (True, (2000, 16))
    """

    kind = "OPQ"

    def __init__(self, d: int, m: int, *, nbits: int = 8, n_iter: int = 25,
                 n_pq_iter: int = 4, seed: int = 0, init: str = "random"):
        checked = ProductQuantizer(d, m, nbits, seed=seed)  # checks d, m, nbits and seed
        self.d, self.m, self.nbits, self.seed = checked.d, checked.m, checked.nbits, checked.seed
        self.n_iter = check_int(n_iter, "n_iter", minimum=0)
        self.n_pq_iter = check_int(n_pq_iter, "n_pq_iter", minimum=0)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; use one of {', '.join(map(repr, INITS))}")
        self.init = init

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return (f"OPQ(d={self.d}, m={self.m}, nbits={self.nbits}, n_iter={self.n_iter}, "
                f"{state})")

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "_rotation")

    @property
    def rotation_(self) -> np.ndarray:
        if not self.is_fitted:  # AttributeError, so hasattr() works as usual
            raise AttributeError("this OPQ is not fitted; call fit(x) first")
        return self._rotation

    def _set_rotation(self, rotation) -> None:
        rotation = as_array(rotation, "rotation", ndim=2, dtype=np.float32, d=self.d).copy()
        if rotation.shape != (self.d, self.d):
            raise ValueError(f"rotation has shape {rotation.shape}; expected {(self.d, self.d)}")
        error = float(np.abs(rotation.T.astype(np.float64) @ rotation - np.eye(self.d)).max())
        if error > 1e-4:
            raise ValueError(f"rotation is not orthogonal (max |RᵀR − I| = {error:.2g})")
        rotation.flags.writeable = False
        self._rotation = rotation

    # -- fitting ------------------------------------------------------------------------
    def fit(self, x) -> "OPQ":
        """Learn ``R`` (and :attr:`pq_`) from ``x`` ``(n, d)``, ``n ≥ 2^nbits``; return self.

        At most ``256 · 2^nbits`` rows are used (as FAISS's ``max_train_points``); a larger
        ``x`` is subsampled once, with a warning.
        """
        x = as_array(x, "x", ndim=2, dtype=np.float32, d=self.d)
        pq = ProductQuantizer(self.d, self.m, self.nbits, seed=self.seed)
        n, limit = len(x), 256 * pq.ksub
        if n < pq.ksub:
            raise ValueError(f"cannot train ksub={pq.ksub} codewords per subspace on {n} "
                             f"vectors; pass at least {pq.ksub} rows or lower nbits")
        rng = np.random.default_rng(self.seed)
        if n > limit:
            warnings.warn(f"OPQ: training on {limit} of {n} vectors (256 × ksub, as FAISS)",
                          stacklevel=2)
            x = x[np.sort(rng.choice(n, size=limit, replace=False))]
        rotation = (random_rotation(self.d, rng) if self.init == "random"
                    else np.eye(self.d)).astype(np.float32)
        z = x @ rotation
        codes = pq.fit(z).encode(z)
        history = [_mean_sq_error(z, pq.decode(codes))]
        for it in range(self.n_iter):
            rotation = procrustes(x, pq.decode(codes)).astype(np.float32)  # step 2
            z = x @ rotation
            codes, error = self._refine_codebooks(pq, z, it)  # step 1
            history.append(error)
        self.pq_ = pq
        self.objective_history_ = np.array(history)
        self._set_rotation(rotation)
        return self

    def _refine_codebooks(self, pq: ProductQuantizer, z: np.ndarray, it: int):
        """``n_pq_iter`` warm-started Lloyd iterations per subspace (``pq`` updated in
        place); return the codes of ``z`` under the new codebooks and their mean error."""
        codebooks = pq.codebooks_.copy()
        codes = np.empty((len(z), self.m), dtype=np.uint8)
        error = 0.0
        for j in range(self.m):
            seed_j = int(np.random.SeedSequence([self.seed, j, it + 1]).generate_state(1)[0])
            km = _WarmStartKMeans(codebooks[j], self.n_pq_iter, seed_j)
            km.fit(z[:, j * pq.dsub:(j + 1) * pq.dsub])
            codebooks[j], codes[:, j] = km.cluster_centers_, km.labels_
            error += km.inertia_
        pq.codebooks_ = codebooks
        return codes, error / len(z)

    # -- using the rotation ----------------------------------------------------------------
    def _checked(self, x, name: str) -> np.ndarray:
        if not self.is_fitted:
            raise ValueError("this OPQ is not fitted; call fit(x) first")
        return as_array(x, name, ndim=2, dtype=np.float32, d=self.d,
                        d_name="d (this rotation's dimension)")

    def transform(self, x) -> np.ndarray:
        """``z = x R``: ``(n, d)`` float32 (FAISS ``apply``)."""
        return self._checked(x, "x") @ self._rotation

    def reverse_transform(self, z) -> np.ndarray:
        """``x = z Rᵀ``, the inverse of :meth:`transform`: ``(n, d)`` float32."""
        return self._checked(z, "z") @ self._rotation.T

    def reconstruction_error(self, x) -> float:
        """Mean ``‖x − C(xR) Rᵀ‖² = ‖xR − C(xR)‖²`` over the rows of ``x`` (float64), with
        :attr:`pq_` (comparable with :meth:`ProductQuantizer.reconstruction_error`)."""
        return self.pq_.reconstruction_error(self.transform(x))

    # -- persistence --------------------------------------------------------------------
    def _params(self) -> dict:
        return {"d": self.d, "m": self.m, "nbits": self.nbits, "n_iter": self.n_iter,
                "n_pq_iter": self.n_pq_iter, "seed": self.seed, "init": self.init,
                "fitted": self.is_fitted}

    def _arrays(self) -> dict:
        if not self.is_fitted:
            return {}
        return {"rotation": self._rotation, "codebooks": self.pq_.codebooks_,
                "objective_history": self.objective_history_}

    @classmethod
    def _from_params(cls, params: dict, arrays: dict) -> "OPQ":
        opq = cls(params["d"], params["m"], nbits=params["nbits"], n_iter=params["n_iter"],
                  n_pq_iter=params["n_pq_iter"], seed=params["seed"], init=params["init"])
        if params["fitted"]:
            opq._set_rotation(arrays["rotation"])
            opq.pq_ = ProductQuantizer(opq.d, opq.m, opq.nbits, seed=opq.seed)
            opq.pq_.codebooks_ = arrays["codebooks"]
            opq.objective_history_ = np.asarray(arrays["objective_history"], np.float64)
        return opq

    def save(self, path) -> None:
        """Write the rotation and its quantizer to ``path`` (checksummed ``.npz``)."""
        if not self.is_fitted:
            raise ValueError("this OPQ is not fitted; call fit(x) first")
        persist.save_state(path, self.kind, self._params(), self._arrays())

    @classmethod
    def load(cls, path) -> "OPQ":
        """Read an OPQ written by :meth:`save`; ``ValueError`` for any other file."""
        kind, params, arrays = persist.load_state(path)
        if kind != cls.kind:
            raise ValueError(f"{path} holds a {kind!r}, not an {cls.kind!r}")
        try:
            return cls._from_params(params, arrays)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} holds an inconsistent {cls.kind}: {exc}") from None


def _mean_sq_error(z: np.ndarray, zhat: np.ndarray) -> float:
    diff = z.astype(np.float64) - zhat
    return float(np.einsum("ij,ij->", diff, diff) / len(z))
