"""``retgen.md`` §10: minimax optimality (Thm 10.1) and adaptivity (Thm 10.2).

RETGEN's retrieval estimate is a k-nearest-neighbour average (see :mod:`.retgen_s8`);
synthetic data with a known P(y = 1 | x) gives the exact error.
"""

from __future__ import annotations

import numpy as np

from .registry import claim, judge, loglog_evidence, loglog_slope
from .retgen_s8 import k_grid, knn_mse


@claim("retgen/thm10.1",
       "Under Lipschitz smoothness RETGEN achieves the minimax rate of non-parametric "
       "regression, inf_f̂ sup_f E‖f̂ − f‖² ≍ n^{−2α/(2α+d)}.",
       "α = 1 (Lipschitz): the MSE of the k-NN estimate at the apex of a Lipschitz cone "
       "(a worst case of the class) with k chosen optimally per n (oracle over a geometric "
       "grid, ratio ~1.3), D = 1, 2, n = 10³…10⁶: its log-log slope must match the claimed "
       "−2α/(2α + D) within 0.05 on both sides (≍; MSE exact given X, averaged over draws). "
       "Unconditional: RETGEN's fixed retrieval size k = 10.",
       refuted_by=({"alpha": 1.5}, {"alpha": 0.7}))
def thm10_1(rng, fast, *, alpha=1.0):
    ns = [1_000, 10_000, 100_000] if fast else [1_000, 10_000, 100_000, 1_000_000]
    reps = 4 if fast else 8
    rows = []
    for dim in (1, 2):
        best = [float(knn_mse(rng, n, dim, k_grid(n), reps).min()) for n in ns]
        fixed = [float(knn_mse(rng, n, dim, [10], reps)[0]) for n in ns]
        rate = -2 * alpha / (2 * alpha + dim)
        rows.append({"D": dim, "mse_best_k": best, "slope": loglog_slope(ns, best),
                     "claimed_slope": rate, "mse_fixed_k10": fixed,
                     "slope_fixed_k10": loglog_slope(ns, fixed)})
    worst = max(rows, key=lambda r: abs(r["slope"] - r["claimed_slope"]))
    fixed_gap = max(abs(r["slope_fixed_k10"] - r["claimed_slope"]) for r in rows)
    curves = [loglog_evidence(ns, r[key], xlabel="n", ylabel="MSE at x₀", label=label,
                              claimed_slope=r["claimed_slope"])
              for r in rows for key, label in (("mse_best_k", f"D = {r['D']}, best k"),
                                               ("mse_fixed_k10", f"D = {r['D']}, k = 10"))]
    return judge({"n": ns, "cases": rows, "loglog": curves},
                 abs(worst["slope"] - worst["claimed_slope"]), 0.05,
                 counterexample={k: worst[k] for k in ("D", "mse_best_k", "slope",
                                                       "claimed_slope")},
                 conditions="k must grow as n^{2/(2+D)} (tuned per n, here by oracle over a "
                            "grid); with RETGEN's fixed k = 10 the MSE stalls (slope off the "
                            f"rate by up to {fixed_gap:.2f}). Only α = 1 is tested: a local "
                            "average cannot exploit smoothness beyond Lipschitz in general",
                 unconditional_violation=fixed_gap)


#: P(y = 1 | x) on [0, 1]: rough (a Lipschitz cone), smooth, and smooth but fast-varying.
FUNCTIONS = {"cone_alpha1": lambda x: 0.2 + 0.6 * np.abs(x - 0.5),
             "sine_smooth": lambda x: 0.5 + 0.3 * np.sin(2 * np.pi * x),
             "sine_6_periods": lambda x: 0.5 + 0.4 * np.sin(12 * np.pi * x)}
#: Retrieval-size rules: held-out selection over the grid, and two that ignore the data.
RULES = ("held-out", "n/4", "k=10")


