"""``retgen_v2.md`` §6: the experimental results (Tables 6.1 and 6.2), and §10.2's
memory comparison with GPT-3.

The paper's numbers are for WikiText-103 (28.4M patterns) and cannot be rerun; what can
be checked is the paper against itself: each printed improvement against the ratio of
the printed numbers it comes from (interval arithmetic over their last printed digit),
and the tables against the paper's own settings (§4.2's ρ = 32 at d = 384, m = 48,
k_s = 256, §8.3's configuration). Our own :class:`~retgen_ref.index.IVFPQIndex`, built
small inside the check, measures what such an index holds per vector and how many
entries §8.3's nprobe/nlist scans; nothing is read from a file.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..index import IVFPQIndex
from .registry import claim, judge
from .retgen_v2_s2 import gaussian_data
from .retgen_v2_s4 import D, KS_BITS, M, PATTERNS, TABLE_MEMORY_GB, relative_excess

# Tables 6.1/6.2 as printed: (value, half a unit of its last printed digit).
PRINTED = {"memory_v1_gb": (TABLE_MEMORY_GB["v1 flat"], 0.05),
           "memory_v2_gb": (TABLE_MEMORY_GB["v2"], 0.05),
           "search_v1_ms": (15.0, 0.05), "search_v2_ms": (0.15, 0.005),
           "ppl_v1": (28.3, 0.05), "ppl_v2": (26.7, 0.05),
           "build_v1_min": (180.0, 30.0), "build_v2_min": (45.0, 0.5)}  # "3 hours", "45 min"
ABLATION_PPL = {"w/o PQ": 26.5, "w/o IVF": 26.7, "w/o energy rerank": 28.1,
                "w/o learned policy": 27.5}
NLIST, NPROBE = 100, 10      # §8.3's production configuration
GPT3_PARAMETERS = 175e9      # Brown et al. (2020), "Language Models are Few-Shot Learners"
GPT3_BYTES_PER_PARAMETER = 2  # 16-bit weights, as the model was trained and is served


def _interval(f, a: str, b: str) -> tuple[float, float]:
    """The range of ``f(x, y)`` over the printed values' rounding intervals."""
    (x, dx), (y, dy) = PRINTED[a], PRINTED[b]
    values = [f(x + i * dx, y + j * dy) for i in (-1, 1) for j in (-1, 1)]
    return min(values), max(values)


def _index_bytes_per_vector(rng) -> float:
    """Bytes our IVFPQIndex holds per added vector at the paper's settings (d = 384,
    m = 48, 8 bits): the growth of ``nbytes`` over 256 more vectors."""
    x = gaussian_data(rng, 768, D)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = IVFPQIndex(D, 4, M, KS_BITS, seed=0)
        index.train(x[:256])
    index.add(x[256:512])
    before = index.nbytes
    index.add(x[512:])
    return (index.nbytes - before) / 256


