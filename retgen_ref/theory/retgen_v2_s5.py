"""``retgen_v2.md`` §5: energy-based reranking — the convergence of its learned weights
(Theorem 5.1).

Checked on the project's reranker loss :func:`retgen_ref.v2.rerank.nll_and_gradient`
(fed a synthetic input with the shapes the LM gives it: two resolutions, eight
neighbours per token, features (similarity, diversity, log frequency), sparse
``P_emp(y | p_i)``, a mixture and a floor), minimised by gradient descent with a
backtracking (Armijo) line search as :class:`~retgen_ref.v2.rerank.EnergyReranker` does.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .registry import claim, judge
from .retgen_v2_app import loss_fn, min_hessian_eigenvalue, reranker_instance

CHECKPOINTS = (10, 30, 100, 300)


def gradient_descent(f, w: np.ndarray, iterations: int) -> np.ndarray:
    """Loss values ``L(w_0) … L(w_T)`` of Armijo-backtracking gradient descent."""
    values = []
    loss, grad = f(w)
    step = 1.0
    for _ in range(iterations):
        values.append(loss)
        step *= 2.0
        while True:
            w_new = w - step * grad
            loss_new, grad_new = f(w_new)
            if loss_new <= loss - 1e-4 * step * float((grad ** 2).sum()) or step < 1e-12:
                break
            step /= 2.0
        w, loss, grad = w_new, loss_new, grad_new
    values.append(loss)
    return np.array(values)


def convex_instance(rng, T: int, k: int = 8):
    """The reranker's loss made convex: one resolution, mixture weight 1, and one
    retrieved neighbour with P_emp = 1 per token (the others 0), so that
    L(w) = −mean log softmax(φ·w)_target + (ρ/2)‖w − w_init‖² (multinomial logistic
    regression). The target is random, so the optimum is finite."""
    phis, feats, _, floor = reranker_instance(rng, T=T, R=1, k=k)
    target = np.zeros((T, k))
    target[np.arange(T), rng.integers(k, size=T)] = 1.0
    feats = [SimpleNamespace(mask=np.ones((T, k), dtype=bool), target_probs=target)]
    return phis, feats, np.stack([np.zeros(T), np.ones(T)]), floor


def _rate_runs(f, starts: dict, rate_exponent: float) -> tuple[dict, float]:
    """Descent from each start; per run the gap L_T − L* (L* the best loss any run
    reached) at the checkpoints and its worst excess over C/T^rate, C fixed at T = 10."""
    runs = {name: gradient_descent(f, w, CHECKPOINTS[-1]) for name, w in starts.items()}
    best = min(v.min() for v in runs.values())
    rows, worst = {}, -np.inf
    for name, values in runs.items():
        gaps = {T: float(values[T] - best) for T in CHECKPOINTS}
        C = gaps[CHECKPOINTS[0]] * CHECKPOINTS[0] ** rate_exponent
        excess = max(gaps[T] - C / T ** rate_exponent for T in CHECKPOINTS[1:])
        rows[name] = {"gap_at_T": gaps, "C": C, "excess_over_C_over_T_rate": excess}
        worst = max(worst, excess)
    return {"best_loss": float(best), "runs": rows}, worst


@claim("retgen_v2/thm5.1",
       "Under convexity assumptions, the energy parameters learned by gradient descent on "
       "L(w) = E[−log P(y|q; w)] converge to optimal values with rate O(1/√T).",
       "Descent (Armijo line search) from w = (w_s, 0, −1), w_s ∈ {0, 10, 30, 120} (w_s = "
       "120 saturates the softmax); the gap L_T − L* (L* = the best loss any run reached) "
       "must satisfy L_T − L* ≤ C/T^rate, C fixed at T = 10, for T = 30, 100, 300 "
       "(tolerance 1e-6 nats). Within the premise: the reranker's loss made convex "
       "(one-hot P_emp, one resolution: multinomial logistic), its convexity measured "
       "(smallest Hessian eigenvalue at random w ≥ −1e-6). The unconditional case: the "
       "reranker's actual loss (two resolutions, sparse P_emp, mixture, floor), whose "
       "Hessian has negative eigenvalues (measured). convex_only=False claims the rate "
       "for it too.",
       refuted_by=({"rate_exponent": 2.0}, {"convex_only": False}))
def thm5_1(rng, fast, *, rate_exponent=0.5, convex_only=True):
    T = 800 if fast else 2_500
    start = lambda ws, R: np.tile(np.array([ws, 0.0, -1.0]), (R, 1))  # noqa: E731
    results = {}
    for name, instance in (("convex", convex_instance(rng, T)),
                           ("reranker", reranker_instance(rng, T=T))):
        R = len(instance[0])
        f = loss_fn(instance, start(10.0, R))
        eigs = [min_hessian_eigenvalue(f, start(10.0, R) + rng.standard_normal((R, 3))
                                       * np.array([10.0, 3.0, 1.0]))
                for _ in range(4 if fast else 8)]
        starts = {f"w_s={ws:g}": start(ws, R) + (0.3 * rng.standard_normal((R, 3)) if ws else 0)
                  for ws in (0.0, 10.0, 30.0, 120.0)}
        runs, excess = _rate_runs(f, starts, rate_exponent)
        results[name] = {"hessian_min_eigenvalues": eigs, **runs,
                         "excess": max(excess, -min(eigs))}
    convex, actual = results["convex"]["excess"], results["reranker"]["excess"]
    return judge(
        {**results, "checkpoints": CHECKPOINTS},
        convex if convex_only else max(convex, actual), 1e-6,
        counterexample={name: r["runs"] for name, r in results.items()},
        conditions="a convex loss (the premise): the reranker's actual loss is not convex "
                   "(smallest Hessian eigenvalue "
                   f"{min(results['reranker']['hessian_min_eigenvalues']):.2g}, see "
                   "retgen_v2/app11.3), and from a saturated start (w_s = 120) its descent "
                   "stalls on a plateau, slower than any C/√T fixed early",
        unconditional_violation=actual)
