"""``retgen.md`` §2: the duality of attention and retrieval (Theorems 2.1–2.3).

Checked with the project's :mod:`retgen_ref.attention` (softmax vs retrieval attention,
top-k error bound) and :mod:`retgen_ref.features` (random Fourier features).
"""

from __future__ import annotations

import numpy as np

from ..attention import dropped_mass, retrieval_attention, softmax_attention, topk_error_bound
from ..features import RandomFourierFeatures, kernel_matrix, paper_kernel_estimate
from .registry import claim, judge


@claim("retgen/thm2.1",
       "softmax(qKᵀ/√d)V equals retrieval attention Σ exp(s(q,k_i)/τ) v_i / Σ exp(s(q,k_j)/τ) "
       "with s(q,k) = q·k, τ = √d over a database holding exactly the same (k_i, v_i).",
       "Two independent computations on random Q, K, V of several sizes and query scales: "
       "softmax_attention (a dense matrix product) against retrieval through the index "
       "path (a FlatIndex search returning all n keys, scores recomputed from the retrieved "
       "keys, τ = d^tau_exponent); max |difference| relative to max |V|. Evidence also "
       "reports the top-k version's error against the bound 2ε·max‖v‖.",
       refuted_by=({"tau_exponent": 0.6}, {"tau_exponent": 0.4}))
def thm2_1(rng, fast, *, tau_exponent=0.5):
    """Identity up to float64 rounding; top-k shown as what happens without the condition."""
    cases, worst, worst_case = [], 0.0, None
    topk = []
    for n, d, scale in ((200, 16, 1.0), (1_000, 64, 3.0), (3_000 if not fast else 1_500, 32, 8.0)):
        Q = rng.standard_normal((20, d)) * scale
        K = rng.standard_normal((n, d))
        V = rng.standard_normal((n, 8))
        exact = softmax_attention(Q, K, V)
        ret = retrieval_attention(Q, K, V, k=n, tau=d ** tau_exponent).output
        rel = float(np.abs(exact - ret).max() / np.abs(V).max())
        if rel >= worst:
            worst, worst_case = rel, {"n": n, "d": d, "query_scale": scale,
                                      "tau": d ** tau_exponent, "max_rel_diff": rel}
        cases.append({"n": n, "d": d, "query_scale": scale, "max_rel_diff": rel})
        for k in (1, 10, 50):
            res = retrieval_attention(Q, K, V, k=k)
            eps = dropped_mass(Q, K, res.ids)
            err = np.linalg.norm(exact - res.output, axis=1)
            bound = topk_error_bound(eps, V)
            topk.append({"n": n, "d": d, "k": k, "max_error": float(err.max()),
                         "max_ratio_error_to_bound": float((err / np.maximum(bound, 1e-300)).max()),
                         "mean_eps": float(eps.mean())})
    return judge({"exact_cases": cases, "topk_cases": topk}, worst, 1e-12,
                 counterexample=worst_case)


@claim("retgen/thm2.2",
       "For any kernel κ there is a feature map φ with κ(q,k) = ⟨φ(q), φ(k)⟩; finitely, "
       "κ(q,k) ≈ (1/D) Σ cos(ω_iᵀq + b_i) cos(ω_iᵀk + b_i), ω ~ p(ω), b ~ U[0, 2π].",
       "(a) the printed random-Fourier estimator for the Gaussian kernel exp(−‖q−k‖²/2) "
       "(ω ~ N(0, I)): its mean over D features vs κ, allowing 5 Monte-Carlo standard errors; "
       "(b) 'any kernel': a feature map exists only if every Gram matrix is PSD — the "
       "smallest eigenvalue of a tanh (sigmoid) kernel Gram matrix. Violation = the larger "
       "excess of (a) and (b). The estimator's scale is the claimed quantity (1/D printed, "
       "feature_scale/D checked); the correction's is 2/D.",
       refuted_by=({"feature_scale": 1.5}, {"feature_scale": 0.5}),
       correction_broken_by=({"corrected_scale": 1.8}, {"corrected_scale": 2.2}))
