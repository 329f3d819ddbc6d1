"""``retgen.md`` §7: memory of a transformer vs RETGEN (Thm 7.1) and the space-time
Pareto frontier (Thm 7.2).

Bytes are measured on our pattern tables (:class:`~retgen_ref.lm.patterns.PatternTable`,
``nbytes``) and a :class:`~retgen_ref.FlatIndex` of the pattern embeddings.
"""

from __future__ import annotations

import numpy as np

from ..index.flat import FlatIndex
from ..lm.patterns import count_patterns
from .registry import claim, judge, loglog_slope, not_checkable


@claim("retgen/thm7.1",
       "RETGEN stores O(M·(d + ℓ + H)): embeddings 4d bytes, patterns 2ℓ bytes and the "
       "next-token distribution in H bits (entropy coding) per pattern, H its entropy.",
       "Bytes per pattern of our flat index (d = 64) plus pattern table, for M = 200 "
       "patterns whose next-token distributions are exactly uniform on K tokens "
       "(H = log₂ K bits), K = 2…256: the ratio to the proof's own budget "
       "4d + 2ℓ + H/8 bytes must stay bounded as H grows (log-log slope in K ≤ 0.1).")
def thm7_1(rng, fast):
    d, ell, n_ctx = 64, 1, 200
    ks = [2, 8, 32, 128] if fast else [2, 8, 32, 128, 256]
    rows = []
    for K in ks:
        # every context followed by each of K tokens, in a random order (exactly uniform)
        ctx = np.repeat(np.arange(1, n_ctx + 1, dtype=np.int32), 2 * K)
        nxt = (1000 + np.tile(np.arange(K, dtype=np.int32), 2 * n_ctx)).astype(np.int32)
        perm = rng.permutation(len(ctx))
        table = count_patterns(ctx[perm, None], nxt[perm])
        index = FlatIndex(d)
        index.add(rng.standard_normal((len(table), d)).astype(np.float32))
        per_pattern = (table.nbytes + index.nbytes) / len(table)
        H = float(np.log2(K))
        budget = 4 * d + 2 * ell + H / 8
        nnz = len(table.next_tokens)
        rows.append({"K": K, "H_bits": H, "patterns": len(table), "bytes_per_pattern":
                     per_pattern, "paper_budget_bytes": budget, "ratio": per_pattern / budget,
                     "ratio_corrected": (table.nbytes + index.nbytes)
                     / (len(table) * (4 * d + 2 * ell) + nnz * 12)})
    slope = loglog_slope(ks, [r["ratio"] for r in rows], last=3)
    slope_corrected = loglog_slope(ks, [r["ratio_corrected"] for r in rows], last=3)
    worst = rows[-1]
    return judge({"d": d, "ell": ell, "cases": rows, "slope_ratio_vs_K": slope,
                  "slope_corrected_vs_K": slope_corrected},
                 slope, 0.1,  # corrected: int32 token + float64 count = 12 bytes/entry
                 counterexample={k: worst[k] for k in ("K", "H_bits", "bytes_per_pattern",
                                                       "paper_budget_bytes", "ratio")},
                 corrected="S = O(M·(d + ℓ) + Σ_p |supp n(p, ·)|): a next-token "
                           "distribution takes one (token, count) entry per distinct "
                           "continuation (≤ min(n(p), V)), up to 2^H of them — H bits is the "
                           "cost per coded sample, not of storing the distribution.",
                 corrected_violation=slope_corrected)


@claim("retgen/thm7.2",
       "The space-time Pareto frontier is characterized by M* = (c₁·E·L·d² / "
       "(c₂·(d + ℓ + H)))^{1/α}, α the diminishing returns of larger databases, c₁, c₂ "
       "hardware constants.",
       "No reading is checkable: the objective whose Pareto frontier is meant is never "
       "defined, and α, c₁, c₂ are free symbols with no definition or way to measure them.")
def thm7_2(rng, fast):
    return not_checkable(
        "no objective is defined (what is traded against what, and how quality depends on "
        "M), and α, c₁, c₂ are free constants; any M* can be produced by choosing them. "
        "No proof is given. Dimensional note: E·L·d² (training FLOPs per token) is divided "
        "by d + ℓ + H (storage per pattern), a ratio with no stated units.",
        {"free_symbols": ["alpha", "c1", "c2"]})