def _risk_ratios(rng, n: int, fn, reps: int, small_grid: int) -> dict:
    """Integrated test risk (exact given the data, D = 1) of each rule's k over the best k
    of the grid in hindsight, averaged over draws; also held-out selection restricted to
    k ≤ ``small_grid``."""
    ks = k_grid(n)
    kmax = int(ks.max())
    t = np.linspace(0.0, 1.0, 200)
    ratios = {rule: [] for rule in (*RULES, "held-out_small_grid")}
    for _ in range(reps):
        x, xv = rng.random(n), rng.random(500)
        y = (rng.random(n) < fn(x)).astype(float)
        yv = (rng.random(500) < fn(xv)).astype(float)

        def preds(q):  # k-NN estimates for k = 1 … kmax
            order = np.argsort(np.abs(q[:, None] - x[None, :]), axis=1)[:, :kmax]
            return np.cumsum(y[order], axis=1) / np.arange(1, kmax + 1)

        val = ((preds(xv) - yv[:, None]) ** 2).mean(axis=0)
        risk = ((preds(t) - fn(t)[:, None]) ** 2).mean(axis=0)
        oracle = risk[ks - 1].min()
        small = ks[ks <= small_grid]
        chosen = {"held-out": ks[np.argmin(val[ks - 1])], "n/4": n // 4, "k=10": 10,
                  "held-out_small_grid": small[np.argmin(val[small - 1])]}
        for rule, k in chosen.items():
            ratios[rule].append(risk[k - 1] / oracle)
    return {rule: float(np.mean(r)) for rule, r in ratios.items()}


@claim("retgen/thm10.2",
       "Multi-resolution RETGEN adapts to unknown smoothness, achieving the optimal rate "
       "within logarithmic factors without knowing α.",
       "The resolutions are a geometric grid of retrieval sizes k, combined by choosing "
       "the one with least held-out squared error (RETGEN fits its mixture on held-out "
       "data too), without knowing α: its integrated test risk (exact, given the data) "
       "must be within a factor (ln n)^log_power (claimed 1) of the best k in hindsight, "
       "for a rough (Lipschitz cone), a smooth and a fast-varying smooth P(y|x), D = 1, "
       "n = 500…8000. Rules that ignore the data (k = n/4, k = 10) must be refuted. "
       "Unconditional: held-out selection among k ≤ 16 only (no resolution near the "
       "optimum).",
       refuted_by=({"rule": "n/4"}, {"rule": "k=10"}, {"log_power": 0.0}))
def thm10_2(rng, fast, *, rule="held-out", log_power=1.0):
    ns = [500, 2_000] if fast else [500, 2_000, 8_000]
    reps = 3 if fast else 4
    rows = []
    for name, fn in FUNCTIONS.items():
        for n in ns:
            ratios = _risk_ratios(rng, n, fn, reps, small_grid=16)
            rows.append({"function": name, "n": n, "allowed": float(np.log(n) ** log_power),
                         **{f"risk_ratio_{r}": round(v, 3) for r, v in ratios.items()}})

    def excess(row, rule):
        return row[f"risk_ratio_{rule}"] - row["allowed"]

    worst = max(rows, key=lambda r: excess(r, rule))
    worst_small = max(rows, key=lambda r: excess(r, "held-out_small_grid"))
    return judge({"cases": rows}, excess(worst, rule), 0.0,
                 counterexample={"rule": rule, **worst},
                 conditions="the resolutions must include retrieval sizes near the optimal "
                            "k ∝ n^{2α/(2α+D)} and be selected on held-out data: among k ≤ 16 "
                            f"the risk is {worst_small['risk_ratio_held-out_small_grid']:.0f}× "
                            f"the best ({worst_small['function']}, n = {worst_small['n']}); "
                            "RETGEN's actual resolutions are pattern lengths over tokens, for "
                            "which the paper defines no smoothness α, so this is a reading by "
                            "analogy",
                 unconditional_violation=excess(worst_small, "held-out_small_grid"))
