"""Fitting ``τ``, ``k``, the resolution weights and the KN-5 interpolation on valid only.

The valid contexts are searched once with ``k_max`` neighbours; every ``(k, τ)`` of the
grid reuses those results (the first ``k`` columns), fits the configured mixture
(:mod:`.mixing`) and is scored by valid perplexity. At the chosen ``(k, τ)`` all three
mixtures are fitted, so their valid perplexities can be compared (``fit_report_``). The
test split is never looked at.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from .mixing import ConfidenceMixture, ConstantMixture, mean_nll

TAUS = (0.01, 0.015, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2)
KS = (1, 4, 16, 32, 64, 128)
ENTROPY_SAMPLE = 2000
GRID_TOLERANCE = 1e-6  # EM tolerance (nats) while ranking the grid; the final fit is tight


def make_mixture(method: str):
    return ConfidenceMixture() if method == "confidence" else ConstantMixture(method)


def component_entropies(model, stream: np.ndarray, hits: dict, k: int, tau: float) -> np.ndarray:
    """Mean entropy ``H_r = E_x H(P_r(·|x))`` of each component over evenly spaced contexts.

    Theorem 4.3's ``H_r`` is "the conditional entropy at resolution r"; this is its
    plug-in estimate on ``ENTROPY_SAMPLE`` valid positions, from the search results
    ``hits`` of :meth:`RetgenLM.search_stream`. Row 0 is the floor.
    """
    positions = np.unique(np.linspace(0, len(stream) - 1, ENTROPY_SAMPLE).astype(np.int64))
    floor = model.unigram.distribution(stream[:0])
    H = [np.full(len(positions), -(floor * np.log(floor)).sum())]
    for r, level in model.levels.items():
        sims, ids = hits[r]
        values = []
        for j in positions:
            dist, _ = level.distribution(sims[j, :k], ids[j, :k], tau, len(model.vocab))
            nz = dist[dist > 0]
            values.append(-(nz * np.log(nz)).sum())
        H.append(np.array(values))
    return np.array([h.mean() for h in H])


def fit_on_valid(model) -> None:
    """Set ``k_``, ``tau_``, ``mixture_``, ``alpha_`` and ``fit_report_`` of ``model``."""
    cfg = model.config
    valid = model.splits["valid"]
    hits = model.search_stream(valid, cfg.k_max)
    method = cfg.mixture
    grid = []
    entropies = None
    for k in [k for k in KS if k <= cfg.k_max]:
        for tau in TAUS:
            P, M = model.components(valid, hits, k, tau)
            if method == "paper":
                entropies = component_entropies(model, valid, hits, k, tau)
            mixture = make_mixture(method).fit(P, M, entropies, GRID_TOLERANCE)
            grid.append({"k": k, "tau": tau,
                         "valid_ppl": float(np.exp(mean_nll(P, mixture.weights(M))))})
    best = min(grid, key=lambda row: row["valid_ppl"])
    model.k_, model.tau_ = best["k"], best["tau"]
    P, M = model.components(valid, hits)
    entropies = component_entropies(model, valid, hits, model.k_, model.tau_)
    mixtures = {name: make_mixture(name).fit(P, M, entropies)
                for name in ("confidence", "em", "paper")}
    model.mixture_ = mixtures[method]
    retgen = (model.mixture_.weights(M) * P).sum(axis=0)
    kn5 = np.exp(model.kn5.log_prob(valid))
    found = minimize_scalar(lambda a: -np.log((1 - a) * retgen + a * kn5).mean(),
                            bounds=(0.0, 1.0), method="bounded")
    model.alpha_ = float(found.x)
    model.fit_report_ = {
        "grid": grid,
        "k": model.k_, "tau": model.tau_, "alpha": model.alpha_,
        "mixtures": {name: {**mix.params(),
                            "valid_ppl": float(np.exp(mean_nll(P, mix.weights(M))))}
                     for name, mix in mixtures.items()},
    }