def _scanned_fraction(rng) -> float:
    """Entries scanned with §8.3's nprobe = 10 of nlist = 100 over those scanned with all
    100 lists probed, on our IVFPQIndex (20k Gaussian vectors, d = 32)."""
    data = gaussian_data(rng, 20_200, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        index = IVFPQIndex(32, NLIST, 8, 8, seed=0)
        index.train(data[:20_000])
        index.add(data[:20_000])
    scanned = {}
    for nprobe in (NPROBE, NLIST):
        index.nprobe = nprobe
        index.search(data[20_000:], 1)
        scanned[nprobe] = float(np.mean(index.last_search_stats["entries_scanned"]))
    return scanned[NPROBE] / scanned[NLIST]


@claim("retgen_v2/table6",
       "Tables 6.1/6.2 (WikiText-103, 28.4M patterns): v2 needs 5 GB against v1's 42 GB "
       "(8.4x reduction), searches in 0.15 ms against 15 ms (100x), has perplexity 26.7 "
       "against 28.3 (5.7% better) and builds in 45 min against 3 hours (4x faster).",
       "(1) Each printed improvement against the ratio of the printed numbers it comes "
       "from, over their rounding intervals (5.7% = (28.3 − 26.7)/28.3). (2) The v2 memory "
       "against the paper's own settings: 28.4M patterns at Theorem 4.1's d = 384, m = 48, "
       "k_s = 256 (§8.3) in an IVF-PQ index hold 28.4M × the bytes per vector our "
       "IVFPQIndex measures (codes and 8-byte ids), allowing 25% for anything else the "
       "paper's index holds; §4.2 itself says ~1.3 GB. Shown, not judged: Table 6.2's "
       "ablation perplexities and the fraction of entries §8.3's nprobe/nlist = 10/100 "
       "scans, measured on our IVFPQIndex (the tables do not say which nprobe they used).",
       refuted_by=({"memory_reduction": 4.2}, {"search_speedup": 50.0},
                   {"ppl_better_pct": 2.85}, {"build_speedup": 8.0}, {"v2_memory_gb": 10.0}),
       correction_broken_by=({"corrected_v2_memory_gb": 1.3},
                             {"corrected_v2_memory_gb": 0.8}))
def table6(rng, fast, *, memory_reduction=8.4, search_speedup=100.0, ppl_better_pct=5.7,
           build_speedup=4.0, v2_memory_gb=5.0, corrected_v2_memory_gb=1.6):
    ratios = {"memory_reduction": (memory_reduction, 0.05, _interval(
                  lambda a, b: a / b, "memory_v1_gb", "memory_v2_gb")),
              "search_speedup": (search_speedup, 0.5, _interval(
                  lambda a, b: a / b, "search_v1_ms", "search_v2_ms")),
              "ppl_better_pct": (ppl_better_pct, 0.05, _interval(
                  lambda a, b: 100 * (a - b) / a, "ppl_v1", "ppl_v2")),
              "build_speedup": (build_speedup, 0.5, _interval(
                  lambda a, b: a / b, "build_v1_min", "build_v2_min"))}
    # Relative distance between the claimed value's rounding interval and the computed one.
    excess = {k: max(lo - (c + h), (c - h) - hi) / c for k, (c, h, (lo, hi)) in ratios.items()}
    per_vector = _index_bytes_per_vector(rng)
    implied_gb = PATTERNS * per_vector / 1e9
    excess["v2_memory_vs_settings"] = abs(np.log2(v2_memory_gb / implied_gb)) - np.log2(1.25)
    worst = max(excess, key=excess.get)
    ppl_v2 = PRINTED["ppl_v2"][0]
    return judge(
        {"ratios": {k: {"claimed": c, "computed_interval": [lo, hi]}
                    for k, (c, _, (lo, hi)) in ratios.items()},
         "excess": excess, "index_bytes_per_vector": per_vector,
         "implied_v2_memory_gb": implied_gb,
         "section_4_2_memory_gb": 1.3,
         "ablation_ppl_change_pct_when_removed": {
             k: 100 * (v / ppl_v2 - 1) for k, v in ABLATION_PPL.items()},
         "scanned_fraction_nprobe10_of_nlist100": _scanned_fraction(rng)},
        excess[worst], 0.0,
        counterexample={"part": worst, "v2_memory_gb": v2_memory_gb,
                        "implied_by_the_papers_settings_gb": implied_gb,
                        "section_4_2_says_gb": 1.3},
        corrected="The printed ratios are those of the printed numbers, but Table 6's "
                  "5 GB is not what the paper's own PQ gives: 28.4M patterns at d = 384, "
                  "m = 48, k_s = 256 hold 48 code bytes + 8 id bytes each, 1.6 GB "
                  "(§4.2 says ~1.3 GB, the codes alone): a 26× reduction from 42 GB, "
                  "not 8.4×. (Checked: 28.4M × our IVFPQIndex's bytes per vector within "
                  "5% of 1.6 GB.)",
        corrected_violation=abs(implied_gb / corrected_v2_memory_gb - 1) - 0.05)


@claim("retgen_v2/s10-gpt3",
       "§10.2: RETGEN v2 runs on resource-constrained devices: 5GB memory vs 175GB for "
       "GPT-3.",
       "GPT-3 has 175·10⁹ parameters (Brown et al. 2020); its weights take parameters × "
       "bytes per parameter, 2 bytes in the 16-bit format it was trained and is served "
       "in. The claimed GB against that, within 5%; the ratio to v2's 5 GB shown.",
       refuted_by=({"gpt3_gb": 87.5}, {"gpt3_gb": 700.0}),
       correction_broken_by=({"corrected_gb": 175.0}, {"corrected_gb": 700.0}))
def s10_gpt3(rng, fast, *, gpt3_gb=175.0, corrected_gb=350.0):
    weights_gb = GPT3_PARAMETERS * GPT3_BYTES_PER_PARAMETER / 1e9
    excess = relative_excess({"claimed": (weights_gb, gpt3_gb, 0.05),
                              "corrected": (weights_gb, corrected_gb, 0.05)})
    return judge(
        {"gpt3_weights_gb_16bit": weights_gb, "gpt3_weights_gb_8bit": GPT3_PARAMETERS / 1e9,
         "gpt3_weights_gb_32bit": GPT3_PARAMETERS * 4 / 1e9,
         "ratio_to_v2_5gb": {"claimed": gpt3_gb / 5.0, "16bit": weights_gb / 5.0}},
        excess["claimed"], 0.0,
        counterexample={"claimed_gb": gpt3_gb, "gpt3_weights_gb_16bit": weights_gb},
        corrected="GPT-3's 175B parameters take 350 GB as 16-bit weights (700 GB in "
                  "float32); 175 GB is the parameter count read as bytes, true only for "
                  "8-bit weights. The comparison is 5 GB vs 350 GB (70×), not 35×.",
        corrected_violation=excess["corrected"])
