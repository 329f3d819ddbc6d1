"""Energy-based reranking of the retrieved patterns (``retgen_v2.md`` §5).

Per resolution ``r`` the model retrieves the ``k`` stored patterns ``p_i`` nearest to the
context ``q`` (unit embeddings, inner product ``s_i``). §5.1 scores each with an energy

    E(q, p_i) = −w_s · sim(q, p_i) + w_d · div(p_i, 𝒫) + w_f · log freq(p_i)

and the reranked model weights the patterns by ``a_i = softmax_i(−E)``:

    P_r(y | q; w) = Σ_i a_i P_emp(y | p_i).

``div(p_i, 𝒫)`` is the mean cosine of ``p_i``'s embedding to the other patterns retrieved
for the same query (high = redundant), ``(e_i · Σ_j e_j − 1) / (k_valid − 1)`` for unit
``e_j``; ``freq(p_i) = n(p_i)``. With ``w_s = 1/τ, w_d = 0, w_f = −1`` the weights are
``a_i ∝ n(p_i) exp(s_i/τ)``, the kernel weights of :mod:`retgen_ref.lm.kernels`, so the
reranker starts from the fitted model exactly. Each resolution has its own three weights.

Learning (§5.2): full-batch gradient descent on the valid split's negative log-likelihood
of the whole model,

    L(w) = −mean_t log Σ_r w_r(t) P_r(y_t | x_t; w) + (ρ/2) ‖w − w_init‖²,

with the floor ``P_0`` and the mixture weights ``w_r(t)`` of :mod:`retgen_ref.lm.mixing`
held at the fitted model's values. With ``z_i = −E_i = φ_i · w`` and
``∂a_j/∂z_i = a_j (δ_ij − a_i)``,

    ∂P_r/∂w = Σ_i a_i (P_emp(y | p_i) − P_r) φ_i,
    ∂L/∂w_r = −mean_t w_r(t) ∂P_r/∂w / P(y_t | x_t) + ρ (w_r − w_init,r).

The step is taken in the standardised coordinates ``σ_f w_f`` (``σ_f`` the within-query
spread of feature ``f``; a diagonal preconditioner, since similarities differ by
hundredths and log-counts by units) with a backtracking (Armijo) line search; descent
stops when an iteration lowers ``L`` by less than ``tolerance`` nats. ``ρ`` is fixed
(default ``1e-4``), not tuned; the test split is never looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int
from .reweighting import Reweighting

FEATURES = ("w_s", "w_d", "w_f")
CHUNK_BYTES = 300_000_000  # embeddings held at once while computing the diversity
_ARMIJO = 1e-4             # sufficient-decrease constant of the line search
_MAX_HALVINGS = 60


@dataclass
class NeighbourFeatures:
    """What one resolution retrieved for every query, shape ``(n, k)`` each.

    ``target_probs[t, j] = P_emp(y_t | p_j)``; entries where ``mask`` is False (no
    neighbour, id ``-1``) are 0.
    """

    sims: np.ndarray
    div: np.ndarray
    log_counts: np.ndarray
    target_probs: np.ndarray
    mask: np.ndarray

    def phi(self) -> np.ndarray:
        """``φ`` ``(n, k, 3)`` with ``−E = φ · (w_s, w_d, w_f)``: ``(s, −div, −log n)``."""
        return np.stack([self.sims, -self.div, -self.log_counts], axis=2)


def _diversity(model, r: int, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``div_{t,i} = (e_i · Σ_j e_j − 1) / (k_valid − 1)`` (0 when ``k_valid ≤ 1``)."""
    table = model.levels[r].table
    history = model.pattern_history.get(r)
    n, k = ids.shape
    d = model.encoder.dim(r)
    rows = max(1, CHUNK_BYTES // (2 * k * d * 4))
    out = np.zeros((n, k))
    for lo in range(0, n, rows):
        chunk, keep = ids[lo:lo + rows], mask[lo:lo + rows]
        unique, inverse = np.unique(chunk[keep], return_inverse=True)
        vectors = model.encoder.encode(table.contexts[unique],
                                       None if history is None else history[unique])
        emb = np.zeros(chunk.shape + (d,), np.float32)
        emb[keep] = vectors[inverse]
        dots = np.einsum("tkd,td->tk", emb, emb.sum(axis=1), dtype=np.float64)
        valid = keep.sum(axis=1, keepdims=True)
        out[lo:lo + rows] = np.where(keep & (valid > 1), (dots - 1.0) / np.maximum(valid - 1, 1),
                                     0.0)
    return out


def retrieval_features(model, r: int, sims: np.ndarray, ids: np.ndarray, k: int,
                       targets: np.ndarray | None = None) -> NeighbourFeatures:
    """:class:`NeighbourFeatures` of the first ``k`` columns of one resolution's results.

    ``sims``/``ids`` ``(n, ≥k)`` come from ``model.levels[r].search``; ``target_probs`` is
    filled only when the targets ``y_t`` are given (zeros otherwise).
    """
    level = model.levels[r]
    mask = ids[:, :k] >= 0
    safe = np.where(mask, ids[:, :k], 0).astype(np.int64)
    target_probs = (np.zeros(mask.shape) if targets is None else
                    level.pattern_probabilities(np.where(mask, safe, -1), targets))
    return NeighbourFeatures(
        sims=np.where(mask, sims[:, :k], 0.0).astype(np.float64),
        div=_diversity(model, r, safe, mask),
        log_counts=np.where(mask, np.log(np.maximum(level.totals[safe], 1e-300)), 0.0),
        target_probs=target_probs, mask=mask)


def neighbour_features(model, stream: np.ndarray, hits: dict, k: int) -> dict:
    """Per resolution, the :class:`NeighbourFeatures` of the first ``k`` search results.

    ``hits`` is :meth:`RetgenLM.search_stream` of ``stream`` (``{r: (sims, ids)}``, at least
    ``k`` columns); ``stream`` gives the targets ``y_t``.
    """
    k = check_int(k, "k")
    stream = np.asarray(stream)
    out = {}
    for r in model.levels:
        sims, ids = hits[r]
        if ids.shape != (len(stream), ids.shape[1]) or ids.shape[1] < k:
            raise ValueError(f"hits[{r}] has shape {ids.shape}; need ({len(stream)}, >= {k}) "
                             "from model.search_stream(stream, k)")
        out[r] = retrieval_features(model, r, sims, ids, k, stream)
    return out


def masked_softmax(z: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``softmax_i z`` over the ``mask``ed columns of each row; a row with none → 0."""
    z = np.where(mask, z, -np.inf)
    top = z.max(axis=1, keepdims=True)
    a = np.where(mask, np.exp(z - np.where(np.isfinite(top), top, 0.0)), 0.0)
    total = a.sum(axis=1, keepdims=True)
    return a / np.where(total > 0, total, 1.0)


def energy_weights(phi: np.ndarray, mask: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a = softmax_i(φ_i · w)`` over the valid neighbours of each row; no neighbour → 0."""
    return masked_softmax(phi @ w, mask)


def reranked_probs(phi: np.ndarray, mask: np.ndarray, target_probs: np.ndarray,
                   w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(P_r(y_t), a)`` with ``a`` the :func:`energy_weights`."""
    a = energy_weights(phi, mask, w)
    return (a * target_probs).sum(axis=1), a


def nll_and_gradient(w: np.ndarray, phis: list, features: list, mixture: np.ndarray,
                     floor: np.ndarray, w_init: np.ndarray, rho: float):
    """``(L(w), ∂L/∂w)`` of the module docstring; ``w`` is ``(R, 3)``.

    ``phis[i]``/``features[i]`` belong to resolution row ``i + 1`` of ``mixture``
    (``(R+1, n)``, row 0 the floor whose target probabilities are ``floor``).
    """
    prob = mixture[0] * floor
    parts = []
    for i, (phi, feat) in enumerate(zip(phis, features)):
        P_r, a = reranked_probs(phi, feat.mask, feat.target_probs, w[i])
        prob = prob + mixture[i + 1] * P_r
        parts.append((P_r, a))
    diff = w - w_init
    loss = -np.log(prob).mean() + 0.5 * rho * float((diff ** 2).sum())
    grad = rho * diff
    for i, (phi, feat) in enumerate(zip(phis, features)):
        P_r, a = parts[i]
        dP = np.einsum("tk,tkf->tf", a * (feat.target_probs - P_r[:, None]), phi)
        grad[i] -= (mixture[i + 1] / prob) @ dP / len(prob)
    return float(loss), grad


def _feature_scales(phi: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Root mean within-query variance of each feature over valid neighbours (1 if none)."""
    count = np.maximum(mask.sum(axis=1, keepdims=True), 1)
    mean = (phi * mask[..., None]).sum(axis=1) / count
    var = (((phi - mean[:, None]) ** 2) * mask[..., None]).sum(axis=(0, 1)) / max(mask.sum(), 1)
    scale = np.sqrt(var)
    return np.where(scale > 1e-12, scale, 1.0)


class EnergyReranker(Reweighting):
    """Learned energy weights over a fitted :class:`~retgen_ref.lm.RetgenLM` (§5).

    Parameters
    ----------
    rho : float
        ``ρ`` of the proximal term ``(ρ/2)‖w − w_init‖²`` (fixed, not tuned).
    tolerance : float
        Stop when an iteration lowers ``L`` by less than this many nats.
    max_iterations : int

    Attributes
    ----------
    weights_ : (R, 3) ``(w_s, w_d, w_f)`` per resolution, rows in ``resolutions_`` order.
    init_weights_ : (R, 3) the kernel-equivalent start ``(1/τ, 0, −1)``.
    report_ : dict with the valid NLL / perplexity before and after, iterations, and the
        weights by resolution.

    Examples
    --------
    With a fitted :class:`~retgen_ref.lm.RetgenLM` ``model`` (``tests/test_rerank.py``
    runs this on a small one)::

        reranker = EnergyReranker().fit(model)
        reranker.perplexity(model, "test")
    """

    def __init__(self, rho: float = 1e-4, tolerance: float = 1e-7, max_iterations: int = 300):
        if not (np.isfinite(rho) and rho >= 0):
            raise ValueError(f"rho={rho} must be a finite number >= 0")
        if not (np.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance={tolerance} must be a finite number > 0")
        self.rho, self.tolerance = float(rho), float(tolerance)
        self.max_iterations = check_int(max_iterations, "max_iterations")

    def _data(self, model, stream: np.ndarray):
        """``φ``, features, mixture weights and floor of ``stream`` at the model's ``k``."""
        hits = model.search_stream(stream, model.k_)
        P, M = model.components(stream, hits)
        feats = neighbour_features(model, stream, hits, model.k_)
        features = [feats[r] for r in model.levels]
        return [f.phi() for f in features], features, model.mixture_.weights(M), P[0]

    def fit(self, model) -> "EnergyReranker":
        """Learn the weights on ``model``'s valid split (its ``k_``, ``tau_``, mixture)."""
        if not hasattr(model, "mixture_"):
            raise ValueError("the model is not fitted; call model.fit(corpus) first")
        self.resolutions_ = tuple(model.levels)
        self.k_, self.tau_ = model.k_, model.tau_
        phis, features, mixture, floor = self._data(model, model.splits["valid"])
        w0 = np.tile([1.0 / model.tau_, 0.0, -1.0], (len(phis), 1))
        scale2 = np.array([_feature_scales(phi, f.mask) for phi, f in zip(phis, features)]) ** 2

        def objective(w):
            return nll_and_gradient(w, phis, features, mixture, floor, w0, self.rho)

        w, (loss, grad) = w0.copy(), objective(w0)
        start_loss, step, iterations, converged = loss, 1.0, 0, False
        for iterations in range(1, self.max_iterations + 1):
            direction = -grad / scale2
            slope = float((grad * direction).sum())
            for _ in range(_MAX_HALVINGS):
                trial = w + step * direction
                trial_loss, trial_grad = objective(trial)
                if trial_loss <= loss + _ARMIJO * step * slope:
                    break
                step /= 2
            else:
                converged = True  # no step lowers L: a stationary point to rounding
                break
            decrease = loss - trial_loss
            w, loss, grad = trial, trial_loss, trial_grad
            step *= 2
            if decrease < self.tolerance:
                converged = True
                break
        self.weights_, self.init_weights_ = w, w0
        penalty = 0.5 * self.rho * float(((w - w0) ** 2).sum())
        self.report_ = {
            "valid_nll_before": start_loss, "valid_nll_after": loss - penalty,
            "valid_ppl_before": float(np.exp(start_loss)),
            "valid_ppl_after": float(np.exp(loss - penalty)),
            "objective_after": loss, "iterations": iterations, "converged": converged,
            "gradient_norm": float(np.linalg.norm(grad)), "rho": self.rho,
            "weights": {str(r): dict(zip(FEATURES, map(float, row)))
                        for r, row in zip(self.resolutions_, w)},
        }
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise ValueError("this reranker is not fitted; call fit(model) first")

    def _check_model(self, model) -> None:
        self._check_fitted()
        if tuple(model.levels) != self.resolutions_ or model.k_ != self.k_:
            raise ValueError(f"the reranker was fitted on resolutions {self.resolutions_} "
                             f"with k={self.k_}; this model has {tuple(model.levels)}, "
                             f"k={model.k_}")

    @property
    def search_k_(self) -> int:
        """Patterns each resolution must retrieve for :meth:`weights`: the model's ``k``."""
        return self.k_

    def weights(self, model, r: int, sims: np.ndarray, ids: np.ndarray,
                queries=None) -> np.ndarray:
        """Reranked pattern weights ``a`` ``(n, ids.shape[1])`` of resolution ``r``'s results.

        Only the first ``k_`` columns get weight; rows with no neighbour are all zero.
        ``queries`` is unused (the energy reads only the retrieved patterns); it is there so
        that a reranker and a :class:`~retgen_ref.v2.policy.RetrievalPolicy` are used alike
        by :meth:`RetgenLM.scored_components <retgen_ref.lm.RetgenLM.scored_components>`.
        """
        self._check_model(model)
        feat = retrieval_features(model, r, sims, ids, self.k_)
        out = np.zeros(ids.shape)
        out[:, :self.k_] = energy_weights(feat.phi(), feat.mask,
                                          self.weights_[self.resolutions_.index(r)])
        return out

    def state(self) -> tuple[dict, dict]:
        """``(params, arrays)``: JSON-able settings and the weight arrays (for saving)."""
        self._check_fitted()
        params = {"rho": self.rho, "tolerance": self.tolerance,
                  "max_iterations": self.max_iterations, "resolutions": list(self.resolutions_),
                  "k": self.k_, "tau": self.tau_, "report": self.report_}
        return params, {"weights": self.weights_, "init_weights": self.init_weights_}

    @classmethod
    def from_state(cls, params: dict, arrays: dict) -> "EnergyReranker":
        """Inverse of :meth:`state`."""
        reranker = cls(params["rho"], params["tolerance"], params["max_iterations"])
        reranker.resolutions_ = tuple(params["resolutions"])
        reranker.k_, reranker.tau_ = params["k"], params["tau"]
        reranker.report_ = params["report"]
        reranker.weights_ = np.asarray(arrays["weights"], np.float64)
        reranker.init_weights_ = np.asarray(arrays["init_weights"], np.float64)
        if reranker.weights_.shape != (len(reranker.resolutions_), len(FEATURES)):
            raise ValueError(f"reranker weights of shape {reranker.weights_.shape} do not "
                             f"match {len(reranker.resolutions_)} resolutions")
        return reranker
