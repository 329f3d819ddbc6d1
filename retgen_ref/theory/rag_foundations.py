"""``rag_math_foundations.md``: similarity measures, attention, perplexity, TF-IDF, BM25,
product quantization and its memory formula, LSH, MRR and NDCG.

Checked with the project's own code where the claim is about it
(:func:`~retgen_ref.attention.softmax_attention`, :class:`~retgen_ref.index.FlatIndex`,
:class:`~retgen_ref.pq.ProductQuantizer`, :class:`~retgen_ref.index.lsh.LSHIndex`, and
:mod:`retgen_ref.rag`: ``mrr``, ``ndcg_at_k``, ``term_matrix`` and ``BM25Retriever.idf``).
The few formulas below stay private where a check needs what the library does not give:
the unguarded cosine, raw (unnormalised) TF-IDF, the classic BM25 IDF, the BM25 term as a
function of (IDF, f, |d|/avgdl), and DCG itself.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..attention import multi_head_attention, softmax_attention
from ..index import FlatIndex
from ..index.lsh import LSHIndex
from ..pq import ProductQuantizer
from ..rag import BM25Retriever, ndcg_at_k, term_matrix
from ..rag import mrr as mean_reciprocal_rank
from .registry import claim, judge


# -- the note's formulas, written out where the library has no equivalent -------------
def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a·b / (‖a‖ ‖b‖)`` row-wise."""
    # private: the check needs the unguarded formula (0/0 = nan for a zero vector)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _tfidf(counts: np.ndarray) -> np.ndarray:
    """``tf(t,d)·idf(t,D)`` with ``tf = f_{t,d} / Σ_t' f_{t',d}`` and
    ``idf = log(|D| / |{d : t ∈ d}|)``; ``counts`` is ``(n_docs, n_terms)``."""
    # private: TfidfRetriever only gives cosine-normalised vectors and drops df = 0 terms
    tf = counts / counts.sum(axis=1, keepdims=True)
    df = (counts > 0).sum(axis=0)
    with np.errstate(divide="ignore"):
        idf = np.log(len(counts) / df)
    with np.errstate(invalid="ignore"):
        return tf * idf


def _bm25_idf_classic(n_docs: int, df) -> np.ndarray:
    """Robertson–Spärck Jones IDF ``log((N − n + 0.5) / (n + 0.5))``."""
    # private: the refuted IDF; the library only has the corrected one (BM25Retriever.idf)
    df = np.asarray(df, dtype=np.float64)
    return np.log((n_docs - df + 0.5) / (df + 0.5))


def _bm25_library_idf(n_docs: int, df) -> np.ndarray:
    """:meth:`BM25Retriever.idf` (``log(1 + (N − n + 0.5) / (n + 0.5))``) of a corpus of
    ``n_docs`` documents in which term ``t`` occurs in exactly ``df[t]`` of them."""
    df = np.asarray(df)
    docs = [np.nonzero(df > i)[0] for i in range(n_docs)]      # term t in docs 0..df[t]-1
    return BM25Retriever().fit(docs, len(df)).idf()


def _bm25_term(idf, f, doc_len, avgdl, k1=1.2, b=0.75):
    """One query term's BM25 contribution
    ``IDF · f (k1 + 1) / (f + k1 (1 − b + b |d| / avgdl))``."""
    # private: evaluated on a grid of (IDF, f, |d|/avgdl); BM25Retriever only scores a corpus
    f = np.asarray(f, dtype=np.float64)
    return idf * f * (k1 + 1) / (f + k1 * (1 - b + b * doc_len / avgdl))


def _dcg(rel, k: int) -> float:
    """``DCG@k = Σ_{i=1..k} (2^{rel_i} − 1) / log2(i + 1)``."""
    # private: ndcg_at_k keeps DCG internal (and maps IDCG = 0 to 0); the checks need DCG
    rel = np.asarray(rel, dtype=np.float64)[:k]
    return float(((2.0 ** rel - 1) / np.log2(np.arange(2, len(rel) + 2))).sum())


