"""``retgen_v2.md`` §2: hierarchical IVF indexing and its search complexity (Theorem 2.1).

Checked with the project's own :class:`~retgen_ref.index.IVFFlatIndex`, whose searches
report the two terms of the cost model (``last_search_stats``: coarse distances and the
entries scanned per query).
"""

from __future__ import annotations

import warnings

import numpy as np

from ..index import IVFFlatIndex
from .registry import claim, judge, loglog_slope


def gaussian_data(rng, n: int, d: int) -> np.ndarray:
    """Isotropic Gaussian vectors (k-means lists come out nearly balanced)."""
    return rng.standard_normal((n, d)).astype(np.float32)


def skewed_data(rng, n: int, d: int, clusters: int = 64, zipf: float = 1.5) -> np.ndarray:
    """Tight Gaussian clusters of Zipf-distributed sizes (unbalanced lists)."""
    p = 1.0 / np.arange(1, clusters + 1) ** zipf
    centres = 3.0 * rng.standard_normal((clusters, d))
    labels = rng.choice(clusters, size=n, p=p / p.sum())
    return (centres[labels] + 0.3 * rng.standard_normal((n, d))).astype(np.float32)


def ivf_cost(x: np.ndarray, queries: np.ndarray, nlist: int, nprobe: int) -> dict:
    """Build an IVF-Flat on ``x``; the measured per-query cost in scalar operations,
    ``coarse_distances · d + mean(entries_scanned) · d``, and the list-size statistics."""
    d = x.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = IVFFlatIndex(d, nlist, seed=0)
        index.train(x)
        index.add(x)
    index.nprobe = nprobe
    index.search(queries, 1)
    stats = index.last_search_stats
    scanned = float(np.mean(stats["entries_scanned"]))
    sizes = index.lists.sizes.astype(np.float64)
    n = len(x)
    return {"n": n, "nlist": nlist, "nprobe": nprobe,
            "coarse": int(stats["coarse_distances"]), "scanned": scanned,
            "cost": (stats["coarse_distances"] + scanned) * d,
            "balanced_scanned": nprobe * n / nlist,
            "sum_sizes_sq_over_n": float((sizes ** 2).sum() / n),
            "max_list_over_mean": float(sizes.max() / (n / nlist))}


@claim("retgen_v2/thm2.1",
       "IVF reduces the average search cost from O(nd) to O(kd + (n/k)d'); with k = √n it "
       "is O(√n·d), a √n speedup over brute force.",
       "Cost = scalar operations the search performs, measured from our IVFFlatIndex's "
       "reported counts: coarse distances · d + entries scanned · d (d' = d, no PQ), "
       "nprobe = 1, k = nlist = √n, queries drawn from the data distribution. Checked: "
       "the fitted exponent of cost in n is ≤ 1/2 (+0.1 tolerance for k-means noise over "
       "a 16x range of n), and the fine term is (n/k)d, i.e. entries scanned ≈ n/k, on "
       "isotropic Gaussian data (balanced lists) and on Zipf-sized clusters (unbalanced).")
def thm2_1(rng, fast):
    """Sweep n with nlist = √n; fit the exponent; compare scanned entries with n/k."""
    d = 16
    ns = [2_000, 8_000, 32_000] if fast else [4_000, 16_000, 64_000]
    nq = 300 if fast else 1_000
    rows, exponents = [], {}
    for name, make in (("gaussian", gaussian_data), ("zipf_clusters", skewed_data)):
        data = make(rng, ns[-1] + nq, d)
        costs = []
        for n in ns:
            r = ivf_cost(data[:n], data[ns[-1]:], int(round(np.sqrt(n))), 1)
            r["data"] = name
            r["scanned_over_n_div_k"] = r["scanned"] / r["balanced_scanned"]
            r["scanned_over_sum_sq"] = r["scanned"] / r["sum_sizes_sq_over_n"]
            rows.append(r)
            costs.append(r["cost"])
        exponents[name] = loglog_slope(ns, costs)
    # The O(·) reading: exponent ≤ 1/2. The fine-term reading: scanned ≈ n/k (within 2x).
    exp_violation = max(e - 0.5 for e in exponents.values())
    ratio_violation = max(np.log2(r["scanned_over_n_div_k"]) for r in rows) - 1.0
    worst = max(rows, key=lambda r: r["scanned_over_n_div_k"])
    return judge(
        {"cases": rows, "cost_exponent": exponents,
         "note": "tolerance 0.1 on the exponent; the fine term is allowed a factor 2 "
                 "over n/k (log2 ratio − 1 ≤ 0.1)"},
        max(exp_violation, ratio_violation), 0.1,
        counterexample={k: worst[k] for k in ("data", "n", "nlist", "scanned",
                                               "balanced_scanned", "sum_sizes_sq_over_n")},
        corrected="Per probed list a query scans on average Σ_l |L_l|² / n entries (queries "
                  "fall into list l with probability |L_l|/n), not n/k; the cost is "
                  "kd + nprobe·(Σ|L_l|²/n)·d', which equals kd + nprobe·(n/k)d' only for "
                  "balanced lists. (Checked: scanned / (Σ|L|²/n) within a factor 2^0.1.)",
        corrected_violation=max(abs(np.log2(r["scanned_over_sum_sq"])) for r in rows),
        conditions="balanced inverted lists (|L_l| ≈ n/k); the real fine cost is "
                   "Σ|L_l|²/n per probe, measured here to stay within 2x of n/k",
        holds_without_conditions=False)
