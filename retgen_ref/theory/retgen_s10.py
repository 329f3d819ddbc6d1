"""``retgen.md`` §10: minimax optimality (Thm 10.1) and adaptivity (Thm 10.2).

RETGEN's retrieval estimate is a k-nearest-neighbour average (see :mod:`.retgen_s8`);
synthetic data with a known P(y = 1 | x) gives the exact error.
"""

from __future__ import annotations

import numpy as np

from .registry import claim, judge, loglog_slope
from .retgen_s8 import k_grid, knn_mse


@claim("retgen/thm10.1",
       "Under Lipschitz smoothness RETGEN achieves the minimax rate of non-parametric "
       "regression, inf_f̂ sup_f E‖f̂ − f‖² ≍ n^{−2α/(2α+d)}.",
       "α = 1 (Lipschitz): the MSE of the k-NN estimate at the apex of a Lipschitz cone "
       "(a worst case of the class) with k chosen optimally per n, D = 1, 2, n = 10³…10⁶: "
       "its log-log slope must match −2/(2 + D) within 0.1 (MSE exact given X, averaged "
       "over draws; the k grid has ratio ~1.3). The same with fixed k = 10 is reported.")
def thm10_1(rng, fast):
    ns = [1_000, 10_000, 100_000] if fast else [1_000, 10_000, 100_000, 1_000_000]
    reps = 4 if fast else 8
    rows, worst = [], 0.0
    for dim in (1, 2):
        best = [float(knn_mse(rng, n, dim, k_grid(n), reps).min()) for n in ns]
        fixed = [float(knn_mse(rng, n, dim, [10], reps)[0]) for n in ns]
        s = loglog_slope(ns, best)
        rows.append({"D": dim, "mse_best_k": best, "slope": s, "minimax_slope": -2 / (2 + dim),
                     "mse_fixed_k10": fixed, "slope_fixed_k10": loglog_slope(ns, fixed)})
        worst = max(worst, abs(s + 2 / (2 + dim)))
    return judge({"n": ns, "cases": rows}, worst, 0.1,
                 conditions="k must grow as n^{2/(2+D)} (tuned per n, here by oracle over a "
                            "grid; with RETGEN's fixed k the MSE stalls, slope_fixed_k10 ≈ 0) "
                            "and α ≤ 1: a local average cannot exploit smoothness beyond "
                            "Lipschitz in general, so the claim's general α is not covered",
                 holds_without_conditions=False)


def _holdout_ratio(rng, n: int, fn, reps: int) -> tuple[float, int, int]:
    """Test risk of k chosen on a validation split over the oracle risk (D = 1)."""
    ks = k_grid(n)
    ratios, picked, oracle = [], [], []
    t = np.linspace(0.0, 1.0, 200)
    for _ in range(reps):
        x, xv = rng.random(n), rng.random(500)
        y = (rng.random(n) < fn(x)).astype(float)
        yv = (rng.random(500) < fn(xv)).astype(float)
        kmax = int(ks.max())

        def preds(q):
            order = np.argsort(np.abs(q[:, None] - x[None, :]), axis=1)[:, :kmax]
            return (np.cumsum(y[order], axis=1) / np.arange(1, kmax + 1))[:, ks - 1]

        val = ((preds(xv) - yv[:, None]) ** 2).mean(axis=0)
        risk = ((preds(t) - fn(t)[:, None]) ** 2).mean(axis=0)
        j = int(np.argmin(val))
        ratios.append(risk[j] / risk.min())
        picked.append(int(ks[j]))
        oracle.append(int(ks[np.argmin(risk)]))
    return float(np.mean(ratios)), int(np.median(picked)), int(np.median(oracle))


@claim("retgen/thm10.2",
       "Multi-resolution RETGEN adapts to unknown smoothness, achieving the optimal rate "
       "within logarithmic factors without knowing α.",
       "The resolutions are a geometric grid of retrieval sizes k, combined by choosing "
       "the one with least held-out squared error (RETGEN fits its mixture on held-out "
       "data too), without knowing α: its integrated test risk (exact, given the data) "
       "must be within a factor ln n of the best k in hindsight, for a rough (Lipschitz "
       "cone, α = 1) and a smooth (sine) P(y|x), D = 1, n = 500…8000.")
def thm10_2(rng, fast):
    ns = [500, 2_000] if fast else [500, 2_000, 8_000]
    reps = 3 if fast else 4
    funcs = {"cone_alpha1": lambda x: 0.2 + 0.6 * np.abs(x - 0.5),
             "sine_smooth": lambda x: 0.5 + 0.3 * np.sin(2 * np.pi * x)}
    rows, worst = [], -np.inf
    for name, fn in funcs.items():
        for n in ns:
            ratio, k_sel, k_orc = _holdout_ratio(rng, n, fn, reps)
            rows.append({"function": name, "n": n, "risk_ratio_selected_over_oracle": ratio,
                         "log_n": float(np.log(n)), "k_selected_median": k_sel,
                         "k_oracle_median": k_orc})
            worst = max(worst, ratio - np.log(n))
    return judge({"cases": rows}, worst, 0.0,
                 conditions="the resolutions must include retrieval sizes near the optimal "
                            "k ∝ n^{2α/(2α+D)} and be selected on held-out data; RETGEN's "
                            "actual resolutions are pattern lengths over tokens, for which "
                            "the paper defines no smoothness α, so this is a reading by "
                            "analogy",
                 holds_without_conditions=False)
