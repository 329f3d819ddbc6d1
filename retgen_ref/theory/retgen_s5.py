"""``retgen.md`` §5: training-time complexity of a transformer (Thm 5.1), of RETGEN's
indexing (Thm 5.2) and their comparison (Cor 5.1).

O(·) claims are read as upper bounds whose ratio to the measured operation count must stay
bounded: the counts come from a NumPy transformer forward pass that counts the
multiply-adds of every matmul it executes, from our HNSW's distance counters and from
our pattern tables. Growth is judged by log-log slopes of measured/claimed over sweeps.
"""

from __future__ import annotations

import math

import numpy as np

from ..index.hnsw import HNSWIndex
from .registry import claim, judge, loglog_slope


def transformer_flops(rng, n: int, d: int, L: int, cache_len: int | None = None) -> int:
    """Multiply-add count of an L-layer transformer forward pass on ``n`` query tokens
    attending to ``cache_len`` (default ``n``) keys, counted while actually computing it."""
    ops = 0

    def mm(a, b):
        nonlocal ops
        ops += a.shape[0] * a.shape[1] * b.shape[1]
        return a @ b

    keys = n if cache_len is None else cache_len
    x = rng.standard_normal((n, d)) / math.sqrt(d)
    ctx = rng.standard_normal((keys, d)) / math.sqrt(d)
    for _ in range(L):
        w = rng.standard_normal((d, d)) / math.sqrt(d)
        q, k, v = mm(x, w), mm(ctx, w), mm(ctx, w)
        s = mm(q, k.T) / math.sqrt(d)
        a = np.exp(s - s.max(axis=1, keepdims=True))
        a /= a.sum(axis=1, keepdims=True)
        x = x + mm(mm(a, v), w)
        w1 = rng.standard_normal((d, 4 * d)) / math.sqrt(d)
        x = x + mm(np.maximum(mm(x, w1), 0), w1.T) / 4
    return ops


def hnsw_distance_counts(rng, sizes, d: int = 32, ef: int = 40, n_queries: int = 200):
    """Mean distance computations per HNSW search with ``ef_search = ef_construction``
    (the work of one insertion) for databases of the given sizes."""
    data = rng.standard_normal((max(sizes) + n_queries, d)).astype(np.float32)
    out = []
    for size in sizes:
        index = HNSWIndex(d, M=16, ef_construction=ef, seed=0)
        index.add(data[:size])
        index.ef_search = ef
        index.search(data[-n_queries:], 10)
        out.append(float(np.mean(index.last_search_stats["distances"])))
    return out


@claim("retgen/thm5.1",
       "Training an L-layer, width-d transformer on N samples of length n for E epochs costs "
       "O(N·E·n·(L·n·d² + L·d³)); the proof: per sample O(L n² d + L n d²), "
       "≈ O(L n d²) for n ≪ d.",
       "An upper bound: the multiply-adds of a forward pass (backward = constant factor), "
       "counted while computing it, divided by n·(L n d² + L d³) must not grow along "
       "sweeps of n (d fixed) and of d (n fixed). Also measured: the proof's total "
       "L·n·d², whose ratio grows with n when n > d.")
def thm5_1(rng, fast):
    L = 2
    ns = [16, 32, 64, 128] if fast else [16, 32, 64, 128, 256, 512]
    ds = [16, 32, 64] if fast else [16, 32, 64, 128]
    by_n = [transformer_flops(rng, n, 16, L) for n in ns]
    by_d = [transformer_flops(rng, 32, d, L) for d in ds]
    claimed_n = [n * (L * n * 16 ** 2 + L * 16 ** 3) for n in ns]
    claimed_d = [32 * (L * 32 * d ** 2 + L * d ** 3) for d in ds]
    r_n = [f / c for f, c in zip(by_n, claimed_n)]
    r_d = [f / c for f, c in zip(by_d, claimed_d)]
    proof_ratio = [f / (L * n * 16 ** 2) for f, n in zip(by_n, ns)]
    slopes = {"ratio_vs_n": loglog_slope(ns, r_n, last=3), "ratio_vs_d": loglog_slope(ds, r_d, last=3),
              "proof_total_ratio_vs_n_at_d16": loglog_slope(ns, proof_ratio, last=3)}
    # a growth exponent above 0.1 over a doubling sweep would mean the bound is not O(·)
    violation = max(slopes["ratio_vs_n"], slopes["ratio_vs_d"])
    return judge({"L": L, "ns": ns, "flops_by_n_at_d16": by_n, "ds": ds,
                  "flops_by_d_at_n32": by_d, "ratio_measured_over_claimed_n": r_n,
                  "ratio_measured_over_claimed_d": r_d, "slopes": slopes,
                  "note": "the stated bound holds but is loose by a factor ~n·d/(n+d); the "
                          "proof's simplified total L·n·d² needs n ≲ d (its ratio grows "
                          "like n/d)"},
                 violation, 0.1)


