"""``rag_math_foundations.md``: similarity measures, attention, perplexity, TF-IDF, BM25,
product quantization, gradient descent and Adam, LSH, MRR, NDCG and the memory formula.

Checked with the project's own code where the claim is about it
(:func:`~retgen_ref.attention.softmax_attention`, :class:`~retgen_ref.index.FlatIndex`,
:class:`~retgen_ref.lm.ngram.UnigramLM`, :class:`~retgen_ref.pq.ProductQuantizer`,
:class:`~retgen_ref.index.IVFPQIndex`, :class:`~retgen_ref.index.lsh.LSHIndex`, and
:mod:`retgen_ref.rag`: ``mrr``, ``ndcg_at_k``, ``TfidfRetriever``, ``BM25Retriever``).
Each claimed quantity (a constant, an exponent, a rule) is a parameter of its check, the
note's value by default. The few formulas below stay private where a check needs what the
library does not give: the unguarded cosine, raw TF-IDF, the BM25 term as a function of
(IDF, f, |d|/avgdl), DCG with a chosen gain and discount, and the two optimisers.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np

from ..attention import multi_head_attention, softmax_attention
from ..index import FlatIndex, IVFPQIndex
from ..index.lsh import LSHIndex
from ..lm.ngram import UnigramLM
from ..pq import ProductQuantizer
from ..rag import BM25Retriever, TfidfRetriever, ndcg_at_k, term_matrix
from ..rag import mrr as mean_reciprocal_rank
from .registry import claim, judge


# -- the note's formulas, written out where the library has no equivalent -------------
def _worst(values) -> float:
    """The largest excess in ``values``; ``inf`` when one is undefined (nan or infinite):
    a formula that has no value on a case breaks a claim about it."""
    v = np.asarray(values, dtype=np.float64).ravel()
    return float("inf") if not np.isfinite(v).all() else float(v.max())


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a·b / (‖a‖ ‖b‖)`` row-wise (unguarded: 0/0 = nan for a zero vector)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _cosine_matrix(Q: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``cos(Q_i, D_j)`` for every pair, ``(len(Q), len(D))``, one query row at a time."""
    return np.stack([_cosine(q[None], D) for q in Q])


def _tf(counts: np.ndarray, power: float = 1.0) -> np.ndarray:
    """``tf = f_{t,d} / (Σ_t' f_{t',d})^power`` of the rows of ``counts`` (note: power 1)."""
    return counts / counts.sum(axis=1, keepdims=True) ** power


def _idf(corpus: np.ndarray, df_offset: float = 0.0) -> np.ndarray:
    """``idf = log(|D| / (df + df_offset))`` per term of ``corpus`` ``(|D|, n_terms)``
    (note: offset 0, so a term in no document gets ∞)."""
    with np.errstate(divide="ignore"):
        return np.log(len(corpus) / ((corpus > 0).sum(axis=0) + df_offset))


def _tfidf(counts: np.ndarray, corpus: np.ndarray | None = None, *, tf_power: float = 1.0,
           df_offset: float = 0.0) -> np.ndarray:
    """``tf(t,d)·idf(t,D)`` of the rows of ``counts`` ``(n, n_terms)`` against the
    collection ``corpus`` (default: ``counts`` itself); 0·∞ = nan where df = 0."""
    with np.errstate(invalid="ignore"):
        return _tf(counts, tf_power) * _idf(counts if corpus is None else corpus, df_offset)


def _zipf_docs(rng, n_docs: int, n_terms: int, min_len: int = 20, max_len: int = 200):
    """Token-id documents with Zipf(1.1) term frequencies and uniform lengths."""
    p = 1 / np.arange(1, n_terms + 1) ** 1.1
    return [rng.choice(n_terms, size=n, p=p / p.sum())
            for n in rng.integers(min_len, max_len, size=n_docs)]


def _bm25_term(idf, f, doc_len, avgdl, k1=1.2, b=0.75):
    """One query term's BM25 contribution
    ``IDF · f (k1 + 1) / (f + k1 (1 − b + b |d| / avgdl))``."""
    f = np.asarray(f, dtype=np.float64)
    return idf * f * (k1 + 1) / (f + k1 * (1 - b + b * doc_len / avgdl))


