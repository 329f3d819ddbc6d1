"""Random feature maps for kernelised retrieval attention (``retgen.md`` §2.3, Theorem 2.2).

A feature map ``z: R^d -> R^D`` with ``E[z(x)·z(y)] = κ(x, y)`` turns the kernel sum of
retrieval attention into two matrix products, ``O((nq + n) · D · dv)`` instead of
``O(nq · n · d)`` (:func:`kernel_attention`).

Correction to the paper. §2.3 prints ``κ(q, k) ≈ (1/D) Σ_i cos(ω_iᵀq + b_i) cos(ω_iᵀk + b_i)``.
With ``b ~ U[0, 2π]`` the product-to-sum identity gives
``cos(a) cos(c) = ½ cos(ωᵀ(q − k)) + ½ cos(ωᵀ(q + k) + 2b)``; the second term averages to 0
over ``b`` and, by Bochner's theorem, ``E_ω cos(ωᵀΔ) = κ(Δ)``. So each printed term has mean
``κ/2`` and the printed estimator is biased by a factor 2. Corrected statement:
``κ(q, k) ≈ (2/D) Σ_i cos(ω_iᵀq + b_i) cos(ω_iᵀk + b_i) = z(q)·z(k)`` with
``z(x) = sqrt(2/D) cos(Ωx + b)``. :func:`paper_kernel_estimate` evaluates the printed form.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from ._validation import as_array, check_int, check_positive_float

KERNELS = ("gaussian", "laplacian", "exponential")
RFF_KERNELS = KERNELS[:2]
STABILIZERS = (None, "row", "global")


def _check_choice(value, name: str, choices) -> object:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(map(repr, choices))}")
    return value


def kernel_matrix(x, y, kernel: str = "gaussian", bandwidth: float = 1.0) -> np.ndarray:
    """Exact kernel matrix ``K[i, j] = κ(x_i, y_j)``.

    * ``"gaussian"``: ``exp(−‖x − y‖²₂ / (2σ²))``
    * ``"laplacian"``: ``exp(−‖x − y‖₁ / σ)``
    * ``"exponential"``: ``exp(xᵀy / σ²)``, the softmax kernel; ``σ = d^{1/4}`` gives the
      attention weight ``exp(q·k/√d)`` of ``retgen.md`` §2.2.

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d)
    kernel : str
    bandwidth : float
        ``σ > 0``.

    Returns
    -------
    K : ndarray, shape (n, m), float64
    """
    _check_choice(kernel, "kernel", KERNELS)
    sigma = check_positive_float(bandwidth, "bandwidth")
    x = as_array(x, "x", ndim=2, dtype=np.float64)
    y = as_array(y, "y", ndim=2, dtype=np.float64, d=x.shape[1], d_name="d (x's columns)")
    if kernel == "gaussian":
        return np.exp(-cdist(x, y, "sqeuclidean") / (2.0 * sigma**2))
    if kernel == "laplacian":
        return np.exp(-cdist(x, y, "cityblock") / sigma)
    return np.exp(x @ y.T / sigma**2)


class RandomFourierFeatures:
    """Random Fourier features ``z(x)`` with ``E[z(x)·z(y)] = κ(x − y)`` (Rahimi & Recht 2007).

    Bochner: a shift-invariant kernel with ``κ(0) = 1`` is the characteristic function of a
    probability density ``p(ω)``, so ``κ(Δ) = E_ω cos(ωᵀΔ)``.

    * ``"gaussian"`` ``exp(−‖Δ‖²/(2σ²))``: ``ω ~ N(0, σ⁻² I)``.
    * ``"laplacian"`` ``exp(−‖Δ‖₁/σ) = Π_j exp(−|Δ_j|/σ)``: the components of ``ω`` are i.i.d.
      Cauchy with scale ``1/σ`` (the Cauchy(0, γ) characteristic function is ``exp(−γ|t|)``).

    Two maps, both unbiased, ``D = n_features`` outputs each:

    * offset (default): ``z(x) = sqrt(2/D) cos(Ωx + b)``, ``Ω`` (D, d), ``b ~ U[0, 2π]^D``.
      ``2 cos(a) cos(c) = cos(ωᵀΔ) + cos(ωᵀ(x + y) + 2b)`` and the last term has mean 0 and
      mean square ½, hence the factor 2 and
      ``Var[z(x)·z(y)] = (1 + κ(2Δ)/2 − κ(Δ)²) / D``.
    * ``paired=True``: ``z(x) = sqrt(2/D) [cos(Ωx), sin(Ωx)]`` with ``D/2`` frequencies, so
      ``z(x)·z(y) = (2/D) Σ cos(ω_iᵀΔ)`` exactly shift-invariant, and
      ``Var = (1 + κ(2Δ) − 2κ(Δ)²) / D``, smaller by ``(κ(Δ)² − κ(2Δ)/2) / D`` (≥ 0 for both
      kernels here: ``κ(2Δ)`` is ``κ⁴`` resp. ``κ²``); it is exact at ``Δ = 0``.

    Parameters
    ----------
    d : int
        Input dimension.
    n_features : int
        ``D``, the output dimension (even when ``paired``).
    kernel : {"gaussian", "laplacian"}
    bandwidth : float
        ``σ > 0``.
    seed : int
        Seed of ``np.random.default_rng``; the same seed gives the same features.
    paired : bool
        Use the cos/sin map instead of random offsets.

    Attributes
    ----------
    omega_ : ndarray, shape (D, d), or (D/2, d) when ``paired``
        Frequencies ``Ω``.
    offset_ : ndarray, shape (D,), or None when ``paired``
        Phases ``b``.
    """

    def __init__(self, d: int, n_features: int, kernel: str = "gaussian",
                 bandwidth: float = 1.0, seed: int = 0, paired: bool = False):
        self.d = check_int(d, "d")
        self.n_features = check_int(n_features, "n_features")
        self.kernel = _check_choice(kernel, "kernel", RFF_KERNELS)
        self.bandwidth = check_positive_float(bandwidth, "bandwidth")
        self.seed = check_int(seed, "seed", minimum=0)
        self.paired = bool(paired)
        if self.paired and self.n_features % 2:
            raise ValueError(f"n_features must be even when paired=True, got {self.n_features}")
        rng = np.random.default_rng(self.seed)
        m = self.n_features // 2 if self.paired else self.n_features
        if self.kernel == "gaussian":
            self.omega_ = rng.standard_normal((m, self.d)) / self.bandwidth
        else:
            self.omega_ = rng.standard_cauchy((m, self.d)) / self.bandwidth
        self.offset_ = None if self.paired else rng.uniform(0.0, 2.0 * np.pi, self.n_features)

    def transform(self, x) -> np.ndarray:
        """Features ``z(x)``: array_like (n, d) -> ndarray (n, D), float64."""
        x = as_array(x, "x", ndim=2, dtype=np.float64, d=self.d)
        proj = x @ self.omega_.T
        scale = np.sqrt(2.0 / self.n_features)
        if self.paired:
            return scale * np.hstack([np.cos(proj), np.sin(proj)])
        return scale * np.cos(proj + self.offset_)


def paper_kernel_estimate(x, y, rff: RandomFourierFeatures) -> np.ndarray:
    """The estimator exactly as printed in ``retgen.md`` §2.3 (kept to exhibit its bias).

    ``K̂[i, j] = (1/D) Σ_l cos(ω_lᵀx_i + b_l) cos(ω_lᵀy_j + b_l)``, using ``rff.omega_`` and
    ``rff.offset_``. Its expectation is ``κ(x_i, y_j) / 2`` (see the module docstring); the
    unbiased estimate is ``rff.transform(x) @ rff.transform(y).T``, twice this value.

    Parameters
    ----------
    x : array_like, shape (n, d)
    y : array_like, shape (m, d)
    rff : RandomFourierFeatures
        Built with ``paired=False``.

    Returns
    -------
    K_hat : ndarray, shape (n, m), float64
    """
    if not isinstance(rff, RandomFourierFeatures) or rff.paired:
        raise TypeError("rff must be a RandomFourierFeatures built with paired=False")
    x = as_array(x, "x", ndim=2, dtype=np.float64, d=rff.d)
    y = as_array(y, "y", ndim=2, dtype=np.float64, d=rff.d)
    cx = np.cos(x @ rff.omega_.T + rff.offset_)
    cy = np.cos(y @ rff.omega_.T + rff.offset_)
    return cx @ cy.T / rff.n_features


def _orthogonal_gaussian(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n`` rows each marginally ``N(0, I_d)``, exactly orthogonal within blocks of ``d``."""
    blocks = []
    for _ in range(-(-n // d)):
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        q = q * np.sign(np.diag(r))  # sign fix makes q Haar-distributed
        norms = np.sqrt(rng.chisquare(d, size=d))  # chi_d lengths of Gaussian vectors
        blocks.append(q.T * norms[:, None])
    return np.vstack(blocks)[:n]


class PositiveRandomFeatures:
    """Positive random features for the softmax kernel ``exp(qᵀk)`` (Performer, FAVOR+).

    ``φ(x) = exp(Ωx − ‖x‖²/2) / √D`` with rows ``ω_i ~ N(0, I_d)``. Unbiased because the
    Gaussian moment generating function gives ``E[exp(ωᵀu)] = exp(‖u‖²/2)``, so with
    ``u = q + k``: ``E[φ_i(q) φ_i(k)] · D = exp(‖q + k‖²/2 − ‖q‖²/2 − ‖k‖²/2) = exp(qᵀk)``.
    For i.i.d. rows ``Var[φ(q)·φ(k)] = exp(2qᵀk) (exp(‖q + k‖²) − 1) / D``. Every feature is
    positive, so attention denominators never change sign (unlike cosine features).

    ``orthogonal=True`` draws ``Ω`` in blocks of ``d`` orthogonal rows, each rescaled by an
    independent chi_d length: every row is still marginally ``N(0, I)`` (so the estimate stays
    unbiased) while the variance shrinks (Choromanski et al. 2021).

    Softmax attention with scale ``1/√d``: ``exp(q·k/√d) = exp((d^{-1/4} q)·(d^{-1/4} k))``, so
    pass ``Q * d**-0.25`` and ``K * d**-0.25`` to :func:`kernel_attention`.

    Parameters
    ----------
    d : int
    n_features : int
        ``D``.
    seed : int
    orthogonal : bool

    Attributes
    ----------
    omega_ : ndarray, shape (D, d)
    """

    def __init__(self, d: int, n_features: int, seed: int = 0, orthogonal: bool = False):
        self.d = check_int(d, "d")
        self.n_features = check_int(n_features, "n_features")
        self.seed = check_int(seed, "seed", minimum=0)
        self.orthogonal = bool(orthogonal)
        rng = np.random.default_rng(self.seed)
        if self.orthogonal:
            self.omega_ = _orthogonal_gaussian(rng, self.n_features, self.d)
        else:
            self.omega_ = rng.standard_normal((self.n_features, self.d))

    def transform(self, x, stabilizer: str | None = None) -> np.ndarray:
        """Features ``φ(x)``, computed from the log-features ``Ωx − ‖x‖²/2 − ½ log D``.

        Parameters
        ----------
        x : array_like, shape (n, d)
        stabilizer : {None, "row", "global"}
            ``None``: the unbiased ``φ(x)``; underflows to 0 for large ``‖x‖`` and can
            overflow in high dimension (its supremum over ``x`` is ``exp(‖ω‖²/2)/√D``).
            ``"row"``: each row divided by its largest entry (max 1) — for queries, as a
            per-query factor cancels between numerator and denominator of attention.
            ``"global"``: all rows divided by the one largest entry — for keys, as one factor
            shared by all keys cancels too. A per-key factor would *not* cancel.

        Returns
        -------
        phi : ndarray, shape (n, D), float64
        """
        _check_choice(stabilizer, "stabilizer", STABILIZERS)
        x = as_array(x, "x", ndim=2, dtype=np.float64, d=self.d)
        log_phi = x @ self.omega_.T - 0.5 * np.einsum("ij,ij->i", x, x)[:, None]
        if stabilizer == "row":
            log_phi -= log_phi.max(axis=1, keepdims=True)
        elif stabilizer == "global":
            log_phi -= log_phi.max()
        else:
            log_phi -= 0.5 * np.log(self.n_features)
        with np.errstate(over="ignore"):
            phi = np.exp(log_phi)
        if not np.isfinite(phi).all():
            raise ValueError("features overflow float64; scale x down or pass a stabilizer")
        return phi


def kernel_attention(Q, K, V, feature_map) -> np.ndarray:
    """Linear-time kernelised attention (``retgen.md`` §2.3 with the weights of §2.2).

    ``A = φ(Q) (φ(K)ᵀ V) / (φ(Q) (φ(K)ᵀ 1))`` row-wise, i.e. for each query
    ``Σ_j κ(q, k_j) v_j / Σ_j κ(q, k_j)`` with ``κ(q, k) ≈ φ(q)·φ(k)``, in
    ``O((nq + n) · D · dv)``. :class:`PositiveRandomFeatures` are used with the ``"row"``
    stabilizer for ``Q`` and ``"global"`` for ``K``, whose factors cancel in the ratio.
    Cosine features (:class:`RandomFourierFeatures`) can give negative or near-zero
    denominators, so their attention output may be far from the exact one at small ``D``.

    Parameters
    ----------
    Q : array_like, shape (nq, d)
    K : array_like, shape (n, d)
    V : array_like, shape (n, dv)
    feature_map : object
        Has ``transform(x) -> (len(x), D)``, e.g. :class:`RandomFourierFeatures` or
        :class:`PositiveRandomFeatures`.

    Returns
    -------
    A : ndarray, shape (nq, dv), float64
    """
    if not callable(getattr(feature_map, "transform", None)):
        raise TypeError(f"feature_map must have a transform(x) method, got "
                        f"{type(feature_map).__name__}")
    Q = as_array(Q, "Q", ndim=2, dtype=np.float64, d=getattr(feature_map, "d", None))
    K = as_array(K, "K", ndim=2, dtype=np.float64, d=Q.shape[1], d_name="d (Q's columns)")
    V = as_array(V, "V", ndim=2, dtype=np.float64)
    if V.shape[0] != K.shape[0]:
        raise ValueError(f"V has {V.shape[0]} rows but K has {K.shape[0]}; pass one value per key")
    if isinstance(feature_map, PositiveRandomFeatures):
        phi_q = feature_map.transform(Q, stabilizer="row")
        phi_k = feature_map.transform(K, stabilizer="global")
    else:
        phi_q = np.asarray(feature_map.transform(Q), dtype=np.float64)
        phi_k = np.asarray(feature_map.transform(K), dtype=np.float64)
    den = phi_q @ phi_k.sum(axis=0)
    bad = np.flatnonzero(~np.isfinite(den) | (den == 0))
    if bad.size:
        raise ValueError(f"attention denominator is 0 or not finite for query {bad[0]}; "
                         "use positive features or more features")
    return (phi_q @ (phi_k.T @ V)) / den[:, None]