def thm2_2(rng, fast, *, feature_scale=1.0, corrected_scale=2.0):
    d, D = 8, (100_000 if fast else 400_000)
    x = rng.standard_normal((12, d)) * 0.5
    y = x + rng.standard_normal((12, d)) * rng.uniform(0.05, 0.8, (12, 1))
    kappa = np.exp(-((x - y) ** 2).sum(axis=1) / 2)
    rff = RandomFourierFeatures(d, D, "gaussian", 1.0, seed=int(rng.integers(1 << 30)))
    cx = np.cos(x @ rff.omega_.T + rff.offset_)
    cy = np.cos(y @ rff.omega_.T + rff.offset_)
    terms = cx * cy  # per-feature terms of the printed estimator, pair-wise (diagonal)
    # The printed estimator through the library's function, and the corrected one through
    # the feature map z = √(2/D)·cos(Ωx + b): two routes to the same per-feature terms.
    printed = np.array([paper_kernel_estimate(x[i:i + 1], y[i:i + 1], rff)[0, 0]
                        for i in range(len(x))])
    paper_mean = feature_scale * printed
    se = feature_scale * terms.std(axis=1) / np.sqrt(D)
    paper_excess = np.abs(paper_mean - kappa) - 5 * se
    z_dot = (rff.transform(x) * rff.transform(y)).sum(axis=1)  # = (2/D) Σ cos·cos
    corr_mean = corrected_scale / 2 * z_dot
    corr_se = corrected_scale * terms.std(axis=1) / np.sqrt(D)
    corr_excess = np.abs(corr_mean - kappa) - 5 * corr_se
    # (b) positive definiteness
    pts = rng.standard_normal((40, d))
    tanh_min_eig = float(np.linalg.eigvalsh(np.tanh(pts @ pts.T - 1.0)).min())
    gauss_min_eig = float(np.linalg.eigvalsh(kernel_matrix(pts, pts, "gaussian", 1.0)).min())
    scale_gram = 1e-9 * 40  # round-off allowance on a 40×40 Gram of O(1) entries
    i = int(np.argmax(paper_excess))
    violation = max(float(paper_excess.max()), -tanh_min_eig - scale_gram)
    corrected_violation = max(float(corr_excess.max()), -gauss_min_eig - scale_gram)
    evidence = {"D": D, "kappa": kappa.round(4).tolist(),
                "paper_estimate": paper_mean.round(4).tolist(),
                "mean_ratio_paper_over_kappa": float((paper_mean / kappa).mean()),
                "corrected_estimate": corr_mean.round(4).tolist(),
                "max_mc_se": float(se.max()),
                "tanh_kernel_min_eigenvalue": tanh_min_eig,
                "gaussian_kernel_min_eigenvalue": gauss_min_eig}
    return judge(evidence, violation, 0.0,
                 counterexample={"pair": i, "kappa": kappa[i], "paper_estimate": paper_mean[i],
                                 "mc_se": se[i], "D": D,
                                 "tanh_kernel_gram_min_eigenvalue": tanh_min_eig},
                 corrected="Only positive-definite κ (Mercer/Bochner) have a feature map — the "
                           "tanh kernel does not; for shift-invariant κ with κ(0)=1 the unbiased "
                           "RFF map is z(x) = √(2/D)·cos(Ωx + b), i.e. κ ≈ (2/D) Σ cos·cos; the "
                           "printed 1/D estimator has mean κ/2.",
                 corrected_violation=corrected_violation)


def _mutual_information(P_y_given_q: np.ndarray) -> float:
    """I(Q; Y) in nats, Q uniform over the rows, Y | q ~ row q."""
    P = np.clip(P_y_given_q, 0.0, None)
    P = P / P.sum(axis=1, keepdims=True)
    py = P.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(P > 0, P * np.log(P / py), 0.0)
    return float(t.sum(axis=1).mean())


@claim("retgen/thm2.3",
       "The duality preserves mutual information: I_param(Q;Y) = I_ret(Q;Y).",
       "Discrete toy: Q uniform over nq queries, Y a class label drawn from the attention "
       "distribution over n keys (values = one-hot labels, so the attention output IS "
       "P(Y|q)). I(Q;Y) computed exactly for softmax attention and for retrieval attention "
       "through the index (all n keys retrieved, τ = d^tau_exponent), and for top-k "
       "retrieval (k = 1, 5, 50), where the duality's conditions fail: the unconditional "
       "case. A claim that the identity survives top-k (retrieved=k) must be refuted.",
       refuted_by=({"tau_exponent": 0.6}, {"retrieved": 5}))
def thm2_3(rng, fast, *, tau_exponent=0.5, retrieved=None):
    nq, n, d, C = (100, 500, 16, 6) if fast else (300, 2_000, 16, 6)
    Q = rng.standard_normal((nq, d)) * 2.0
    K = rng.standard_normal((n, d))
    labels = rng.integers(C, size=n)
    V = np.eye(C)[labels]
    i_param = _mutual_information(softmax_attention(Q, K, V))
    i_ret = _mutual_information(retrieval_attention(
        Q, K, V, k=n if retrieved is None else retrieved, tau=d ** tau_exponent).output)
    topk = {k: _mutual_information(retrieval_attention(Q, K, V, k=k).output)
            for k in (1, 5, 50)}
    worst_k = max(topk, key=lambda k: abs(i_param - topk[k]))
    evidence = {"I_param_nats": i_param, "I_ret_nats": i_ret,
                "I_ret_topk_nats": {f"k={k}": v for k, v in topk.items()}}
    # Mutual information of O(1) nats, computed in float64: 1e-10 relative is rounding.
    tolerance = 1e-10 * max(i_param, 1.0)
    return judge(evidence, abs(i_param - i_ret), tolerance,
                 counterexample={"I_param_nats": i_param, "I_ret_nats": i_ret,
                                 "retrieved": retrieved, "tau": d ** tau_exponent},
                 conditions="exact retrieval: the database holds exactly the model's (k_i, v_i), "
                            "every key is scored, s = q·k and τ = √d (Theorem 2.1's conditions); "
                            f"top-k retrieval changes I(Q;Y) (k={worst_k}: "
                            f"{topk[worst_k]:.4f} vs {i_param:.4f} nats)",
                 unconditional_violation=abs(i_param - topk[worst_k]))
