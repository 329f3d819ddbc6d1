"""Random feature maps (retgen.md §2.3): unbiasedness, the paper's factor-2 error, the
1/√D error rate, the stated variances, and kernel attention against the explicit formula."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp

from retgen_ref.features import (
    PositiveRandomFeatures,
    RandomFourierFeatures,
    kernel_attention,
    kernel_matrix,
    paper_kernel_estimate,
)

D_SMALL = 32
N_SEEDS = 3000
SIGMA = 1.7  # not 1, so a frequency scale of σ instead of 1/σ is caught


def _points(n=3, d=4, scale=0.5, seed=1):
    return np.random.default_rng(seed).normal(size=(n, d)) * scale


def _estimates(make, x):
    """Kernel-matrix estimates ``z(x) z(x)ᵀ``, one per seed: shape (N_SEEDS, n, n)."""
    out = []
    for s in range(N_SEEDS):
        z = make(s).transform(x)
        out.append(z @ z.T)
    return np.array(out)


def _assert_unbiased(est, true):
    se = est.std(axis=0, ddof=1) / np.sqrt(len(est))
    assert np.all(np.abs(est.mean(axis=0) - true) <= 5 * se + 1e-12), (est.mean(0), true)


def _rff(kernel, paired=False, n_features=D_SMALL):
    return lambda s: RandomFourierFeatures(4, n_features, kernel, SIGMA, seed=s, paired=paired)


def _gauss_var(kernel, x, paired):
    """Variance formulas from the RandomFourierFeatures docstring."""
    k = kernel_matrix(x, x, kernel, SIGMA)
    k2 = kernel_matrix(2 * x, 2 * x, kernel, SIGMA)  # κ(2Δ)
    return ((1 + k2 - 2 * k**2) if paired else (1 + k2 / 2 - k**2)) / D_SMALL


# --- unbiasedness and the paper's factor ------------------------------------------------

@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
@pytest.mark.parametrize("paired", [False, True])
def test_rff_is_unbiased_and_has_the_stated_variance(kernel, paired):
    x = _points()
    est = _estimates(_rff(kernel, paired), x)
    _assert_unbiased(est, kernel_matrix(x, x, kernel, SIGMA))
    var = _gauss_var(kernel, x, paired)
    off = ~np.eye(3, dtype=bool)  # paired: the diagonal is exact (variance 0)
    np.testing.assert_allclose(est.var(axis=0, ddof=1)[off], var[off], rtol=0.15)
    if paired:
        np.testing.assert_allclose(est[:, ~off], 1.0, atol=1e-12)


def test_paired_variance_is_below_offset_variance():
    x = _points()
    for kernel in ("gaussian", "laplacian"):
        assert np.all(_gauss_var(kernel, x, True) < _gauss_var(kernel, x, False))


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
def test_paper_estimator_as_printed_has_mean_half_the_kernel(kernel):
    x = _points()
    true = kernel_matrix(x, x, kernel, SIGMA)
    est = np.array([paper_kernel_estimate(x, x, _rff(kernel)(s)) for s in range(N_SEEDS)])
    se = est.std(axis=0, ddof=1) / np.sqrt(N_SEEDS)
    assert np.all(np.abs(est.mean(axis=0) - true) > 20 * se)  # biased ...
    _assert_unbiased(est, true / 2)  # ... by exactly a factor 2
    z = _rff(kernel)(0).transform(x)
    np.testing.assert_allclose(z @ z.T, 2 * paper_kernel_estimate(x, x, _rff(kernel)(0)))


@pytest.mark.parametrize("orthogonal", [False, True])
def test_positive_features_are_unbiased_for_exp_kernel(orthogonal):
    x = _points(scale=0.3)
    est = _estimates(lambda s: PositiveRandomFeatures(4, D_SMALL, s, orthogonal), x)
    _assert_unbiased(est, kernel_matrix(x, x, "exponential"))
    if not orthogonal:
        s = (x[:, None] + x[None]) ** 2
        var = np.exp(2 * x @ x.T) * (np.exp(s.sum(-1)) - 1) / D_SMALL
        np.testing.assert_allclose(est.var(axis=0, ddof=1), var, rtol=0.2)


def test_orthogonal_features_have_smaller_error():
    x = _points(n=6, d=16, scale=0.25)
    true = kernel_matrix(x, x, "exponential")

    def mse(orth):
        errs = [PositiveRandomFeatures(16, 16, s, orth).transform(x) for s in range(300)]
        return np.mean([(z @ z.T - true) ** 2 for z in errs])

    assert mse(True) < 0.8 * mse(False)


def test_orthogonal_rows_are_orthogonal_within_a_block():
    w = PositiveRandomFeatures(8, 20, seed=3, orthogonal=True).omega_
    assert w.shape == (20, 8)
    gram = w[:8] @ w[:8].T
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-10)


# --- the error falls like 1/√D ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["gaussian", "laplacian", "positive"])
def test_rmse_falls_like_one_over_sqrt_D(kind):
    x = _points(n=12, d=4, scale=0.4, seed=2)
    Ds = 2 ** np.arange(6, 13)  # 64 ... 4096
    if kind == "positive":
        true = kernel_matrix(x, x, "exponential")
        make = lambda D, s: PositiveRandomFeatures(4, int(D), s)  # noqa: E731
    else:
        true = kernel_matrix(x, x, kind, SIGMA)
        make = lambda D, s: RandomFourierFeatures(4, int(D), kind, SIGMA, s)  # noqa: E731
    rmse = []
    for D in Ds:
        sq = [np.mean(((z := make(D, s).transform(x)) @ z.T - true) ** 2) for s in range(40)]
        rmse.append(np.sqrt(np.mean(sq)))
    slope = np.polyfit(np.log(Ds), np.log(rmse), 1)[0]
    assert abs(slope + 0.5) <= 0.1, slope


# --- kernel attention -------------------------------------------------------------------

class _QuadraticFeatures:
    """Exact features of κ(q, k) = (qᵀk)²: φ(x) = vec(x xᵀ)."""

    d = 3

    def transform(self, x):
        return np.einsum("ni,nj->nij", x, x).reshape(len(x), -1)


def _softmax_attention(Q, K, V, scale=1.0):
    w = np.exp(scale * Q @ K.T - (scale * Q @ K.T).max(axis=1, keepdims=True))
    return w @ V / w.sum(axis=1, keepdims=True)


def test_kernel_attention_with_exact_features_matches_explicit_formula():
    rng = np.random.default_rng(0)
    Q, K, V = rng.normal(size=(5, 3)), rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    W = (Q @ K.T) ** 2
    np.testing.assert_allclose(kernel_attention(Q, K, V, _QuadraticFeatures()),
                               W @ V / W.sum(axis=1, keepdims=True), rtol=1e-12)


def test_positive_kernel_attention_approaches_softmax_attention():
    # the estimator's variance grows like exp(‖q + k‖²), so keep the scaled norms moderate
    d = 8
    rng = np.random.default_rng(5)
    Q, K = rng.normal(size=(10, d)) * 0.5, rng.normal(size=(40, d)) * 0.5
    V = rng.normal(size=(40, 3))
    exact = _softmax_attention(Q, K, V, scale=d**-0.5)
    s = d**-0.25
    err = {D: np.mean([np.sqrt(np.mean(
        (kernel_attention(Q * s, K * s, V, PositiveRandomFeatures(d, D, seed)) - exact) ** 2))
        for seed in range(5)]) for D in (64, 1024, 16384)}
    assert err[64] > err[1024] > err[16384]
    assert err[16384] < err[64] / 6 and err[16384] < 0.01, err


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.floats(0.1, 6.0), st.integers(0, 2**16))
def test_stabilizers_cancel_and_output_is_a_convex_combination(nq, n, scale, seed):
    rng = np.random.default_rng(seed)
    Q, K, V = (rng.normal(size=(nq, 4)) * scale, rng.normal(size=(n, 4)) * scale,
               rng.normal(size=(n, 2)))
    fm = PositiveRandomFeatures(4, 64, seed=seed)
    out = kernel_attention(Q, K, V, fm)
    assert np.all(out >= V.min(axis=0) - 1e-9) and np.all(out <= V.max(axis=0) + 1e-9)
    with np.errstate(under="ignore"):
        pq, pk = fm.transform(Q), fm.transform(K)
    den = pq @ pk.sum(axis=0)
    if scale < 2 and np.all(den > 1e-200):  # unstabilised features still representable
        np.testing.assert_allclose(out, pq @ (pk.T @ V) / den[:, None], rtol=1e-8, atol=1e-12)


def test_stabilizers_rescue_large_norms_where_plain_features_underflow():
    rng = np.random.default_rng(0)
    Q, K, V = rng.normal(size=(3, 4)) * 60, rng.normal(size=(6, 4)) * 60, rng.normal(size=(6, 2))
    fm = PositiveRandomFeatures(4, 128, seed=0)
    with np.errstate(under="ignore"):
        assert np.all(fm.transform(K) == 0)  # the unstabilised features are useless here
    assert np.all(fm.transform(Q, stabilizer="row").max(axis=1) == 1.0)
    # reference in log space: log w_ij = logsumexp_l(log φ_l(q_i) + log φ_l(k_j))
    lq = Q @ fm.omega_.T - 0.5 * (Q**2).sum(1, keepdims=True)
    lk = K @ fm.omega_.T - 0.5 * (K**2).sum(1, keepdims=True)
    log_w = logsumexp(lq[:, None, :] + lk[None, :, :], axis=2)
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    np.testing.assert_allclose(kernel_attention(Q, K, V, fm), w @ V / w.sum(1, keepdims=True),
                               rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (3, 4), elements=st.floats(-3, 3)),
       arrays(np.float64, (4,), elements=st.floats(-5, 5)),
       st.sampled_from(["gaussian", "laplacian"]))
def test_paired_features_are_exactly_shift_invariant_and_bounded(x, t, kernel):
    rff = RandomFourierFeatures(4, 64, kernel, SIGMA, seed=7, paired=True)
    z, zt = rff.transform(x), rff.transform(x + t)
    np.testing.assert_allclose(zt @ zt.T, z @ z.T, atol=1e-9)
    off = RandomFourierFeatures(4, 64, kernel, SIGMA, seed=7).transform(x)
    assert off.shape == (3, 64) and off.dtype == np.float64
    assert np.all(np.abs(off) <= np.sqrt(2 / 64) + 1e-15)


# --- seeds and validation ---------------------------------------------------------------

def test_same_seed_same_features_different_seed_different_features():
    x = _points()
    for make in (lambda s: RandomFourierFeatures(4, 16, "laplacian", seed=s),
                 lambda s: RandomFourierFeatures(4, 16, paired=True, seed=s),
                 lambda s: PositiveRandomFeatures(4, 16, seed=s, orthogonal=True)):
        np.testing.assert_array_equal(make(3).transform(x), make(3).transform(x))
        assert not np.allclose(make(3).transform(x), make(4).transform(x))
    a, b = RandomFourierFeatures(4, 16, seed=3), RandomFourierFeatures(4, 16, seed=3)
    np.testing.assert_array_equal(a.offset_, b.offset_)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: RandomFourierFeatures(4, 8, kernel="rbf"), ValueError, "'gaussian', 'laplacian'"),
    (lambda: RandomFourierFeatures(4, 0), ValueError, "n_features must be >= 1"),
    (lambda: PositiveRandomFeatures(4, -2), ValueError, "n_features must be >= 1"),
    (lambda: RandomFourierFeatures(4, 8.0), TypeError, "n_features must be an integer"),
    (lambda: RandomFourierFeatures(4, 7, paired=True), ValueError, "even"),
    (lambda: RandomFourierFeatures(4, 8, bandwidth=0), ValueError, "bandwidth"),
    (lambda: RandomFourierFeatures(4, 8).transform(np.ones((2, 3))), ValueError,
     "3 columns; expected d=4"),
    (lambda: RandomFourierFeatures(4, 8).transform([[1, 2, np.nan, 4]]), ValueError, "NaN"),
    (lambda: PositiveRandomFeatures(4, 8).transform([["a"] * 4]), TypeError, "real numbers"),
    (lambda: PositiveRandomFeatures(4, 8).transform(np.ones(4)), ValueError, "reshape"),
    (lambda: PositiveRandomFeatures(4, 8).transform(np.ones((1, 4)), "rows"), ValueError,
     "stabilizer"),
    (lambda: (lambda f: f.transform(f.omega_))(PositiveRandomFeatures(2000, 1)), ValueError,
     "overflow"),  # log φ = ‖ω‖²/2 ≈ 1000 at x = ω
    (lambda: kernel_matrix(np.ones((2, 3)), np.ones((2, 3)), "cosine"), ValueError,
     "'exponential'"),
    (lambda: kernel_matrix(np.ones((2, 3)), np.ones((2, 4))), ValueError, "4 columns"),
    (lambda: kernel_attention(np.ones((2, 4)), np.ones((3, 4)), np.ones((2, 1)),
                              PositiveRandomFeatures(4, 8)), ValueError, "V has 2 rows"),
    (lambda: kernel_attention(np.ones((2, 4)), np.ones((3, 5)), np.ones((3, 1)),
                              PositiveRandomFeatures(4, 8)), ValueError, "K has 5 columns"),
    (lambda: kernel_attention(np.ones((2, 4)), np.ones((3, 4)), np.ones((3, 1)), None),
     TypeError, "transform"),
    (lambda: paper_kernel_estimate(np.ones((1, 4)), np.ones((1, 4)),
                                   RandomFourierFeatures(4, 8, paired=True)), TypeError,
     "paired=False"),
])
def test_validation_errors_say_what_to_fix(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