@claim("retgen/thm5.2",
       "Indexing N patterns of length ℓ with d-dim embeddings into a database of size M "
       "costs O(N·ℓ·d + N·ℓ·log M); HNSW construction O(N·ℓ·log M) amortized.",
       "Per inserted pattern: the positional embedding costs ℓ·(d/ℓ) = d multiply-adds "
       "(exact); an exact (flat / hash-table) insert copies d floats. For HNSW, one "
       "insertion is a search with ef = ef_construction whose distance computations we "
       "count, each costing d: measured per-insert work = d·dist(M) compared with "
       "ℓ·(d + log₂ M) over a sweep of M at d = 32.")
def thm5_2(rng, fast):
    sizes = [500, 1_500, 4_500] if fast else [500, 2_000, 8_000, 32_000]
    d, ell = 32, 2
    dist = hnsw_distance_counts(rng, sizes, d=d)
    hnsw_ratio = [d * c / (ell * (d + math.log2(m))) for c, m in zip(dist, sizes)]
    # exact index: embedding + copy = ℓ·(d/ℓ) + d = 2d per pattern, ratio 2d / ℓ(d + log M)
    flat_ratio = [2 * d / (ell * (d + math.log2(m))) for m in sizes]
    violation = loglog_slope(sizes, flat_ratio, last=3)
    return judge({"M": sizes, "d": d, "ell": ell, "hnsw_distances_per_insert": dist,
                  "hnsw_work_over_claim": hnsw_ratio, "flat_work_over_claim": flat_ratio,
                  "hnsw_ratio_slope_vs_M": loglog_slope(sizes, hnsw_ratio, last=3),
                  "note": "HNSW insertion work is d × (number of distance computations), "
                          "a product d·c(M) ≈ d·ef·degree, not d + log M: the additive "
                          "form only holds up to a factor ~ef·degree/ℓ that the O(·) hides"},
                 violation, 0.1,
                 conditions="exact/hash-table indexing; for HNSW the insertion cost is "
                            "O(d · #distances) = O(d · ef_construction · log M), "
                            "multiplicative in d and log M, which O(ℓ(d + log M)) covers "
                            "only when the ef·degree factor is treated as a constant",
                 holds_without_conditions=False)


@claim("retgen/cor5.1",
       "RETGEN training is faster when d + log M < E·L·d²; for E=3, L=12, d=768, M=10⁹: "
       "768 + 30 = 798 vs 3·12·768² ≈ 2.1·10⁷.",
       "Arithmetic of the example (log base 2), and whether the condition is what Thm 5.1's "
       "proof total N·E·L·n·d² and Thm 5.2's N·ℓ·(d + log M) give: the ratio of the two "
       "formulas on a grid of (n, ℓ), equal to the ratio of the corollary's sides exactly "
       "when ℓ = n.")
def cor5_1(rng, fast):
    E, L, d, M = 3, 12, 768, 1e9
    left, right = d + math.log2(M), E * L * d ** 2
    # the paper's numbers are rounded: 798 to units, 2.1·10⁷ to two significant digits;
    # arith > 0 means a printed value is off by more than its last digit's half-unit
    arith = max(abs(left - 798) - 0.5, abs(right - 2.1e7) - 0.05e7)
    cases, worst_equal = [], 0.0
    for n in (128, 512, 2048):
        for ell in (4, 128, 512, 2048):
            ratio_thm = (E * L * n * d ** 2) / (ell * (d + math.log2(M)))
            ratio_cor = right / left
            cases.append({"n": n, "ell": ell, "thm_ratio": ratio_thm, "cor_ratio": ratio_cor})
            if ell == n:
                worst_equal = max(worst_equal, abs(ratio_thm / ratio_cor - 1))
    violation = max(arith, worst_equal)
    return judge({"left": left, "right": right, "speedup_right_over_left": right / left,
                  "arith_excess_over_rounding": arith, "cases": cases},
                 violation, 1e-9,
                 conditions="the corollary compares the theorems' formulas only when the "
                            "pattern length ℓ equals the sequence length n and both O(·) "
                            "constants are equal (otherwise the factor n/ℓ enters); the "
                            "example's conclusion (≈2.7·10⁴× faster) survives any ℓ ≤ n",
                 holds_without_conditions=False)