def _bm25_idf(n_docs: int, df, offset: float) -> np.ndarray:
    """``log(offset + (N − n + 0.5) / (n + 0.5))``: Robertson–Spärck Jones for offset 0,
    the Lucene / :meth:`BM25Retriever.idf` form for offset 1."""
    df = np.asarray(df, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(offset + (n_docs - df + 0.5) / (df + 0.5))


def _dcg(rel, k: int, gain_base: float = 2.0, discount_offset: float = 1.0) -> float:
    """``DCG@k = Σ_{i=1..k} (base^{rel_i} − 1) / log2(i + offset)`` (note: base 2, offset 1)."""
    rel = np.asarray(rel, dtype=np.float64)[:k]
    ranks = np.arange(1, len(rel) + 1)
    return float(((gain_base ** rel - 1) / np.log2(ranks + discount_offset)).sum())


# -- claims -----------------------------------------------------------------------------
@claim("rag_math_foundations/cosine",
       "cos(a, b) = a·b / (‖a‖‖b‖) ranges over [−1, 1]: 1 = same direction, 0 = orthogonal, "
       "−1 = opposite.",
       "The range read as the image [lower, upper] of the formula, its ends reached by "
       "parallel (a, c·a, c > 0) and antiparallel (a, −c·a) pairs, orthogonal pairs giving "
       "`orthogonal`. Integer vectors (entries |·| ≤ 9) make the constructions exact: "
       "b⊥ = (a·a) b − (a·b) a has a·b⊥ = 0 in integer arithmetic; random integer and "
       "Gaussian pairs for the range; d = 2, 16, 384. The unconditional variant: a zero "
       "vector, where the formula is 0/0.",
       refuted_by=({"upper": 0.5}, {"lower": -2.0}, {"orthogonal": 0.1}))
def cosine(rng, fast, *, upper=1.0, lower=-1.0, orthogonal=0.0):
    """Worst excess over the claimed range and values; float64 rounding is ~1e-15."""
    n = 2_000 if fast else 20_000
    rows, worst, worst_row = [], -np.inf, None
    for d in (2, 16, 384):
        a = rng.integers(-9, 10, (n, d))
        a[:, 0] = rng.integers(1, 10, n)                       # a ≠ 0
        b = rng.integers(-9, 10, (n, d))
        b[:, -1] = rng.integers(1, 10, n)                      # b ≠ 0
        c = rng.integers(1, 6, (n, 1))
        b_orth = (a * a).sum(1, keepdims=True) * b - (a * b).sum(1, keepdims=True) * a
        keep = b_orth.any(axis=1)                              # b not parallel to a
        par, anti = _cosine(a, c * a), _cosine(a, -c * a)
        orth = _cosine(a[keep], b_orth[keep])
        every = np.concatenate([_cosine(a, b), _cosine(*rng.standard_normal((2, n, d))),
                                par, anti, orth])
        row = {"d": d, "max_cos": float(every.max()), "min_cos": float(every.min()),
               "max_dev_parallel_from_upper": float(np.abs(par - upper).max()),
               "max_dev_antiparallel_from_lower": float(np.abs(anti - lower).max()),
               "max_dev_orthogonal": float(np.abs(orth - orthogonal).max())}
        excess = _worst([every.max() - upper, lower - every.min(),
                         row["max_dev_parallel_from_upper"],
                         row["max_dev_antiparallel_from_lower"], row["max_dev_orthogonal"]])
        rows.append(row)
        if excess > worst:
            worst, worst_row = excess, row
    zero = np.zeros((1, 4))
    at_zero = [float(_cosine(zero, np.ones((1, 4)))[0]), float(_cosine(zero, zero)[0])]
    return judge({"cases": rows, "cos_with_zero_vector": at_zero}, worst, 1e-12,
                 counterexample=worst_row,
                 conditions="a ≠ 0 and b ≠ 0 (for a zero vector the formula is 0/0)",
                 unconditional_violation=_worst([max(v - upper, lower - v) for v in at_zero]))


@claim("rag_math_foundations/euclidean-similarity",
       "d(a, b) = √Σ(a_i − b_i)², and similarity = 1/(1 + d) is an alternative measure.",
       "d^(2·distance_power) against FlatIndex('l2')'s exact squared distances (another "
       "route, relative error); similarity = 1/(offset + d) read as a measure in (0, 1] "
       "that is 1 iff a = b and ranks like the Euclidean nearest neighbours (the top 10 "
       "by similarity vs FlatIndex's ids, compared through their similarities). For unit "
       "vectors ‖a − b‖² = 2 − 2 cos(a, b) (checked); the disagreement with cosine on "
       "non-unit data is reported.",
       refuted_by=({"offset": 2.0}, {"offset": 0.5}, {"distance_power": 1.0}))
def euclidean_similarity(rng, fast, *, offset=1.0, distance_power=0.5):
    """Worst relative excess; FlatIndex returns float32 distances (~6e-8 relative)."""
    n, nq, d = (2_000, 20, 32) if fast else (20_000, 50, 32)
    x = (rng.standard_normal((n, d)) * np.exp(rng.uniform(-1, 1, (n, 1)))).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    dist = np.stack([((x64 - qi) ** 2).sum(-1) for qi in q64]) ** distance_power
    sim = 1 / (offset + dist)
    index = FlatIndex(d, "l2")
    index.add(x)
    D, I = index.search(q, 10)
    route = float(np.abs(np.take_along_axis(dist, I, 1) / np.sqrt(D) - 1).max())
    by_sim = np.argsort(-sim, axis=1, kind="stable")[:, :10]
    rank_gap = float((np.abs(np.take_along_axis(sim, I, 1) - np.take_along_axis(sim, by_sim, 1))
                      / sim.max(1, keepdims=True)).max())
    self_sim = 1 / (offset + (((x64[:100] - x64[:100]) ** 2).sum(-1)) ** distance_power)
    u = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
    qu = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    identity = float(max(np.abs(((u - qi) ** 2).sum(-1) - (2 - 2 * u @ qi)).max() for qi in qu))
    cos_top = np.argmax(_cosine_matrix(q64, x64), axis=1)
    parts = {"distance_vs_FlatIndex_rel_error": route,
             "similarity_above_1": float(max(sim.max(), self_sim.max()) - 1),
             "similarity_not_positive": float(-sim.min()),
             "self_similarity_minus_1": float(np.abs(self_sim - 1).max()),
             "top10_similarity_gap_vs_FlatIndex": rank_gap,
             "unit_vector_identity_max_error": identity}
    worst = max(parts, key=parts.get)
    return judge({**parts, "similarity_range": [float(sim.min()), float(sim.max())],
                  "top10_id_agreement_with_FlatIndex": float((I == by_sim).mean()),
                  "top1_disagreement_with_cosine_non_unit":
                      float((cos_top != np.argmax(sim, axis=1)).mean())},
                 parts[worst], 1e-5,
                 counterexample={"worst_part": worst, "excess": parts[worst], "offset": offset,
                                 "distance_power": distance_power})


@claim("rag_math_foundations/attention",
       "Attention(Q, K, V) = softmax(QKᵀ/√d_k) V; MultiHead = Concat(head_1..head_h) W^O "
       "with head_i = Attention(QW_i^Q, KW_i^K, VW_i^V); the 1/√d_k factor is the scaling.",
       "The note's formulas with the score divided by d_k^scale_exponent, computed naively "
       "(per-head loops), against the project's softmax_attention and multi_head_attention "
       "(relative to max |output|); weight rows sum to 1; the purpose of the scaling: with "
       "unit-variance q, k the scaled score q·k/d_k^scale_exponent has variance 1 for every "
       "d_k = 4, 64, 512 (Monte Carlo, excess beyond 6 standard errors).",
       refuted_by=({"scale_exponent": 0.6}, {"scale_exponent": 0.4}))
def attention(rng, fast, *, scale_exponent=0.5):
    """Worst relative error of the formulas and excess of the score variance over 1."""
    def naive(Q, K, V):
        S = Q @ K.T / Q.shape[1] ** scale_exponent
        P = np.exp(S - S.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        return P @ V, P

    rows, worst, worst_row = [], -np.inf, None
    for d_model, h in ((16, 2), (64, 8)):
        X = rng.standard_normal((12, d_model))
        Y = rng.standard_normal((20, d_model))
        dk = d_model // h
        Wq, Wk, Wv = rng.standard_normal((3, h, d_model, dk)) / np.sqrt(d_model)
        Wo = rng.standard_normal((h * dk, d_model)) / np.sqrt(d_model)
        ref = np.concatenate([naive(X @ Wq[i], Y @ Wk[i], Y @ Wv[i])[0] for i in range(h)],
                             axis=1) @ Wo
        ours = multi_head_attention(X, Y, np.concatenate(list(Wq), 1),
                                    np.concatenate(list(Wk), 1), np.concatenate(list(Wv), 1),
                                    Wo, h)
        single, P = naive(X, Y, Y)
        row = {"d_model": d_model, "heads": h,
               "single_head_rel_error": float(np.abs(softmax_attention(X, Y, Y) - single).max()
                                              / np.abs(single).max()),
               "multi_head_rel_error": float(np.abs(ours - ref).max() / np.abs(ref).max()),
               "row_sum_error": float(np.abs(P.sum(1) - 1).max())}
        rows.append(row)
        excess = max(row["single_head_rel_error"], row["multi_head_rel_error"],
                     row["row_sum_error"])
        if excess > worst:
            worst, worst_row = excess, row
    n = 20_000 if fast else 40_000
    for dk in (4, 64, 512):
        q, k = rng.standard_normal((2, n, dk))
        s = (q * k).sum(1) / dk ** scale_exponent
        var = float(s.var())
        se = float(np.sqrt(((s ** 2 - var) ** 2).mean() / n))
        row = {"d_k": dk, "scaled_score_variance": var, "standard_error": se}
        rows.append(row)
        if abs(var - 1) - 6 * se > worst:
            worst, worst_row = abs(var - 1) - 6 * se, row
    return judge({"cases": rows}, max(worst, 0.0), 1e-10, counterexample=worst_row)


@claim("rag_math_foundations/perplexity",
       "Perplexity = exp(−(1/N) Σ log P(w_i | w_<i)), the exponentiated cross-entropy "
       "L = −Σ_i Σ_j y_ij log ŷ_ij; lower is better.",
       "Unigram models over V = 50 tokens (the project's UnigramLM: fitted to a sample of "
       "the true distribution, to a sample of another one, and uniform) score a sampled "
       "stream of N tokens: UnigramLM.perplexity (one route) against exp(L / N^"
       "normaliser_exponent) with the note's summed L over one-hot y (another), compared "
       "in the log (relative); 'lower is better' (better='lower'): the true distribution has "
       "the lowest expected log-perplexity (exact, Gibbs). The unconditional variant is the "
       "note's L as printed, exp(L) = PPL^N.",
       refuted_by=({"normaliser_exponent": 0.9}, {"normaliser_exponent": 1.1},
                   {"better": "higher"}))
def perplexity(rng, fast, *, normaliser_exponent=1.0, better="lower"):
    """Relative error of log PPL, and the excess of the true model's expected log-loss."""
    V, N = 50, (2_000 if fast else 20_000)
    p_true = rng.dirichlet(np.full(V, 0.3))
    stream = rng.choice(V, size=N, p=p_true)
    y = np.eye(V)[stream]
    models = {"unigram_fitted_true": UnigramLM().fit(rng.choice(V, 5 * N, p=p_true), V),
              "unigram_fitted_other": UnigramLM().fit(
                  rng.choice(V, 5 * N, p=rng.dirichlet(np.full(V, 0.3))), V),
              "uniform": UnigramLM.from_state({"vocab_size": V},
                                              {"counts": np.zeros(V, np.int64)})}
    cases, worst, worst_row, literal = [], -np.inf, None, 0.0
    for name, lm in models.items():
        log_ppl = math.log(lm.perplexity(stream))
        L = float(-(y * np.log(lm.distribution([]))).sum())       # the note's summed L
        row = {"model": name, "perplexity": math.exp(log_ppl), "L_sum": L,
               "log_perplexity": log_ppl, "claimed_log_ppl": L / N ** normaliser_exponent}
        rel = abs(row["claimed_log_ppl"] - log_ppl) / log_ppl
        literal = max(literal, abs(L - log_ppl) / log_ppl)         # exp(L) as printed
        cases.append(row)
        if rel > worst:
            worst, worst_row = rel, row
    # expected log-loss under the true distribution: the entropy for the true model
    ce = {"true_distribution": float(-(p_true * np.log(p_true)).sum()),
          **{k: float(-(p_true * np.log(lm.distribution([]))).sum()) for k, lm in models.items()}}
    others = [v for k, v in ce.items() if k != "true_distribution"]
    order = (ce["true_distribution"] - min(others) if better == "lower"
             else max(others) - ce["true_distribution"])
    if order / ce["true_distribution"] > worst:
        worst, worst_row = order / ce["true_distribution"], {"expected_log_ppl": ce,
                                                              "better": better}
    return judge({"cases": cases, "expected_log_perplexity": ce, "N": N}, worst, 1e-9,
                 counterexample=worst_row,
                 conditions="cross-entropy read PER TOKEN (L/N) with one-hot targets y; the "
                            "note's L sums over the N positions, and exp(L) = PPL^N",
                 unconditional_violation=literal)


@claim("rag_math_foundations/tfidf",
       "TF-IDF(t, d, D) = tf(t, d)·idf(t, D), tf = f_{t,d}/Σ_t' f_{t',d}, "
       "idf = log(|D| / |{d ∈ D : t ∈ d}|).",
       "Computed with tf = f/(Σf)^tf_length_power and idf = log(|D|/(df + idf_df_offset)) "
       "on a Zipf corpus with a term in every document: tf is the term's share of d (sums "
       "to 1), idf ≥ 0, 0 for a term in every document and decreasing in df, TF-IDF finite; "
       "its rows, L2-normalised, equal the project's TfidfRetriever document vectors "
       "(another route, sparse). The unconditional variant: a query term that occurs in no "
       "document (df = 0).",
       refuted_by=({"tf_length_power": 0.5}, {"idf_df_offset": 1.0}))
def tfidf(rng, fast, *, tf_length_power=1.0, idf_df_offset=0.0):
    """Worst excess over the properties and the library route (all O(1) quantities)."""
    n_docs, n_terms = (200, 500) if fast else (1_000, 2_000)
    docs = _zipf_docs(rng, n_docs, n_terms)
    docs = [np.append(doc, 0) for doc in docs]                      # term 0 everywhere
    docs = [doc[doc != n_terms - 1] for doc in docs]                # the last term nowhere
    counts = term_matrix(docs, n_terms).toarray()
    seen = counts.any(axis=0)
    scores = _tfidf(counts, tf_power=tf_length_power, df_offset=idf_df_offset)[:, seen]
    tf = _tf(counts, tf_length_power)
    df = (counts > 0).sum(axis=0)[seen]
    idf = _idf(counts, idf_df_offset)[seen]
    order = np.argsort(df, kind="stable")
    rising = np.diff(idf[order])[np.diff(df[order]) > 0]            # larger df, idf must fall
    unit = scores / np.linalg.norm(scores, axis=1, keepdims=True)
    library = TfidfRetriever().fit(docs, n_terms).weights_.toarray()[:, seen]
    parts = {"tf_sum_minus_1": float(np.abs(tf.sum(1) - 1).max()),
             "negative_idf": float(-idf.min()),
             "idf_of_term_in_every_doc": float(abs(idf[0])),
             "idf_rise_with_df": float(rising.max()),
             "not_finite": float(not np.isfinite(scores).all()),
             "direction_vs_TfidfRetriever": float(np.abs(unit - library).max())}
    worst = max(parts, key=parts.get)
    query = np.zeros((1, n_terms))
    query[0, [1, n_terms - 1]] = 1                                  # a seen and an unseen term
    unseen = _tfidf(query, counts, tf_power=tf_length_power, df_offset=idf_df_offset)
    return judge({**parts, "n_docs": n_docs, "idf_range": [float(idf.min()), float(idf.max())],
                  "query_with_unseen_term_tfidf": unseen[0, [1, n_terms - 1]]},
                 _worst(list(parts.values())), 1e-12,
                 counterexample={"worst_part": worst, "excess": parts[worst],
                                 "tf_length_power": tf_length_power,
                                 "idf_df_offset": idf_df_offset},
                 conditions="idf is only defined for terms that occur in at least one "
                            "document (df ≥ 1); a query term absent from D gives log(|D|/0) "
                            "= ∞ (smoothed variants such as log(|D|/(1+df)) avoid it)",
                 unconditional_violation=max(parts[worst],
                                             0.0 if np.isfinite(unseen).all() else np.inf))


def _bm25_excess(idf_offset: float, saturation: float) -> tuple[float, dict]:
    """Worst excess (relative to max |IDF|·(k1 + 1)) of the BM25 term over the properties
    a ranking function needs, on the grid of the claim's reading, and where it occurs."""
    f, ratios = np.arange(0, 201.0), np.array([0.25, 0.5, 1.0, 2.0, 4.0])
    worst, at = -np.inf, None
    for N in (10, 1_000):
        df = np.arange(1, N + 1)
        idf = _bm25_idf(N, df, idf_offset)[:, None, None]                # (df, 1, 1)
        for k1 in (0.5, 1.2, 2.0):
            scale = float(np.abs(idf).max()) * (k1 + 1)
            for b in (0.0, 0.75, 1.0):
                c = _bm25_term(idf, f[None, :, None], ratios[None, None, :], 1.0, k1, b)
                length = np.diff(c, axis=2) if b > 0 else c - c[:, :, :1]
                parts = {"negative": -c, "decreasing_in_f": -np.diff(c, axis=1),
                         "above_saturation": c - saturation * np.abs(idf) * (k1 + 1),
                         "length_effect": length if b > 0 else np.abs(length)}
                for name, values in parts.items():
                    i = np.unravel_index(np.nanargmax(values), values.shape)
                    excess = _worst(values[i]) / scale
                    if excess > worst:
                        cell = i[0], min(i[1], len(f) - 1), i[2]
                        worst, at = excess, {"property": name, "N": N, "df": int(df[i[0]]),
                                             "f": float(f[cell[1]]),
                                             "len_over_avgdl": float(ratios[i[2]]), "k1": k1,
                                             "b": b, "idf": float(idf[i[0], 0, 0]),
                                             "contribution": float(c[cell])}
    return worst, at


def _bm25_library_gap(rng, idf_offset: float) -> float:
    """Relative gap between :class:`BM25Retriever` scores of a random corpus and the sum of
    the note's terms with the IDF ``log(idf_offset + (N − n + 0.5)/(n + 0.5))``."""
    n_terms, k1, b = 300, 1.2, 0.75
    docs = _zipf_docs(rng, 150, n_terms, 5, 60)
    queries = [rng.choice(n_terms, size=4) for _ in range(20)]
    library = BM25Retriever(k1, b).fit(docs, n_terms).scores(queries)
    counts = term_matrix(docs, n_terms).toarray()
    lengths = counts.sum(1, keepdims=True)
    idf = _bm25_idf(len(docs), (counts > 0).sum(0), idf_offset)
    weights = np.where(counts > 0, _bm25_term(idf, counts, lengths, lengths.mean(), k1, b), 0)
    formula = term_matrix(queries, n_terms).toarray() @ weights.T
    return float(np.abs(formula - library).max() / np.abs(library).max())


@claim("rag_math_foundations/bm25",
       "BM25(q, d) = Σ_i IDF(q_i)·f(q_i,d)(k1+1) / (f(q_i,d) + k1(1 − b + b|d|/avgdl)).",
       "IDF is not defined by the note; read as log(idf_offset + (N − n + 0.5)/(n + 0.5)), "
       "the classic Robertson–Spärck Jones IDF for idf_offset = 0. A ranking function "
       "should reward matching a query term: each term's contribution ≥ 0, non-decreasing "
       "in f, at most saturation·|IDF|·(k1 + 1); b = 0 ignores length, b > 0 lowers longer "
       "documents' scores. Grid: N = 10 and 1000, every df, f = 0..200, |d|/avgdl ∈ "
       "[0.25, 4], k1 ∈ {0.5, 1.2, 2}, b ∈ {0, 0.75, 1}; excesses relative to "
       "max |IDF|·(k1 + 1). The correction is checked on the same grid and against "
       "BM25Retriever's scores of a random corpus (another route).",
       refuted_by=({"idf_offset": 0.5}, {"idf_offset": 1.0, "saturation": 0.9}),
       correction_broken_by=({"corrected_idf_offset": 0.5}, {"corrected_saturation": 0.9}))
def bm25(rng, fast, *, idf_offset=0.0, saturation=1.0, corrected_idf_offset=1.0,
         corrected_saturation=1.0):
    """Worst relative excess over the properties; the correction's includes the route."""
    worst, at = _bm25_excess(idf_offset, saturation)
    corrected, corrected_at = _bm25_excess(corrected_idf_offset, corrected_saturation)
    gap = _bm25_library_gap(rng, corrected_idf_offset)
    return judge(
        {"classic_idf_N1000": {f"df={n}": float(_bm25_idf(1_000, n, 0.0)) for n in (1, 500, 999)},
         "worst_case": at, "corrected_worst_case": corrected_at,
         "corrected_vs_BM25Retriever_rel_gap": gap},
        worst, 1e-12, counterexample=at,
        corrected="With IDF = log(1 + (N − n + 0.5)/(n + 0.5)) (Lucene/BM25+ style, > 0 for "
                  "every n ≤ N, as BM25Retriever uses) each term's contribution is ≥ 0, "
                  "non-decreasing in f, bounded by IDF·(k1 + 1) (saturation), decreasing in "
                  "|d|/avgdl for b > 0 and length-independent for b = 0. The classic IDF is "
                  "negative when the term is in more than half the documents (n > N/2), "
                  "and then matching it LOWERS the score.",
        corrected_violation=max(corrected, gap))


@claim("rag_math_foundations/pq",
       "x = [u_1, …, u_m]; q(u_j) = argmin_{c ∈ C_j} ‖u_j − c‖²; x̂ = [q(u_1), …, q(u_m)].",
       "The rule with the ℓ_p distance, p = subspace_norm (2: the note's squared L2 "
       "argmin), applied to the project's ProductQuantizer codebooks in float64: its codes' "
       "squared error per subvector equals that of ProductQuantizer.encode's (relative to "
       "the mean error, float32 ties allowed), decode is the concatenation of the chosen "
       "codewords, and x̂ is the nearest point to x among ALL k^m product codewords (brute "
       "force for m = 2, k = 16).",
       refuted_by=({"subspace_norm": 1.0}, {"subspace_norm": 8.0}))
def pq(rng, fast, *, subspace_norm=2.0):
    """Worst relative excess of the claimed codes over the encoder's and the optimum."""
    n = 500 if fast else 3_000
    rows, worst, worst_row = [], -np.inf, None
    for d, m, nbits in ((8, 2, 4), (32, 4, 6), (64, 8, 8)):
        x = rng.standard_normal((n + (800 if fast else 2_000), d)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant = ProductQuantizer(d, m, nbits, seed=int(rng.integers(1 << 30))).fit(x[n:])
        xs = x[:n].astype(np.float64)
        cb = quant.codebooks_.astype(np.float64)                        # (m, k, dsub)
        u = xs.reshape(n, m, 1, d // m)
        claimed = np.stack([np.argmin((np.abs(u[:, j] - cb[j]) ** subspace_norm).sum(-1), 1)
                            for j in range(m)], axis=1)                   # (n, m)
        sq = np.stack([((u[:, j] - cb[j]) ** 2).sum(-1) for j in range(m)], axis=1)  # (n,m,k)
        encoded = quant.encode(x[:n]).astype(np.int64)
        pick = np.arange(n)[:, None], np.arange(m)[None]
        scale = float(sq.min(2).mean())
        row = {"d": d, "m": m, "k": 2 ** nbits,
               "excess_over_encoder": float(np.abs(sq[pick + (claimed,)]
                                                   - sq[pick + (encoded,)]).max() / scale),
               "decode_max_error": float(np.abs(quant.decode(claimed.astype(np.uint8))
                                                - cb[np.arange(m), claimed].reshape(n, d)).max())}
        if m == 2:
            full = np.concatenate(np.broadcast_arrays(cb[0][:, None, :], cb[1][None, :, :]),
                                  axis=2).reshape(-1, d)
            best = ((xs[:, None, :] - full[None]) ** 2).sum(-1).min(1)
            row["excess_over_product_optimum"] = float((sq[pick + (claimed,)].sum(1) - best).max()
                                                       / scale)
        rows.append(row)
        excess = max(v for k, v in row.items() if k not in ("d", "m", "k"))
        if excess > worst:
            worst, worst_row = excess, row
    return judge({"cases": rows}, worst, 1e-5, counterexample=worst_row)


@claim("rag_math_foundations/gradient-descent",
       "θ_{t+1} = θ_t − α ∇_θ L(θ_t), α the learning rate.",
       "The update (step_sign = −1 as printed) on convex quadratics L(θ) = ½θᵀAθ − bᵀθ "
       "(d = 20, condition numbers 10 and 100; full: also 30), with the textbook statement "
       "about it: the iterates converge to θ* = A⁻¹b iff α < stability_limit/λ_max(A). "
       "Steps α·λ_max ∈ {0.5, 1, 1.8, 1.98, 2.02, 2.2, 3}, T = 1000 steps from θ_0 = 0 "
       "(fewer once the error passes 1e100); the error ratio ‖θ_T − θ*‖/‖θ_0 − θ*‖ by the "
       "loop and by the closed form ‖(I + step_sign·αA)^T e_0‖/‖e_0‖ (eigendecomposition, "
       "another route) must each lie on the claimed side of 1. Violation: |log10 ratio| on "
       "the wrong side.",
       refuted_by=({"stability_limit": 1.0}, {"stability_limit": 4.0}, {"step_sign": 1.0}))
def gradient_descent(rng, fast, *, step_sign=-1.0, stability_limit=2.0):
    """Worst log10 excess of the error ratio on the wrong side of 1."""
    d, T = 20, 1_000
    rows, worst, worst_row, route_gap = [], -np.inf, None, 0.0
    for kappa in ((10, 100) if fast else (10, 30, 100)):
        lam = np.geomspace(1.0, kappa, d) * rng.uniform(0.5, 2.0)
        Qm = np.linalg.qr(rng.standard_normal((d, d)))[0]
        A, b = (Qm * lam) @ Qm.T, rng.standard_normal(d)
        opt = np.linalg.solve(A, b)
        e0 = Qm.T @ (-opt)                                             # θ_0 = 0, eigenbasis
        for f in (0.5, 1.0, 1.8, 1.98, 2.02, 2.2, 3.0):
            alpha, theta, steps = f / lam.max(), np.zeros(d), 0
            while steps < T and np.linalg.norm(theta - opt) < 1e100 * np.linalg.norm(opt):
                theta = theta + step_sign * alpha * (A @ theta - b)
                steps += 1
            loop = math.log10(np.linalg.norm(theta - opt) / np.linalg.norm(opt))
            r = 1 + step_sign * alpha * lam                            # per-eigenvalue factor
            with np.errstate(divide="ignore"):                         # r = 0: gone at once
                closed = 0.5 * float(np.logaddexp.reduce(2 * steps * np.log(np.abs(r))
                                                         + np.log(e0 ** 2))) / math.log(10) \
                    - math.log10(np.linalg.norm(e0))
            converges = alpha * lam.max() < stability_limit
            excess = max(loop, closed) if converges else -min(loop, closed)
            if closed > -10:                                           # above the round-off
                route_gap = max(route_gap, abs(loop - closed) / max(1.0, abs(closed)))
            row = {"condition_number": kappa, "alpha_lambda_max": f, "steps": steps,
                   "claimed_converges": bool(converges),
                   "log10_error_ratio_loop": round(loop, 3),
                   "log10_error_ratio_closed_form": round(closed, 3)}
            rows.append(row)
            if excess > worst:
                worst, worst_row = excess, row
    return judge({"cases": rows, "loop_vs_closed_form_rel_gap_log": route_gap,
                  "steps": T}, worst, 0.0, counterexample=worst_row)


def _adam(grad, theta0, T: int, *, alpha=0.1, beta1=0.9, beta2=0.999, eps=1e-8,
          step_sign=-1.0, m_correction="beta1", correction_offset=0):
    """The note's Adam, ``θ ← θ + step_sign·α_t m̂/(√v̂ + ε)`` with ``α_t = α/√t``;
    returns the last iterate and the bias-corrected moments of every step."""
    theta, m, v, history = np.array(theta0, float), 0.0, 0.0, []
    for t in range(1, T + 1):
        g = grad(theta)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat = m / (1 - beta1 ** (t + correction_offset)) if m_correction == "beta1" else m
        v_hat = v / (1 - beta2 ** (t + correction_offset))
        theta = theta + step_sign * alpha / math.sqrt(t) * m_hat / (np.sqrt(v_hat) + eps)
        history.append((m_hat, v_hat))
    return theta, history


@claim("rag_math_foundations/adam",
       "m_t = β1 m_{t−1} + (1 − β1) g_t; v_t = β2 v_{t−1} + (1 − β2) g_t²; "
       "θ_{t+1} = θ_t − α m̂_t/(√v̂_t + ε), m̂_t and v̂_t bias-corrected estimates.",
       "Bias correction read as Kingma & Ba's m̂_t = m_t/(1 − β1^(t + correction_offset)), "
       "v̂_t = v_t/(1 − β2^(t + correction_offset)) (offset 0; m_correction = 'none' leaves "
       "m̂ = m). (a) Unbiased: m_t, v_t are linear in g_t, g_t², so for i.i.d. gradients "
       "E[m̂_t], E[v̂_t] are the recursions run on E[g], E[g²]; they must equal E[g], E[g²] "
       "at every t = 1..50 (β1 = 0.9, β2 = 0.999; relative error). (b) Converges: the "
       "update as printed (step_sign = −1), α_t = 0.1/√t, 3000 steps, on a convex quadratic "
       "with curvatures 0.01..100 (d = 10) and on ridge logistic regression (θ* by Newton's "
       "method, another route): ‖θ_T − θ*‖ ≤ 5 % of ‖θ_0 − θ*‖.",
       refuted_by=({"step_sign": 1.0}, {"m_correction": "none"}, {"correction_offset": 1}))
def adam(rng, fast, *, step_sign=-1.0, m_correction="beta1", correction_offset=0):
    """Worst excess of (a) over 1e-9 relative and of (b) over 5 %."""
    rule = {"step_sign": step_sign, "m_correction": m_correction,
            "correction_offset": correction_offset}
    mean_g = rng.standard_normal(6)
    mean_g2 = mean_g ** 2 + rng.uniform(0.1, 2.0, 6)
    # E[m̂_t] is the m-recursion run on g = E[g]; E[v̂_t] the v-recursion on g² = E[g²]
    _, hist = _adam(lambda _: mean_g, np.zeros(6), 50, **rule)
    _, hist2 = _adam(lambda _: np.sqrt(mean_g2), np.zeros(6), 50, **rule)
    bias_m = max(float(np.abs(mh / mean_g - 1).max()) for mh, _ in hist)
    bias_v = max(float(np.abs(vh / mean_g2 - 1).max()) for _, vh in hist2)
    cases = {"E_m_hat_rel_error": bias_m, "E_v_hat_rel_error": bias_v}
    worst, worst_row = max(bias_m, bias_v) - 1e-9, dict(cases)
    curv = np.geomspace(0.01, 100, 10)
    centre = rng.standard_normal(10)
    X = rng.standard_normal((200, 5))
    yl = (X @ rng.standard_normal(5) + 0.5 * rng.standard_normal(200) > 0).astype(float)
    ridge = 0.1

    def logistic_grad(w):
        return X.T @ (1 / (1 + np.exp(-X @ w)) - yl) / len(X) + ridge * w

    w_opt = np.zeros(5)
    for _ in range(50):                                               # Newton's method
        p = 1 / (1 + np.exp(-X @ w_opt))
        H = (X.T * (p * (1 - p))) @ X / len(X) + ridge * np.eye(5)
        w_opt -= np.linalg.solve(H, logistic_grad(w_opt))
    problems = {"quadratic": (lambda th: curv * (th - centre), centre, 10),
                "ridge_logistic": (logistic_grad, w_opt, 5)}
    for name, (grad, opt, dim) in problems.items():
        theta0 = opt + rng.standard_normal(dim)
        final, _ = _adam(grad, theta0, 3_000, **rule)
        ratio = float(np.linalg.norm(final - opt) / np.linalg.norm(theta0 - opt))
        cases[f"{name}_distance_ratio"] = ratio
        if ratio - 0.05 > worst:
            worst, worst_row = ratio - 0.05, {"problem": name, "distance_ratio": ratio, **rule}
    return judge(cases, worst, 0.0, counterexample=worst_row)


_CODE_COUNTS = {"d/m": lambda d, m: d / m, "m": lambda d, m: m, "d": lambda d, m: d}


@claim("rag_math_foundations/pq-memory",
       "Memory = N × ((d/m)·log2 k + m·k·(d/m)) for N PQ-coded vectors of dimension d.",
       "Units are not given; read most favourably: code_count codes of log2 k bits per "
       "vector, and the codebook term m·k·(d/m) entries counted as 32-bit floats or as 1 "
       "unit each (the reading closer to the measurement), held codebook_copies times "
       "('N': once per vector, as printed). Measured, not computed: the bytes of the packed "
       "codes the project's ProductQuantizer emits for N vectors plus its codebooks' nbytes "
       "(N = 3 sizes, (d, m, k) = (64, 8, 256), (128, 8, 256), (96, 24, 16), (40, 10, 32), "
       "(384, 48, 256)), and the growth of IVFPQIndex.nbytes with N (its code column minus "
       "the int64 id per entry; k = 256). The fitted bytes per vector and fixed bytes are "
       "reported; violation = the formula's relative error.",
       refuted_by=({"code_count": "m"}, {"codebook_copies": "1"}),
       correction_broken_by=({"corrected_code_bits_factor": 0.75},
                             {"corrected_entry_bits": 16}))
def pq_memory(rng, fast, *, code_count="d/m", codebook_copies="N",
              corrected_code_bits_factor=1.0, corrected_entry_bits=32):
    """Relative error of the note's and the corrected bits against measured bytes × 8."""
    sizes = (1_000, 2_000, 4_000) if fast else (2_000, 6_000, 18_000)
    cases, worst, worst_row, corr = [], -np.inf, None, -np.inf

    def note_bits(N, d, m, k, per_vector_only=False):
        copies = N if codebook_copies == "N" else 1
        codes = _CODE_COUNTS[code_count](d, m) * math.log2(k)
        return [(codes + (copies / N) * unit * m * k * (d / m)) if per_vector_only
                else N * codes + copies * unit * m * k * (d / m) for unit in (32, 1)]

    def corrected_code_bits(m, k):
        return math.ceil(m * math.log2(k) * corrected_code_bits_factor / 8) * 8

    for d, m, nbits in ((64, 8, 8), (128, 8, 8), (96, 24, 4), (40, 10, 5), (384, 48, 8)):
        k = 2 ** nbits
        x = rng.standard_normal((max(sizes), d)).astype(np.float32)
        quant = ProductQuantizer(d, m, nbits, seed=0).fit(x[:512])  # sizes only: short fit
        codes = quant.encode(x)
        measured = [8 * (quant.pack_codes(codes[:N]).nbytes + quant.codebooks_.nbytes)
                    for N in sizes]
        per_vector, fixed = np.polyfit(sizes, measured, 1)
        row = {"d": d, "m": m, "k": k, "fitted_bits_per_vector": float(per_vector),
               "fitted_fixed_bits": float(fixed)}
        for N, bits in zip(sizes, measured):
            err = min(abs(r - bits) / bits for r in note_bits(N, d, m, k))
            fixed_corr = N * corrected_code_bits(m, k) + corrected_entry_bits * k * d
            corr = max(corr, abs(fixed_corr - bits) / bits)
            row.setdefault("measured_bits", []).append(bits)
            row.setdefault("note_relative_error", []).append(err)
            if err > worst:
                worst, worst_row = err, {"N": N, "d": d, "m": m, "k": k, "measured_bits": bits,
                                         "note_bits_float32_or_unit": note_bits(N, d, m, k)}
        if nbits == 8 and d <= 128:
            index = IVFPQIndex(d, 4, m, nbits, seed=0)
            index.train(x[:1_024])
            grown, done = [], 0
            for N in sizes:
                index.add(x[done:N])
                done = N
                grown.append(8 * index.nbytes)
            slope = float(np.polyfit(sizes, grown, 1)[0]) - 8 * index.lists.ids.itemsize
            row["ivfpq_fitted_code_bits_per_vector"] = slope
            err = min(abs(r - slope) / slope for r in note_bits(1, d, m, k, True))
            corr = max(corr, abs(corrected_code_bits(m, k) - slope) / slope)
            if err > worst:
                worst, worst_row = err, {"IVFPQIndex_code_bits_per_vector": slope, "d": d,
                                         "m": m, "k": k,
                                         "note_bits_per_vector": note_bits(1, d, m, k, True)}
        cases.append(row)
    return judge({"cases": cases}, worst, 1e-9, counterexample=worst_row,
                 corrected="Memory (bits) = N·⌈m·log2 k / 8⌉·8 (m codes of log2 k bits per "
                           "vector, byte-packed) + 32·k·d (the m codebooks of k centroids of "
                           "d/m float32 each, stored ONCE, not per vector) ≈ N·m·log2 k + "
                           "32·k·d. The note has d/m codes per vector instead of m, and "
                           "multiplies the codebook by N. (IVFPQIndex adds an 8-byte id per "
                           "vector and the coarse centroids.)",
                 corrected_violation=corr)


@claim("rag_math_foundations/lsh",
       "LSH for approximate nearest-neighbour search: h(v) = sign(a·v + b), a a random "
       "vector, b a random scalar.",
       "a ~ N(0, I_d) and b ~ N(0, σ²), σ ∈ {0.5, 1, 2} (the note gives no distribution); "
       "the property tested is that of angular LSH (SimHash, Charikar 2002), whose sign "
       "form this is: Pr[h(u) = h(v)] = 1 − angle_factor·θ(u, v)/π for unit u, v. Monte "
       "Carlo over 100k hash functions (fast: 40k), excess beyond 6 standard errors. The "
       "correction is checked on the same draws and on the bits of the project's LSHIndex "
       "(b = 0).",
       refuted_by=({"angle_factor": 0.9}, {"angle_factor": 1.1}),
       correction_broken_by=({"corrected_sigma_power": 1.0}, {"corrected_angle_factor": 0.9}))
def lsh(rng, fast, *, angle_factor=1.0, corrected_sigma_power=2.0, corrected_angle_factor=1.0):
    """Worst excess of |measured − claimed| collision probability beyond 6 SE."""
    T, d = (40_000 if fast else 100_000), 16
    tol = 6 * math.sqrt(0.25 / T)
    rows, worst, worst_row, corr = [], -np.inf, None, -np.inf
    A = rng.standard_normal((T, d))
    e1, e2 = np.eye(d)[:2]
    for theta in (np.pi / 6, np.pi / 3, np.pi / 2, 2 * np.pi / 3):
        u, v = e1, np.cos(theta) * e1 + np.sin(theta) * e2
        for sigma in (0.5, 1.0, 2.0):
            bias = sigma * rng.standard_normal(T)
            p = float((np.sign(A @ u + bias) == np.sign(A @ v + bias)).mean())
            s = sigma ** corrected_sigma_power
            rho = (np.cos(theta) + s) / (1 + s)              # correlation of a·u + b, a·v + b
            predicted = 1 - corrected_angle_factor * np.arccos(rho) / np.pi
            corr = max(corr, abs(p - predicted) - tol)
            row = {"theta": float(theta), "sigma_b": sigma, "collision": p,
                   "claimed": float(1 - angle_factor * theta / np.pi),
                   "corrected_prediction": float(predicted)}
            rows.append(row)
            if abs(p - row["claimed"]) - tol > worst:
                worst, worst_row = abs(p - row["claimed"]) - tol, row
        # the project's LSHIndex: offset-free SimHash hyperplanes
        index = LSHIndex(d, nbits=64, n_tables=T // 64 // 4, seed=int(rng.integers(1 << 30)))
        ku, kv = index.hash_keys(np.stack([u, v]).astype(np.float32))
        n_bits = ku.size * 64
        p_index = 1 - float(np.unpackbits((ku ^ kv).view(np.uint8)).mean())
        corr = max(corr, abs(p_index - (1 - corrected_angle_factor * theta / np.pi))
                   - 6 * math.sqrt(0.25 / n_bits))
        rows.append({"theta": float(theta), "LSHIndex_bit_collision": p_index, "bits": n_bits})
    return judge({"cases": rows}, worst, 0.0, counterexample=worst_row,
                 corrected="For unit u, v with a ~ N(0, I) and b ~ N(0, σ²): Pr[h(u) = h(v)] "
                           "= 1 − arccos((cos θ + σ²)/(1 + σ²))/π, which is > 1 − θ/π and "
                           "depends on the norms; only b = 0 (SimHash, h = sign(a·v), as "
                           "LSHIndex uses) gives the angular-LSH probability 1 − θ/π. The "
                           "offset form belongs to p-stable L2 LSH, ⌊(a·v + b)/w⌋ with "
                           "b ~ U[0, w).",
                 corrected_violation=corr)


def _claimed_mrr(relevance, reciprocal_power: float, rank_of: str) -> float:
    """``(1/|Q|) Σ_i 1/rank_i^p`` of 0/1 relevance rows (ranked lists), ``rank_i`` the
    1-based position of the first (or last) relevant entry; nan when a row has none."""
    ranks = []
    for row in relevance:
        hits = np.flatnonzero(row) + 1
        ranks.append(np.nan if not len(hits) else hits[0] if rank_of == "first" else hits[-1])
    return float(np.mean(1.0 / np.asarray(ranks, float) ** reciprocal_power))


@claim("rag_math_foundations/mrr",
       "MRR = (1/|Q|) Σ_i 1/rank_i, rank_i the position of the first relevant document.",
       "The formula with 1/rank_i^reciprocal_power and rank_i of the first (rank_of) "
       "relevant entry, on hand cases with textbook values (exact fractions) and on FlatIndex "
       "result lists of random queries with 5 % of the collection relevant, against the "
       "project's mrr (another route), on the queries with a relevant document in their "
       "list. The unconditional variant: all queries, where a list without a relevant "
       "document has no rank_i.",
       refuted_by=({"reciprocal_power": 0.5}, {"rank_of": "last"}))
def mrr(rng, fast, *, reciprocal_power=1.0, rank_of="first"):
    """Worst absolute error (MRR lies in [0, 1])."""
    hand = [([[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]], (Fraction(1, 2) + 1 + Fraction(1, 3)) / 3),
            ([[1, 1], [1, 0]], Fraction(1)), ([[0, 0, 0, 1, 1]], Fraction(1, 4))]
    cases = [{"relevance": str(r), "claimed": _claimed_mrr(np.array(r), reciprocal_power,
                                                           rank_of), "textbook": float(v)}
             for r, v in hand]
    nq, n, d, k = (50, 2_000, 16, 20) if fast else (200, 10_000, 16, 20)
    x = rng.standard_normal((n, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    index = FlatIndex(d, "l2")
    index.add(x)
    _, I = index.search(q, k)
    relevant = rng.random(n) < 0.05
    found = relevant[I].any(axis=1)
    judged = [np.flatnonzero(relevant)] * int(found.sum())
    library = mean_reciprocal_rank(I[found], judged)
    claimed = _claimed_mrr(relevant[I[found]], reciprocal_power, rank_of)
    errors = [abs(c["claimed"] - c["textbook"]) for c in cases] + [abs(claimed - library)]
    i = int(np.argmax(errors))
    everything = _claimed_mrr(relevant[I], reciprocal_power, rank_of)
    return judge({"hand_cases": cases, "random_claimed": claimed, "random_library": library,
                  "queries_without_relevant": int((~found).sum()),
                  "all_queries_claimed": everything},
                 max(errors), 1e-12,
                 counterexample=cases[i] if i < len(cases) else
                 {"claimed": claimed, "library_mrr": library},
                 conditions="every query has a relevant document in its result list; "
                            "otherwise rank_i is undefined and 1/rank_i must be taken as 0 "
                            "(as retgen_ref.rag.mrr does)",
                 unconditional_violation=_worst([abs(everything - mean_reciprocal_rank(
                     I, [np.flatnonzero(relevant)] * nq))]))


@claim("rag_math_foundations/ndcg",
       "NDCG@k = DCG@k / IDCG@k, DCG@k = Σ_{i≤k} (2^{rel_i} − 1)/log2(i + 1).",
       "DCG with gain gain_base^rel − 1 and discount log2(i + discount_offset); IDCG@k "
       "read as the DCG@k of the ideal order of ALL judged documents (the note does not "
       "define it). A hand case, recomputed; random graded relevance (0..3) and random "
       "permutations against the project's ndcg_at_k (another route), NDCG ∈ [0, 1] and "
       "the ideal ranking giving 1. The unconditional variant: a query with no relevant "
       "document (IDCG = 0), and IDCG taken from the retrieved list only.",
       refuted_by=({"gain_base": 3.0}, {"discount_offset": 2.0}))
def ndcg(rng, fast, *, gain_base=2.0, discount_offset=1.0):
    """Worst absolute error / excess (NDCG lies in [0, 1])."""
    def claimed(ranked_rel, all_rel, k):
        return _dcg(ranked_rel, k, gain_base, discount_offset) / _dcg(
            np.sort(all_rel)[::-1], k, gain_base, discount_offset)

    rel = [3, 2, 3, 0, 1, 2]
    textbook = 7 + 3 / math.log2(3) + 7 / 2 + 0 + 1 / math.log2(6) + 3 / math.log2(7)
    worst = abs(_dcg(rel, 6, gain_base, discount_offset) - textbook) / textbook
    worst_row = {"hand_dcg": _dcg(rel, 6, gain_base, discount_offset), "textbook": textbook}
    for _ in range(300 if fast else 3_000):
        n = int(rng.integers(1, 30))
        all_rel = rng.integers(0, 4, size=n)
        all_rel[rng.integers(n)] = rng.integers(1, 4)          # at least one relevant
        k = int(rng.integers(1, n + 1))
        perm = rng.permutation(n)
        value = claimed(all_rel[perm], all_rel, k)
        library = ndcg_at_k(perm[None], [dict(enumerate(all_rel))], k)
        ideal = claimed(np.sort(all_rel)[::-1], all_rel, k)
        excess = max(abs(value - library), value - 1, -value, abs(ideal - 1))
        if excess > worst:
            worst, worst_row = excess, {"relevance": all_rel.tolist(), "ranking": perm.tolist(),
                                        "k": k, "claimed": value, "library_ndcg": library}
    with np.errstate(invalid="ignore", divide="ignore"):
        all_irrelevant = float(np.float64(_dcg(np.zeros(3), 3)) / _dcg(np.zeros(3), 3))
    # IDCG from the retrieved list: ids 0, 1 retrieved (rel 1, 0), ids 2, 3 (rel 3) not
    list_only = claimed(np.array([1, 0]), np.array([1, 0]), 2)
    all_judged = claimed(np.array([1, 0]), np.array([1, 0, 3, 3]), 2)
    return judge({"worst_case": worst_row, "all_irrelevant_ndcg": all_irrelevant,
                  "idcg_from_retrieved_list_only": list_only,
                  "idcg_from_all_judged": all_judged},
                 worst, 1e-12, counterexample=worst_row,
                 conditions="at least one judged document with rel > 0 (else IDCG = 0 and "
                            "NDCG = 0/0), and IDCG@k computed from all judged documents, not "
                            "from the retrieved list (which would give a poor list NDCG = 1)",
                 unconditional_violation=_worst([all_irrelevant, list_only - all_judged]))
