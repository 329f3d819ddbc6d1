"""Mixing the resolutions: the weights ``λ_r`` of ``retgen.md`` §4.3.

The model's distribution is a mixture of the floor ``P_0`` (the add-one unigram, never
zero) and the retrieval distributions ``P_r`` of each resolution ``r``:

    P(y | x) = Σ_r w_r(x) P_r(y | x),      Σ_r w_r(x) = 1,  w_0(x) > 0.

Component arrays below are ``(R + 1, n)``: row 0 is the floor, then the resolutions in
increasing order; ``P[r, t]`` is component ``r``'s probability of the target at position
``t`` and ``M[r, t]`` its retrieval mass (the soft count of :mod:`retgen_ref.lm.kernels`).

Three ways to choose the weights, all fitted on the valid split only:

:class:`ConstantMixture` with ``method="em"``
    constant ``λ_r`` that minimise the paper's own objective
    ``L(λ) = E_x KL(P(·|x) ‖ Σ_r λ_r P_r(·|x))``. On held-out tokens this is, up to a
    constant, the negative log-likelihood ``−E log Σ_r λ_r P_r(y|x)``, which is convex in
    λ; EM (``λ_r ← E[λ_r P_r / Σ_s λ_s P_s]``) converges to its global minimum.
:class:`ConstantMixture` with ``method="paper"``
    Theorem 4.3's closed form ``λ_r ∝ π_r exp(−H_r / β)``, with ``π`` uniform, ``H_r`` the
    mean entropy of ``P_r(·|x)`` over valid contexts and ``β`` the best on valid.
:class:`ConfidenceMixture` (the default)
    interpolation from the longest resolution down, ``P^(r) = λ_r(b) P_r + (1 − λ_r(b))
    P^(r−1)``, where ``λ_r`` depends on the bucket ``b = round(log2(1 + M_r))`` of the
    retrieval mass: trust a resolution more when it retrieved more evidence (the
    "retrieval confidence" of §11.2). Fitted by EM on the same objective.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

_EM_MAX_ITERATIONS = 5000
EM_TOLERANCE = 1e-10  # stop when an iteration lowers the mean NLL by less than this


def mean_nll(P: np.ndarray, weights: np.ndarray) -> float:
    """``−mean_t log Σ_r w_r(t) P[r, t]``; ``weights`` is ``(R+1,)`` or ``(R+1, n)``."""
    w = weights if weights.ndim == 2 else weights[:, None]
    return float(-np.log((w * P).sum(axis=0)).mean())


class ConstantMixture:
    """Constant weights ``λ_r``, by EM (the true optimum) or the paper's formula (§4.3)."""

    def __init__(self, method: str = "em"):
        if method not in ("em", "paper"):
            raise ValueError(f"method={method!r}; choose 'em' or 'paper'")
        self.method = method

    def fit(self, P: np.ndarray, M: np.ndarray, entropies: np.ndarray | None = None,
            tolerance: float = EM_TOLERANCE):
        """Fit on valid components ``P`` (``entropies`` ``(R+1,)`` needed for "paper").

        EM stops when an iteration lowers the mean NLL by less than ``tolerance`` nats.
        """
        if self.method == "em":
            lam = np.full(len(P), 1.0 / len(P))
            previous = np.inf
            for _ in range(_EM_MAX_ITERATIONS):
                mix = lam @ P
                loss = -np.log(mix).mean()
                if previous - loss < tolerance:
                    break
                previous = loss
                lam = (lam[:, None] * P / mix).mean(axis=1)
            self.lambdas_ = lam
        else:
            if entropies is None:
                raise ValueError("the paper's formula needs the entropies H_r")
            self.entropies_ = np.asarray(entropies, float)
            found = minimize_scalar(lambda log_beta: mean_nll(P, self._paper(np.exp(log_beta))),
                                    bounds=(-5.0, 5.0), method="bounded")
            self.beta_ = float(np.exp(found.x))
            self.lambdas_ = self._paper(self.beta_)
        return self

    def _paper(self, beta: float) -> np.ndarray:
        """``λ_r = exp(−H_r/β) / Σ_s exp(−H_s/β)`` (uniform prior ``π``)."""
        logits = -self.entropies_ / beta
        w = np.exp(logits - logits.max())
        return w / w.sum()

    def weights(self, M: np.ndarray) -> np.ndarray:
        return np.repeat(self.lambdas_[:, None], M.shape[1], axis=1)

    def params(self) -> dict:
        out = {"method": self.method, "lambdas": self.lambdas_.tolist()}
        if self.method == "paper":
            out.update(beta=self.beta_, entropies=self.entropies_.tolist())
        return out