def _first_relevant_at(ranks) -> tuple[np.ndarray, list]:
    """Ranked id lists and judgements whose first relevant id is at each 1-based rank
    (``None``: no relevant id), the input :func:`retgen_ref.rag.mrr` takes."""
    width = max([r for r in ranks if r is not None], default=1)
    return (np.tile(np.arange(width), (len(ranks), 1)),
            [set() if r is None else {r - 1} for r in ranks])


def _mrr_of_ranks(ranks) -> float:
    return mean_reciprocal_rank(*_first_relevant_at(ranks))


# -- claims -----------------------------------------------------------------------------
@claim("rag_math_foundations/cosine",
       "cos(a, b) = a·b / (‖a‖‖b‖) ranges over [−1, 1]: 1 = same direction, 0 = orthogonal, "
       "−1 = opposite.",
       "Random pairs in several dimensions plus constructed parallel (a, c·a, c > 0), "
       "antiparallel (c < 0) and orthogonal pairs; also the zero vector, where the formula "
       "divides by 0.")
def cosine(rng, fast):
    n = 20_000 if fast else 200_000
    worst, rows = 0.0, []
    for d in (2, 16, 384):
        a, b = rng.standard_normal((2, n // 10, d))
        c = _cosine(a, b)
        scale = np.exp(rng.uniform(-3, 3, size=(n // 10, 1)))
        par, anti = _cosine(a, scale * a), _cosine(a, -scale * a)
        b_orth = b - ((a * b).sum(-1) / (a * a).sum(-1))[:, None] * a
        orth = _cosine(a, b_orth)
        v = max(float(np.abs(c).max() - 1), float(np.abs(par - 1).max()),
                float(np.abs(anti + 1).max()), float(np.abs(orth).max()))
        worst = max(worst, v)
        rows.append({"d": d, "max_abs_cos_random": float(np.abs(c).max()),
                     "max_dev_parallel": float(np.abs(par - 1).max()),
                     "max_dev_antiparallel": float(np.abs(anti + 1).max()),
                     "max_abs_orthogonal": float(np.abs(orth).max())})
    with np.errstate(invalid="ignore", divide="ignore"):
        zero = float(_cosine(np.zeros(4), np.ones(4)))
    return judge({"cases": rows, "cos_of_zero_vector": zero}, worst, 1e-12,
                 conditions="a ≠ 0 and b ≠ 0 (for a zero vector the formula is 0/0, "
                            "measured as nan)",
                 holds_without_conditions=bool(np.isfinite(zero)))


@claim("rag_math_foundations/euclidean-similarity",
       "d(a, b) = √Σ(a_i − b_i)², and similarity = 1/(1 + d) is an alternative measure.",
       "1/(1+d) ∈ (0, 1], = 1 iff a = b, strictly decreasing in d, so ranking by it is "
       "the Euclidean nearest-neighbour ranking (FlatIndex 'l2', float32, so similarities "
       "per rank compared to 1e-6); for unit vectors "
       "‖a − b‖² = 2 − 2 cos(a, b), so it ranks like cosine on unit vectors only (the "
       "disagreement rate on non-unit data is reported).")
def euclidean_similarity(rng, fast):
    n, nq, d = (2_000, 20, 32) if fast else (20_000, 50, 32)
    x = (rng.standard_normal((n, d)) * np.exp(rng.uniform(-1, 1, (n, 1)))).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    dist = np.sqrt(((q64[:, None, :] - x64[None]) ** 2).sum(-1))
    sim = 1 / (1 + dist)
    index = FlatIndex(d, "l2")
    index.add(x)
    _, I = index.search(q, 10)
    by_sim = np.argsort(-sim, axis=1, kind="stable")[:, :10]
    rank_agreement = float((I == by_sim).mean())
    # FlatIndex ranks in float32: compare the similarities at each rank, not the ids
    rank_gap = float(np.abs(np.take_along_axis(sim, I, 1)
                            - np.take_along_axis(sim, by_sim, 1)).max())
    range_violation = max(float(sim.max() - 1), float(-sim.min()), 0.0)
    self_sim = 1 / (1 + np.sqrt(((x64[:100] - x64[:100]) ** 2).sum(-1)))
    # unit vectors: ‖a − b‖² = 2 − 2cos
    u = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
    qu = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    identity = float(np.abs(((qu[:, None] - u[None]) ** 2).sum(-1) - (2 - 2 * qu @ u.T)).max())
    cos_top = np.argmax(_cosine(q64[:, None, :], x64[None]), axis=1)
    disagree = float((cos_top != np.argmax(sim, axis=1)).mean())
    violation = max(range_violation, float(np.abs(self_sim - 1).max()), identity, rank_gap)
    return judge({"similarity_range": [float(sim.min()), float(sim.max())],
                  "top10_id_agreement_with_FlatIndex_l2": rank_agreement,
                  "top10_similarity_gap_vs_FlatIndex_l2": rank_gap,
                  "unit_vector_identity_max_error": identity,
                  "top1_disagreement_with_cosine_non_unit": disagree},
                 violation, 1e-6)   # FlatIndex stores float32: similarities agree to ~1e-7


@claim("rag_math_foundations/attention",
       "Attention(Q, K, V) = softmax(QKᵀ/√d_k) V; MultiHead = Concat(head_1..head_h) W^O "
       "with head_i = Attention(QW_i^Q, KW_i^K, VW_i^V); the 1/√d_k factor is the scaling.",
       "The project's softmax_attention and multi_head_attention equal the note's formulas "
       "computed naively (per-head loops); every weight row sums to 1, so outputs lie in "
       "the convex hull of V; with unit-variance q, k the scaled score q·k/√d_k has "
       "variance 1 for every d_k (Monte Carlo, 6 standard errors).")
def attention(rng, fast):
    worst, rows = 0.0, []
    for d_model, h in ((16, 2), (64, 8)):
        X = rng.standard_normal((12, d_model))
        Y = rng.standard_normal((20, d_model))
        dk = d_model // h
        Wq, Wk, Wv = rng.standard_normal((3, h, d_model, dk)) / np.sqrt(d_model)
        Wo = rng.standard_normal((h * dk, d_model)) / np.sqrt(d_model)

        def naive(Q, K, V):
            S = Q @ K.T / np.sqrt(Q.shape[1])
            P = np.exp(S - S.max(1, keepdims=True))
            return P / P.sum(1, keepdims=True) @ V, P / P.sum(1, keepdims=True)

        heads = [naive(X @ Wq[i], Y @ Wk[i], Y @ Wv[i])[0] for i in range(h)]
        ref = np.concatenate(heads, axis=1) @ Wo
        ours = multi_head_attention(X, Y, np.concatenate(list(Wq), 1),
                                    np.concatenate(list(Wk), 1), np.concatenate(list(Wv), 1),
                                    Wo, h)
        single, P = naive(X, Y, Y)
        e_single = float(np.abs(softmax_attention(X, Y, Y) - single).max())
        e_multi = float(np.abs(ours - ref).max())
        e_rows = float(np.abs(P.sum(1) - 1).max())
        worst = max(worst, e_single, e_multi, e_rows)
        rows.append({"d_model": d_model, "heads": h, "single_head_max_error": e_single,
                     "multi_head_max_error": e_multi, "row_sum_max_error": e_rows})
    n = 20_000 if fast else 40_000
    var_rows, var_excess = [], 0.0
    for dk in (4, 64, 512):
        q, k = rng.standard_normal((2, n, dk))
        s = (q * k).sum(1) / np.sqrt(dk)
        var = float(s.var())
        se = float(np.sqrt(((s ** 2 - var) ** 2).mean() / n))
        var_excess = max(var_excess, abs(var - 1) - 6 * se)   # > 0: outside 6 SE
        var_rows.append({"d_k": dk, "scaled_score_variance": var, "standard_error": se})
    return judge({"formula_cases": rows, "score_variance": var_rows,
                  "variance_excess_beyond_6se": var_excess},
                 max(worst, var_excess), 1e-10)


@claim("rag_math_foundations/perplexity",
       "Perplexity = exp(−(1/N) Σ log P(w_i | w_<i)), the exponentiated cross-entropy "
       "L = −Σ_i Σ_j y_ij log ŷ_ij; lower is better.",
       "Random categorical models over V tokens scoring sampled sequences: PPL = exp(L/N) "
       "with one-hot y; the note's L is a SUM over positions, so exp(L) = PPL^N; "
       "1 ≤ PPL, PPL = V for the uniform model, PPL = 1 only for a model certain of every "
       "token; and the true distribution has lower expected perplexity than any other "
       "(Gibbs: cross-entropy ≥ entropy).")
def perplexity(rng, fast):
    V, N = 50, (2_000 if fast else 20_000)
    cases, worst = [], 0.0
    p_true = rng.dirichlet(np.full(V, 0.3))
    w = rng.choice(V, size=N, p=p_true)
    y = np.eye(V)[w]
    models = {"true": p_true, "uniform": np.full(V, 1 / V),
              "perturbed": rng.dirichlet(np.full(V, 0.3))}
    for name, p in models.items():
        logp = np.log(p[w])
        ppl = math.exp(-logp.mean())
        L = float(-(y * np.log(p)).sum())           # the note's summed cross-entropy
        worst = max(worst, abs(ppl - math.exp(L / N)) / ppl, max(0.0, 1 - ppl))
        cases.append({"model": name, "perplexity": ppl, "exp_L_over_N": math.exp(L / N),
                      "L_sum": L, "log_of_exp_L": L, "N_log_PPL": N * math.log(ppl)})
    worst = max(worst, abs(cases[1]["perplexity"] - V) / V)
    # Gibbs: expected log-loss is minimised by the true distribution (exact, not sampled)
    ent = float(-(p_true * np.log(p_true)).sum())
    ce = {k: float(-(p_true * np.log(p)).sum()) for k, p in models.items()}
    worst = max(worst, max(0.0, ent - min(ce.values())))
    certain = math.exp(-np.log(np.ones(N)).mean())
    worst = max(worst, abs(certain - 1))
    return judge({"cases": cases, "expected_log_perplexity": ce, "entropy": ent,
                  "certain_model_ppl": certain}, worst, 1e-9,
                 conditions="cross-entropy read PER TOKEN (L/N) with one-hot targets y; the "
                            "note's L sums over the N positions, and exp(L) = PPL^N",
                 holds_without_conditions=False)


@claim("rag_math_foundations/tfidf",
       "TF-IDF(t, d, D) = tf(t, d)·idf(t, D), tf = f_{t,d}/Σ_t' f_{t',d}, "
       "idf = log(|D| / |{d ∈ D : t ∈ d}|).",
       "On a Zipf-distributed synthetic corpus: tf sums to 1 per document; idf ≥ 0 and "
       "decreasing in document frequency; a term in every document gets 0; TF-IDF ≥ 0 "
       "and finite. The query-side case of a term in no document (df = 0) is tested too.")
def tfidf(rng, fast):
    n_docs, n_terms = (200, 500) if fast else (1_000, 2_000)
    p = 1 / np.arange(1, n_terms + 1) ** 1.1
    lengths = rng.integers(20, 200, size=n_docs)
    docs = [rng.choice(n_terms, size=n, p=p / p.sum()) for n in lengths]
    counts = term_matrix(docs, n_terms).toarray()
    counts[:, 0] = np.maximum(counts[:, 0], 1)        # a term in every document
    counts[:, -1] = 0                                 # a term in no document
    tf = counts / counts.sum(axis=1, keepdims=True)
    scores = _tfidf(counts)
    df = (counts > 0).sum(axis=0)
    seen = df > 0                                     # the terms that occur somewhere
    idf = np.log(n_docs / df[seen])
    order = np.argsort(df[seen])
    monotone = float(max(0.0, np.diff(idf[order]).max()))
    finite = scores[:, seen]
    violation = max(float(abs(tf.sum(1) - 1).max()),
                    float(max(0.0, -finite.min())), monotone,
                    float(np.abs(scores[:, 0]).max()), float(not np.isfinite(finite).all()))
    unseen = scores[:, -1]
    return judge({"n_docs": n_docs, "min_tfidf": float(finite.min()),
                  "max_tfidf": float(finite.max()), "idf_everywhere_term": float(idf[0]),
                  "idf_range": [float(idf.min()), float(idf.max())],
                  "unseen_term_score_is_finite": bool(np.isfinite(unseen).all()),
                  "unseen_term_idf": "log(|D|/0) = inf"},
                 violation, 1e-12,
                 conditions="idf is only defined for terms that occur in at least one "
                            "document (df ≥ 1); a query term absent from D gives log(|D|/0) "
                            "= ∞ (smoothed variants such as log(|D|/(1+df)) avoid it)",
                 holds_without_conditions=bool(np.isfinite(unseen).all()))


@claim("rag_math_foundations/bm25",
       "BM25(q, d) = Σ_i IDF(q_i)·f(q_i,d)(k1+1) / (f(q_i,d) + k1(1 − b + b|d|/avgdl)).",
       "IDF is not defined by the note; the classic Robertson–Spärck Jones "
       "IDF = log((N − n + 0.5)/(n + 0.5)) is tested. A ranking function should reward "
       "matching a query term: each term's contribution ≥ 0, non-decreasing in f and "
       "saturating at IDF·(k1+1); b = 0 ignores length, b > 0 lowers the score of longer "
       "documents. Grid: N = 1000, df = 1..1000, f = 0..200, |d|/avgdl ∈ [0.25, 4].")
def bm25(rng, fast):
    N, k1, b = 1_000, 1.2, 0.75
    df = np.arange(1, N + 1)
    f = np.arange(0, 201, dtype=float)
    ratios = np.array([0.25, 0.5, 1, 2, 4])
    worst_excess, worst_at = 0.0, None
    for idf_fn in (_bm25_idf_classic,):
        idf = idf_fn(N, df)
        for r in ratios:
            c = _bm25_term(idf[:, None], f[None], r, 1.0, k1, b)       # (df, f)
            neg = float(-c.min())
            dec = float(-np.diff(c, axis=1).min())
            if max(neg, dec) > worst_excess:
                i = int(np.unravel_index(np.argmin(c), c.shape)[0])
                worst_excess, worst_at = max(neg, dec), {"df": int(df[i]), "ratio": float(r)}

    def properties(idf):
        ex = 0.0
        for r in ratios:
            c = _bm25_term(idf[:, None], f[None], r, 1.0, k1, b)
            ex = max(ex, float(-c.min()), float(-np.diff(c, axis=1).min()),
                     float((c - idf[:, None] * (k1 + 1)).max()))
        # length normalisation: longer docs score lower for b > 0, equal for b = 0
        c_len = _bm25_term(idf[:, None], 3.0, ratios[None], 1.0, k1, b)
        ex = max(ex, float(np.diff(c_len, axis=1).max()))
        c_b0 = _bm25_term(idf[:, None], 3.0, ratios[None], 1.0, k1, 0.0)
        ex = max(ex, float(np.ptp(c_b0, axis=1).max()))
        return ex

    cx_df = 700
    idf700 = float(_bm25_idf_classic(N, cx_df))
    with_term = float(_bm25_term(idf700, 5, 1.0, 1.0, k1, b))
    saturation = float(_bm25_term(1.0, 1e9, 1.0, 1.0, k1, b))
    return judge(
        {"k1": k1, "b": b, "N": N, "classic_idf_df1": float(_bm25_idf_classic(N, 1)),
         "classic_idf_df500": float(_bm25_idf_classic(N, 500)),
         "classic_idf_df999": float(_bm25_idf_classic(N, 999)),
         "contribution_limit_f_to_inf_per_unit_idf": saturation,
         "worst_case": worst_at},
        worst_excess, 1e-12,
        counterexample={"N": N, "df": cx_df, "classic_idf": idf700, "f": 5, "len_over_avgdl": 1,
                        "score_doc_with_term_5_times": with_term,
                        "score_doc_without_term": 0.0},
        corrected="With IDF = log(1 + (N − n + 0.5)/(n + 0.5)) (Lucene/BM25+ style, > 0 for "
                  "every n ≤ N) each term's contribution is ≥ 0, non-decreasing in f, bounded "
                  "by IDF·(k1 + 1) (saturation), decreasing in |d|/avgdl for b > 0 and "
                  "length-independent for b = 0. The classic IDF is negative when the term is "
                  "in more than half the documents (n > N/2), and then matching it LOWERS "
                  "the score.",
        corrected_violation=properties(_bm25_library_idf(N, df)))


@claim("rag_math_foundations/pq",
       "x = [u_1, …, u_m]; q(u_j) = argmin_{c ∈ C_j} ‖u_j − c‖²; x̂ = [q(u_1), …, q(u_m)].",
       "The project's ProductQuantizer encode/decode equals the per-subvector argmin over "
       "its codebooks (brute force, float64, ties within 1e-5 allowed), and x̂ is the "
       "nearest point to x among ALL k^m product codewords (brute force for m = 2, k = 16).")
def pq(rng, fast):
    n = 500 if fast else 3_000
    worst, rows = 0.0, []
    for d, m, nbits in ((8, 2, 4), (32, 4, 6), (64, 8, 8)):
        x = rng.standard_normal((n + (800 if fast else 2_000), d)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant = ProductQuantizer(d, m, nbits, seed=int(rng.integers(1 << 30))).fit(x[n:])
        xs = x[:n].astype(np.float64)
        cb = quant.codebooks_.astype(np.float64)               # (m, k, dsub)
        codes = quant.encode(x[:n])
        dsub = d // m
        excess = 0.0
        for j in range(m):
            u = xs[:, j * dsub:(j + 1) * dsub]
            dist = ((u[:, None, :] - cb[j][None]) ** 2).sum(-1)
            chosen = dist[np.arange(n), codes[:, j]]
            excess = max(excess, float((chosen - dist.min(1)).max()))
        decode_err = float(np.abs(quant.decode(codes) - cb[np.arange(m), codes].reshape(n, d)).max())
        row = {"d": d, "m": m, "k": 2 ** nbits, "argmin_excess": excess,
               "decode_max_error": decode_err}
        if m == 2:
            full = np.concatenate(np.broadcast_arrays(cb[0][:, None, :], cb[1][None, :, :]),
                                  axis=2).reshape(-1, d)
            dist = ((xs[:, None, :] - full[None]) ** 2).sum(-1)
            xhat = quant.decode(codes).astype(np.float64)
            row["product_codebook_excess"] = float((((xs - xhat) ** 2).sum(1) - dist.min(1)).max())
            excess = max(excess, row["product_codebook_excess"])
        worst = max(worst, excess - 1e-5, decode_err - 1e-6)
        rows.append(row)
    return judge({"cases": rows}, max(worst, 0.0), 1e-12)


@claim("rag_math_foundations/pq-memory",
       "Memory = N × ((d/m)·log2 k + m·k·(d/m)) for N PQ-coded vectors of dimension d.",
       "Units are not given; read most favourably: the first term in bits per vector, the "
       "codebook term in entries, counted either as 32-bit floats or as 1 unit each (the "
       "reading closer to the measurement is used). Measured: bytes of the codes our "
       "ProductQuantizer emits (packed) for N vectors plus its codebooks' bytes (float32), "
       "×8 bits; violation = relative error.")
def pq_memory(rng, fast):
    N = 20_000 if fast else 100_000
    cases, worst, worst_case, corr = [], 0.0, None, 0.0
    for d, m, nbits in ((64, 8, 8), (128, 8, 8), (96, 24, 4), (384, 48, 8)):
        x = rng.standard_normal((512, d)).astype(np.float32)  # sizes only: a short fit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant = ProductQuantizer(d, m, nbits, seed=0).fit(x)
        code_bytes = quant.pack_codes(quant.encode(x[:10])).shape[1]
        measured_bits = 8 * (N * code_bytes + quant.codebooks_.astype(np.float32).nbytes)
        k = 2 ** nbits
        readings = [N * (d / m * nbits + 32 * m * k * d / m), N * (d / m * nbits + m * k * d / m)]
        errs = [abs(r - measured_bits) / measured_bits for r in readings]
        corrected = N * math.ceil(m * nbits / 8) * 8 + 32 * k * d
        c_err = abs(corrected - measured_bits) / measured_bits
        corr = max(corr, c_err)
        row = {"N": N, "d": d, "m": m, "k": k, "measured_bits": measured_bits,
               "note_bits_float32_codebook": readings[0], "note_bits_unit_codebook": readings[1],
               "relative_error": min(errs), "corrected_bits": corrected}
        if min(errs) > worst:
            worst, worst_case = min(errs), row
        cases.append(row)
    return judge({"cases": cases}, worst, 1e-9, counterexample=worst_case,
                 corrected="Memory (bits) = N·⌈m·log2 k / 8⌉·8 (m codes of log2 k bits per "
                           "vector, byte-packed) + 32·k·d (the m codebooks of k centroids of "
                           "d/m float32 each, stored ONCE, not per vector) ≈ N·m·log2 k + "
                           "32·k·d. The note has d/m codes per vector instead of m, and "
                           "multiplies the codebook by N.",
                 corrected_violation=corr)


@claim("rag_math_foundations/lsh",
       "LSH for approximate nearest-neighbour search: h(v) = sign(a·v + b), a a random "
       "vector, b a random scalar.",
       "a ~ N(0, I_d) and b ~ N(0, σ²), σ ∈ {0.5, 1} (the note gives no distribution); the "
       "property tested is that of angular LSH (SimHash, Charikar 2002), whose sign form "
       "this is: Pr[h(u) = h(v)] = 1 − θ(u, v)/π for unit u, v. Monte Carlo over 100k "
       "hash functions (fast: 40k); tolerance 6 standard errors.")
def lsh(rng, fast):
    T, d = (40_000 if fast else 100_000), 16
    tol = 6 * math.sqrt(0.25 / T)
    rows, worst, worst_row, corr = [], 0.0, None, 0.0
    A = rng.standard_normal((T, d))
    e1 = np.zeros(d); e1[0] = 1
    e2 = np.zeros(d); e2[1] = 1
    for theta in (np.pi / 6, np.pi / 3, np.pi / 2, 2 * np.pi / 3):
        u, v = e1, np.cos(theta) * e1 + np.sin(theta) * e2
        for sigma in (0.5, 1.0):
            bias = sigma * rng.standard_normal(T)
            p = float((np.sign(A @ u + bias) == np.sign(A @ v + bias)).mean())
            claimed = 1 - theta / np.pi
            rho = (np.cos(theta) + sigma ** 2) / (1 + sigma ** 2)
            predicted = 1 - np.arccos(rho) / np.pi
            corr = max(corr, abs(p - predicted) - tol)
            row = {"theta": float(theta), "sigma_b": sigma, "collision": p,
                   "claimed_1_minus_theta_over_pi": float(claimed),
                   "predicted_with_offset": float(predicted)}
            rows.append(row)
            if abs(p - claimed) - tol > worst:
                worst, worst_row = abs(p - claimed) - tol, row
        # the project's LSHIndex: offset-free SimHash hyperplanes
        index = LSHIndex(d, nbits=64, n_tables=T // 64 // 4, seed=int(rng.integers(1 << 30)))
        ku, kv = index.hash_keys(np.stack([u, v]).astype(np.float32))
        bits = np.unpackbits((ku ^ kv).view(np.uint8)).mean()
        n_bits = ku.size * 64
        p_index = 1 - float(bits)
        corr = max(corr, abs(p_index - (1 - theta / np.pi)) - 6 * math.sqrt(0.25 / n_bits))
        rows.append({"theta": float(theta), "LSHIndex_bit_collision": p_index,
                     "bits": n_bits})
    return judge({"cases": rows}, worst, tol,
                 counterexample=worst_row,
                 corrected="For unit u, v with a ~ N(0, I) and b ~ N(0, σ²): Pr[h(u) = h(v)] "
                           "= 1 − arccos((cos θ + σ²)/(1 + σ²))/π, which is > 1 − θ/π and "
                           "depends on the norms; only b = 0 (SimHash, h = sign(a·v), as "
                           "LSHIndex uses) gives the angular-LSH probability 1 − θ/π. The "
                           "offset form belongs to p-stable L2 LSH, ⌊(a·v + b)/w⌋ with "
                           "b ~ U[0, w).",
                 corrected_violation=corr)


@claim("rag_math_foundations/mrr",
       "MRR = (1/|Q|) Σ_i 1/rank_i, rank_i the position of the first relevant document.",
       "Hand cases with known values; on random rankings MRR ∈ [0, 1], = 1 iff every "
       "first relevant document is at rank 1, and it equals the mean over queries of the "
       "reciprocal rank found by brute force over FlatIndex result lists. A query with no "
       "relevant document retrieved has no rank_i (0 by convention).")
def mrr(rng, fast):
    hand = [([1, 3, None], (1 + 1 / 3 + 0) / 3), ([1, 1, 1], 1.0), ([2], 0.5),
            ([4, 2], (0.25 + 0.5) / 2)]
    worst = max(abs(_mrr_of_ranks(r) - v) for r, v in hand)
    nq, n, d, k = (50, 2_000, 16, 20) if fast else (200, 10_000, 16, 20)
    x = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    index = FlatIndex(d, "l2")
    index.add(x)
    _, I = index.search(q, k)
    relevant = rng.random(n) < 0.05
    judged = [np.nonzero(relevant)[0]] * nq
    value = mean_reciprocal_rank(I, judged)
    brute = float(np.mean([max((1 / (j + 1) for j, i in enumerate(row) if relevant[i]),
                               default=0.0) for row in I]))
    worst = max(worst, abs(value - brute), max(0.0, value - 1), max(0.0, -value))
    return judge({"hand_cases": [{"ranks": str(r), "mrr": _mrr_of_ranks(r), "expected": v}
                                 for r, v in hand],
                  "random_mrr": value, "brute_force": brute,
                  "queries_without_relevant":
                      int((mean_reciprocal_rank(I, judged, per_query=True) == 0).sum())},
                 worst, 1e-12,
                 conditions="every query has a relevant document in its result list; "
                            "otherwise rank_i is undefined and 1/rank_i must be taken as 0",
                 holds_without_conditions=False)


@claim("rag_math_foundations/ndcg",
       "NDCG@k = DCG@k / IDCG@k, DCG@k = Σ_{i≤k} (2^{rel_i} − 1)/log2(i + 1).",
       "IDCG@k read as the DCG@k of the ideal order of ALL judged documents (the note does "
       "not define it). Hand case; random graded relevance (0..3) and random permutations: "
       "NDCG ∈ [0, 1] and the ideal ranking gives exactly 1; all-irrelevant queries give "
       "IDCG = 0.")
def ndcg(rng, fast):
    rel = [3, 2, 3, 0, 1, 2]
    expected_dcg = 7 + 3 / math.log2(3) + 7 / 2 + 0 + 1 / math.log2(6) + 3 / math.log2(7)
    worst = abs(_dcg(rel, 6) - expected_dcg)
    trials = 2_000 if fast else 20_000
    lo, hi, ideal_err = 1.0, 0.0, 0.0
    for _ in range(trials):
        n = int(rng.integers(1, 30))
        all_rel = rng.integers(0, 4, size=n)
        if all_rel.max() == 0:
            continue
        k = int(rng.integers(1, n + 1))
        judged = [dict(enumerate(all_rel))]                  # id i has relevance all_rel[i]
        v = ndcg_at_k(rng.permutation(n)[None], judged, k)
        lo, hi = min(lo, v), max(hi, v)
        ideal = np.argsort(-all_rel, kind="stable")[None]
        ideal_err = max(ideal_err, abs(ndcg_at_k(ideal, judged, k) - 1))
    worst = max(worst, max(0.0, hi - 1), max(0.0, -lo), ideal_err)
    with np.errstate(invalid="ignore"):
        zero = float(np.float64(_dcg([0, 0, 0], 3)) / np.float64(_dcg([0, 0, 0], 3)))
    # IDCG restricted to the retrieved list instead: a poor list can score 1
    # (ids 0, 1 retrieved with rel 1, 0; ids 2, 3 judged rel 3 but not retrieved)
    retrieved, everything = [{0: 1, 1: 0}], [{0: 1, 1: 0, 2: 3, 3: 3}]
    list_only = ndcg_at_k(np.array([[0, 1]]), retrieved, 2)
    return judge({"hand_dcg": _dcg(rel, 6), "expected_hand_dcg": expected_dcg,
                  "ndcg_range_random": [lo, hi], "ideal_max_error": ideal_err,
                  "all_irrelevant_ndcg": zero,
                  "idcg_from_retrieved_list_only": list_only,
                  "idcg_from_all_judged": ndcg_at_k(np.array([[0, 1]]), everything, 2)},
                 worst, 1e-12,
                 conditions="at least one judged document with rel > 0 (else IDCG = 0 and "
                            "NDCG = 0/0), and IDCG@k computed from all judged documents, not "
                            "from the retrieved list (which would give a poor list NDCG = 1)",
                 holds_without_conditions=False)
