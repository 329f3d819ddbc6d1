"""``retgen_v2.md`` §6: the experimental results (Tables 6.1 and 6.2).

The paper's numbers are for WikiText-103 (28.4M patterns) and cannot be recomputed; what
can be checked is the RATIOS they claim (memory reduction, search speedup, build
speedup, perplexity gains of reranking and of the learned policy). Two sources:

* a small experiment run by the check itself: our :class:`~retgen_ref.index.FlatIndex`
  vs :class:`~retgen_ref.index.IVFPQIndex` (memory from ``nbytes``, search cost from the
  index's reported counts) — reported as evidence (at small n the √n speedup is
  necessarily smaller, so it is not judged against the paper's 100x);
* ``benchmarks/results/ablation.json``, written by the committed script
  ``benchmarks/bench_ablation.py`` (Austen, 1.31M patterns, the project's LM with each
  v2 component removed in turn): the judged ratios.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ..index import FlatIndex, IVFPQIndex
from .registry import claim, judge
from .retgen_v2_s2 import gaussian_data

ABLATION = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "ablation.json"

# The paper's ratios (Table 6.1: v1 → v2; Table 6.2: the ablations).
PAPER = {"memory_reduction": 42.0 / 5.0,          # v1 flat → v2, 8.4x
         "search_speedup_ivf": 15.0 / 0.15,       # "w/o IVF" → full, 100x
         "build_speedup": 3.0 * 60 / 45.0,        # 3 h → 45 min, 4x
         "ppl_gain_rerank_pct": 100 * (28.1 / 26.7 - 1),   # w/o rerank → full
         "ppl_gain_policy_pct": 100 * (27.5 / 26.7 - 1),   # w/o policy → full
         "ppl_gain_v2_over_v1_pct": 100 * (28.3 / 26.7 - 1)}
FACTOR_ALLOWANCE = 1.0    # log2: a factor 2 for scale and hardware
PPL_ALLOWANCE_PCT = 1.0   # percentage points of perplexity


def _small_scale(rng, fast) -> dict:
    d, n, m, nq = 64, (10_000 if fast else 40_000), 8, 200
    data = gaussian_data(rng, n + nq, d)
    x, q = data[:n], data[n:]
    flat = FlatIndex(d)
    flat.add(x)
    nlist = int(round(np.sqrt(n)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ivfpq = IVFPQIndex(d, nlist, m, 8, seed=0)
        ivfpq.train(x)
        ivfpq.add(x)
    ivfpq.nprobe = 1
    ivfpq.search(q, 10)
    s = ivfpq.last_search_stats
    ivf_ops = s["coarse_distances"] * d + 256 * d + float(np.mean(s["entries_scanned"])) * m
    return {"n": n, "d": d, "m": m, "nlist": nlist,
            "flat_bytes": flat.nbytes, "ivfpq_bytes": ivfpq.nbytes,
            "memory_ratio": flat.nbytes / ivfpq.nbytes,
            "exact_ops": n * d, "ivfpq_ops": ivf_ops, "search_op_ratio": n * d / ivf_ops}


def _measured_from_ablation() -> dict | None:
    if not ABLATION.exists():
        return None
    rows = json.loads(ABLATION.read_text())["rows"]
    full = rows["full v2 (IVF-PQ + rerank + policy)"]
    ppl = lambda name: rows[name]["test_ppl"]  # noqa: E731
    return {"n_patterns": full["n_patterns"],
            "memory_reduction": rows["−PQ (IVF-Flat + rerank + policy)"]["index_bytes"]
            / full["index_bytes"],
            "memory_reduction_vs_v1_hnsw": rows["v1 default: HNSW"]["index_bytes"]
            / full["index_bytes"],
            "search_speedup_ivf": rows["−IVF (PQ scan of every list)"]["search_ms_per_token"]
            / full["search_ms_per_token"],
            "search_speedup_vs_v1_hnsw": rows["v1 default: HNSW"]["search_ms_per_token"]
            / full["search_ms_per_token"],
            "build_speedup": rows["v1 default: HNSW"]["build_s"] / full["build_s"],
            "ppl_gain_rerank_pct": 100 * (ppl("−rerank (IVF-PQ + policy)")
                                          / full["test_ppl"] - 1),
            "ppl_gain_policy_pct": 100 * (ppl("−policy (IVF-PQ + rerank)")
                                          / full["test_ppl"] - 1),
            "ppl_gain_v2_over_v1_pct": 100 * (ppl("v1 default: HNSW") / full["test_ppl"] - 1),
            "ppl_loss_from_pq_pct": 100 * (full["test_ppl"]
                                           / ppl("−PQ (IVF-Flat + rerank + policy)") - 1)}


def _violations(claimed: dict, measured: dict) -> dict:
    """Per row: factor rows log2(claimed/measured) − 1; perplexity rows the shortfall in
    percentage points − 1."""
    out = {}
    for key, value in claimed.items():
        if key not in measured:
            continue
        if key.endswith("_pct"):
            out[key] = (value - measured[key]) - PPL_ALLOWANCE_PCT
        else:
            out[key] = float(np.log2(value / measured[key])) - FACTOR_ALLOWANCE
    return out


@claim("retgen_v2/table6",
       "Tables 6.1/6.2 (WikiText-103): v2 uses 8.4x less memory, searches 100x faster "
       "(vs no IVF), builds 4x faster, and has 5.7% lower perplexity than v1; energy "
       "reranking gains 5.2% perplexity, the learned policy 3.0%.",
       "The ratios, on our corpus at our scale: from benchmarks/results/ablation.json "
       "(Austen, 1.31M patterns, the project's LM; v1 = its default HNSW model, memory "
       "reduction = IVF-Flat vs IVF-PQ bytes, speedup = PQ scan of every list vs nprobe "
       "lists). Allowance: a factor 2 on memory/speed/build ratios (scale, hardware), 1 "
       "percentage point on perplexity gains. A small in-check FlatIndex vs IVFPQIndex "
       "experiment (memory, search operations) is reported as evidence.")
def table6(rng, fast):
    small = _small_scale(rng, fast)
    measured = _measured_from_ablation()
    if measured is None:  # no ablation run: only the small-scale memory ratio is judged
        measured = {"memory_reduction": small["memory_ratio"]}
    rows = _violations(PAPER, measured)
    worst = max(rows, key=rows.get)
    corrected_claims = {  # what our measurements support, as one-sided claims
        "memory_reduction": 8.0, "search_speedup_ivf": 30.0, "build_speedup": 0.25}
    corrected_rows = _violations(corrected_claims, measured)
    for key, (low, high) in {"ppl_gain_rerank_pct": (0.0, 2.0),
                             "ppl_gain_policy_pct": (0.0, 2.0),
                             "ppl_gain_v2_over_v1_pct": (0.0, 3.0)}.items():
        if key in measured:
            corrected_rows[key] = max(low - measured[key], measured[key] - high)
    return judge(
        {"paper": PAPER, "measured": measured, "row_violations": rows,
         "small_scale": small, "ablation_json": ABLATION.exists()},
        rows[worst], 0.0,
        counterexample={"row": worst, "paper": PAPER[worst], "measured": measured[worst]},
        corrected="On Austen (1.31M patterns) the v2 components give: IVF-PQ ≥ 8x less "
                  "index memory than IVF-Flat, search ≥ 30x faster than scanning every "
                  "list, but a build NOT faster than v1 (≥ 0.25x, i.e. up to 4x slower), "
                  "and small perplexity gains: reranking and the policy 0–2% each, v2 "
                  "over v1 0–3% — not the paper's 5.2%, 3.0% and 5.7%.",
        corrected_violation=max(corrected_rows.values()))