class ConfidenceMixture:
    """Recursive interpolation with ``λ_r`` bucketed by retrieval mass (module docstring)."""

    method = "confidence"

    def __init__(self, n_buckets: int = 16):
        self.n_buckets = n_buckets

    def _buckets(self, M: np.ndarray) -> np.ndarray:
        """``b = round(log2(1 + M))``: the edges ``M = 2^{j-1/2} − 1`` lie between integers,
        so an exact match (``M`` an integer count, up to float32 rounding of ``s ≈ 1``)
        never sits on an edge and both search paths give the same bucket."""
        return np.clip(np.rint(np.log2(1.0 + M)), 0, self.n_buckets - 1).astype(np.int64)

    def _weights(self, lam: np.ndarray, B: np.ndarray) -> np.ndarray:
        """``w_r = λ_r(b_r) Π_{s>r} (1 − λ_s(b_s))``, with ``λ_0 = 1`` (the floor)."""
        w = np.empty(B.shape)
        rest = np.ones(B.shape[1])
        for r in range(len(B) - 1, -1, -1):
            chosen = lam[r, B[r]]
            w[r] = rest * chosen
            rest = rest * (1.0 - chosen)
        return w

    def fit(self, P: np.ndarray, M: np.ndarray, entropies=None,
            tolerance: float = EM_TOLERANCE, prior=None, groups=None):
        """EM on valid: ``λ_r(b) ← Σ_{t∈b} ρ_r(t) / Σ_{t∈b} Σ_{s≤r} ρ_s(t)``.

        ``ρ_r(t)`` is the posterior that component ``r`` produced token ``t``; the
        denominator is the expected number of tokens that reached level ``r`` of the
        recursion. Buckets no valid token fell in keep λ = 1/2.

        With ``prior`` and ``groups`` (both ``(n,)``) a column ``j`` of ``P`` is one of
        several latent choices for token ``groups[j]``, chosen with probability
        ``prior[j]``, and EM maximises ``Σ_t log Σ_{j: groups[j]=t} prior[j] Σ_r w_r(j)
        P[r, j]``: the RAG-Token likelihood with the passage as the latent choice
        (:mod:`retgen_ref.rag.retgen_rag`); ``ρ`` then also carries the passage posterior.
        ``groups`` must name every token ``0 … T−1``, and each token's priors sum to 1.
        """
        B = self._buckets(M)
        prior, groups, n_tokens = _latent_choices(P.shape[1], prior, groups)
        lam = np.full((len(P), self.n_buckets), 0.5)
        lam[0] = 1.0
        previous = np.inf
        for _ in range(_EM_MAX_ITERATIONS):
            joint = prior * self._weights(lam, B) * P
            mix = np.bincount(groups, joint.sum(axis=0), n_tokens)
            loss = -np.log(mix).mean()
            if previous - loss < tolerance:
                break
            previous = loss
            resp = joint / mix[groups]
            reached = np.cumsum(resp, axis=0)
            for r in range(1, len(P)):
                chose = np.bincount(B[r], resp[r], self.n_buckets)
                total = np.bincount(B[r], reached[r], self.n_buckets)
                lam[r] = np.where(total > 0, chose / np.where(total > 0, total, 1), 0.5)
        # Keep every level able to pass mass down, so the floor is never switched off.
        self.lambdas_ = np.minimum(lam, 1.0 - 1e-6)
        self.lambdas_[0] = 1.0
        return self

    def weights(self, M: np.ndarray) -> np.ndarray:
        return self._weights(self.lambdas_, self._buckets(M))

    def params(self) -> dict:
        return {"method": self.method, "n_buckets": self.n_buckets,
                "lambdas": self.lambdas_.tolist()}


def _latent_choices(n: int, prior, groups):
    """``(prior, groups, T)`` for :meth:`ConfidenceMixture.fit`, checked (one choice per
    column when both are None)."""
    if (prior is None) != (groups is None):
        raise ValueError("give both prior and groups, or neither")
    if prior is None:
        return np.ones(n), np.arange(n), n
    prior, groups = np.asarray(prior, np.float64), np.asarray(groups)
    if prior.shape != (n,) or groups.shape != (n,):
        raise ValueError(f"prior and groups need one entry per column of P ({n})")
    if not np.issubdtype(groups.dtype, np.integer) or (n and groups.min() < 0):
        raise ValueError("groups must be non-negative integer token numbers")
    n_tokens = int(groups.max()) + 1 if n else 0
    totals = np.bincount(groups, prior, n_tokens)
    if not (np.all(prior >= 0) and np.allclose(totals, 1.0)):
        raise ValueError("prior must be >= 0 and sum to 1 over each token's columns; every "
                         "token 0 … T−1 needs at least one column")
    return prior, groups, n_tokens


def mixture_from_params(params: dict):
    """Rebuild a fitted mixture from its ``params()`` (for loading a saved model)."""
    if params["method"] == "confidence":
        mix = ConfidenceMixture(params["n_buckets"])
    else:
        mix = ConstantMixture(params["method"])
        if mix.method == "paper":
            mix.beta_ = params["beta"]
            mix.entropies_ = np.asarray(params["entropies"])
    mix.lambdas_ = np.asarray(params["lambdas"], float)
    return mix
