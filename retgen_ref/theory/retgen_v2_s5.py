"""``retgen_v2.md`` §5: energy-based reranking — the convergence of its learned weights
(Theorem 5.1).

Checked on the project's reranker loss :func:`retgen_ref.v2.rerank.nll_and_gradient`
(fed a synthetic input with the shapes the LM gives it: two resolutions, eight
neighbours per token, features (similarity, diversity, log frequency), sparse
``P_emp(y | p_i)``, a mixture and a floor), minimised by gradient descent with a
backtracking (Armijo) line search as :class:`~retgen_ref.v2.rerank.EnergyReranker` does.
"""

from __future__ import annotations

import numpy as np

from .registry import claim, judge
from .retgen_v2_app import loss_fn, min_hessian_eigenvalue, reranker_instance


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


@claim("retgen_v2/thm5.1",
       "Under convexity assumptions, the energy parameters learned by gradient descent on "
       "L(w) = E[−log P(y|q; w)] converge to optimal values with rate O(1/√T).",
       "Two measured parts. Premise: is L(w) convex? (smallest Hessian eigenvalue of our "
       "reranker's loss at random w, finite differences of its analytic gradient.) "
       "Conclusion: from the kernel-weight start w_init = (1/τ, 0, −1) and starts "
       "around it (w_s ∈ {0, 10, 30}), gradient descent's gap L_T − L* (L* = best loss "
       "any run reached) must satisfy L_T − L* ≤ C/√T with C fixed at T = 10, for "
       "T = 30, 100, 300 (tolerance 1e-6 nats). A start in the saturated region "
       "(w_s = 120) is reported as evidence.")
def thm5_1(rng, fast):
    instance = reranker_instance(rng, T=800 if fast else 2_500)
    R = len(instance[0])
    w_init = np.tile(np.array([10.0, 0.0, -1.0]), (R, 1))
    f = loss_fn(instance, w_init)
    eigs = [min_hessian_eigenvalue(f, w_init + rng.standard_normal(w_init.shape)
                                   * np.array([10.0, 3.0, 1.0]))
            for _ in range(4 if fast else 8)]
    starts = {"w_init": w_init}
    for ws in (0.0, 10.0, 30.0):
        starts[f"w_s={ws:g}"] = np.tile(np.array([ws, 0.0, -1.0]), (R, 1)) \
            + 0.3 * rng.standard_normal((R, 3))
    starts["saturated w_s=120"] = np.tile(np.array([120.0, 0.0, -1.0]), (R, 1))
    iterations = 300
    runs = {name: gradient_descent(f, w, iterations) for name, w in starts.items()}
    best = min(v.min() for v in runs.values())
    checkpoints = (10, 30, 100, 300)
    rows, violation = {}, -np.inf
    for name, values in runs.items():
        gaps = {T: float(values[T] - best) for T in checkpoints}
        C = gaps[10] * np.sqrt(10)
        excess = max(gaps[T] - C / np.sqrt(T) for T in checkpoints[1:])
        rows[name] = {"gap_at_T": gaps, "C": C, "excess_over_C_over_sqrtT": excess,
                      "final_loss": float(values[-1])}
        if not name.startswith("saturated"):
            violation = max(violation, excess)
    convex = min(eigs) >= -1e-6
    return judge(
        {"loss_hessian_min_eigenvalues": eigs, "runs": rows, "best_loss": float(best),
         "iterations": iterations},
        violation, 1e-6,
        counterexample={"runs": rows},
        corrected="For the non-convex reranker loss no O(1/√T) rate to the optimum is "
                  "guaranteed; Armijo descent reaches a stationary point, with a "
                  "start-dependent constant (plateaus from saturated starts).",
        corrected_violation=violation,
        conditions="the convexity premise does NOT hold for the reranker's loss (its "
                   "Hessian has negative eigenvalues, measured); the O(1/√T) rate was "
                   "observed only empirically, from starts near the kernel weights "
                   "(where descent is in fact linear); from saturated starts (w_s = 120) "
                   "the softmax flattens L and descent can stall on plateaus for hundreds of "
                   "iterations (see runs), so no start-independent rate holds",
        holds_without_conditions=convex)
