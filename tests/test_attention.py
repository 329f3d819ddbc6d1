"""Softmax attention as retrieval (retgen.md §2.1–2.2, Theorem 2.1) and the top-k error bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from retgen_ref import FlatIndex
from retgen_ref.attention import (
    attention_weights,
    dropped_mass,
    multi_head_attention,
    retrieval_attention,
    softmax_attention,
    topk_error_bound,
)


def _naive_attention(Q, K, V, scale):
    """One query, one key at a time, straight from Theorem 2.1 Step 1 (float64)."""
    out = np.zeros((len(Q), V.shape[1]))
    for j, q in enumerate(Q):
        w = np.array([np.exp(float(q @ k) * scale) for k in K])
        out[j] = (w / w.sum()) @ V
    return out


def _rand(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def _qkv(seed, nq=5, n=30, d=8, dv=3):
    rng = np.random.default_rng(seed)
    return _rand(rng, nq, d), _rand(rng, n, d), _rand(rng, n, dv)


@st.composite
def _qkv_cases(draw, max_n=12):
    nq, n = draw(st.integers(1, 5)), draw(st.integers(1, max_n))
    d, dv = draw(st.integers(1, 6)), draw(st.integers(1, 4))
    el = st.floats(-5, 5, allow_nan=False, allow_infinity=False)
    return (draw(arrays(np.float64, (nq, d), elements=el)),
            draw(arrays(np.float64, (n, d), elements=el)),
            draw(arrays(np.float64, (n, dv), elements=st.floats(-10, 10))))


# -- softmax attention --------------------------------------------------------------
@pytest.mark.parametrize("scale", [None, 0.3])
def test_softmax_attention_matches_naive(scale):
    Q, K, V = _qkv(0)
    expected = _naive_attention(Q, K, V, 1 / np.sqrt(8) if scale is None else scale)
    np.testing.assert_allclose(softmax_attention(Q, K, V, scale=scale), expected, rtol=1e-12, atol=1e-12)


def test_softmax_attention_is_stable_for_huge_scores():
    # scores 800 and 799: exp overflows without the max shift; weights are 1/(1+e^-1), ...
    Q, K, V = np.array([[1.0]]), np.array([[800.0], [799.0]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    p = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(softmax_attention(Q, K, V, scale=1.0), [[p, 1 - p]], rtol=1e-14)


def test_weights_rows_sum_to_one_and_match_softmax():
    Q, K, V = _qkv(1)
    P = attention_weights(Q, K)
    assert P.shape == (5, 30) and (P > 0).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(P @ V, softmax_attention(Q, K, V), rtol=1e-14, atol=1e-14)


def test_batched_equals_per_item_loop_with_broadcasting():
    rng = np.random.default_rng(2)
    Q, K, V = _rand(rng, 2, 3, 4, 6), _rand(rng, 3, 7, 6), _rand(rng, 2, 1, 7, 5)  # batch (2,3)
    out = softmax_attention(Q, K, V)
    assert out.shape == (2, 3, 4, 5)
    for a in range(2):
        for b in range(3):
            np.testing.assert_allclose(out[a, b], _naive_attention(Q[a, b], K[b], V[a, 0], 1 / np.sqrt(6)),
                                       rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [(), (2,)])
def test_multi_head_equals_manual_per_head(batch):
    rng = np.random.default_rng(3)
    h, dh, dvh, dm, dkv, dout = 3, 4, 2, 10, 7, 5
    Xq, Xkv = _rand(rng, *batch, 6, dm), _rand(rng, *batch, 9, dkv)
    Wq, Wk = _rand(rng, dm, h * dh), _rand(rng, dkv, h * dh)
    Wv, Wo = _rand(rng, dkv, h * dvh), _rand(rng, h * dvh, dout)
    out = multi_head_attention(Xq, Xkv, Wq, Wk, Wv, Wo, n_heads=h)
    assert out.shape == (*batch, 6, dout)
    for b in np.ndindex(*batch):
        heads = [_naive_attention(Xq[b] @ Wq[:, i * dh:(i + 1) * dh], Xkv[b] @ Wk[:, i * dh:(i + 1) * dh],
                                  Xkv[b] @ Wv[:, i * dvh:(i + 1) * dvh], 1 / np.sqrt(dh)) for i in range(h)]
        np.testing.assert_allclose(out[b], np.concatenate(heads, axis=1) @ Wo, rtol=1e-10, atol=1e-10)


# -- retrieval attention (Theorem 2.1) ------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(_qkv_cases())
def test_retrieval_without_k_equals_softmax_attention(case):
    Q, K, V = case
    result = retrieval_attention(Q, K, V)
    assert np.abs(result.output - softmax_attention(Q, K, V)).max() <= 1e-12
    assert result.ids.shape == (len(Q), len(K)) and (result.ids == np.arange(len(K))).all()


def test_explicit_tau_is_the_temperature():
    Q, K, V = _qkv(4)
    np.testing.assert_allclose(retrieval_attention(Q, K, V, tau=2.5).output,
                               _naive_attention(Q, K, V, 1 / 2.5), rtol=1e-12, atol=1e-12)


def test_retrieval_with_k_equal_n_is_exact():
    Q, K, V = _qkv(5)
    result = retrieval_attention(Q, K, V, k=len(K))
    np.testing.assert_allclose(result.output, softmax_attention(Q, K, V), rtol=1e-12, atol=1e-12)
    assert (np.sort(result.ids, axis=1) == np.arange(len(K))).all()


@pytest.mark.parametrize("seed", [6, 7])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_retrieval_top_k_equals_brute_force_renormalised(seed, k):
    Q, K, V = _qkv(seed, nq=8, n=200, d=16, dv=4)
    result = retrieval_attention(Q, K, V, k=k, tau=1.7)
    scores = Q @ K.T / 1.7
    top = np.argsort(-scores, axis=1)[:, :k]
    assert (np.sort(result.ids, axis=1) == np.sort(top, axis=1)).all()
    for j in range(len(Q)):
        w = np.exp(scores[j, top[j]] - scores[j, top[j]].max())
        np.testing.assert_allclose(result.output[j], (w / w.sum()) @ V[top[j]], rtol=1e-12, atol=1e-12)
    assert not np.allclose(result.output, softmax_attention(Q, K, V, scale=1 / 1.7))  # k < n changes it


class _WorstKeysIndex:
    """A deliberately bad 'index': returns the k *lowest*-scoring keys and junk distances."""

    def __init__(self, K):
        self.K, self.d, self.ntotal = K, K.shape[1], len(K)

    def search(self, Q, k):
        ids = np.argsort(np.asarray(Q) @ self.K.T, axis=1)[:, :k]
        return np.zeros(ids.shape, np.float32), ids


def test_custom_index_only_selects_and_scores_are_exact():
    Q, K, V = _qkv(8, n=40)
    result = retrieval_attention(Q, K, V, k=4, index=_WorstKeysIndex(K))
    scale = 1 / np.sqrt(8)
    for j in range(len(Q)):
        S = result.ids[j]
        np.testing.assert_allclose(result.output[j], _naive_attention(Q[j:j + 1], K[S], V[S], scale)[0],
                                   rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(result.ids, _WorstKeysIndex(K).search(Q, 4)[1])


def test_padding_ids_when_k_exceeds_n_get_zero_weight():
    Q, K, V = _qkv(9, n=5)
    result = retrieval_attention(Q, K, V, k=8)
    assert result.ids.shape == (5, 8) and (result.ids[:, 5:] == -1).all()
    np.testing.assert_allclose(result.output, softmax_attention(Q, K, V), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(dropped_mass(Q, K, result.ids), 0.0)


def test_padding_from_a_custom_index_mid_row():
    Q, K, V = _qkv(10, nq=2, n=6)

    class Padded:
        def search(self, Q, k):
            return None, np.array([[3, -1, 0], [-1, -1, 5]])

    result = retrieval_attention(Q, K, V, k=3, index=Padded())
    np.testing.assert_allclose(result.output[0], softmax_attention(Q[:1], K[[3, 0]], V[[3, 0]])[0], rtol=1e-12)
    np.testing.assert_allclose(result.output[1], V[5], rtol=1e-12)  # a single key gets weight 1


def test_retrieval_accepts_a_prebuilt_flat_index():
    Q, K, V = _qkv(11)
    index = FlatIndex(8, "ip")
    index.add(K)
    np.testing.assert_array_equal(retrieval_attention(Q, K, V, k=5, index=index).output,
                                  retrieval_attention(Q, K, V, k=5).output)


# -- dropped mass and the top-k error bound -------------------------------------------
def test_dropped_mass_matches_naive_and_keeps_tiny_values():
    Q, K, _ = _qkv(12)
    ids = np.argsort(-(Q @ K.T), axis=1)[:, :7]
    P = attention_weights(Q, K)
    np.testing.assert_allclose(dropped_mass(Q, K, ids), 1 - np.take_along_axis(P, ids, axis=1).sum(axis=1),
                               rtol=1e-10)
    # scores 50 and 0 with tau=1: eps = e^-50/(1+e^-50), which 1 - p_S would round to 0
    eps = dropped_mass([[1.0]], [[50.0], [0.0]], [[0]], tau=1.0)
    np.testing.assert_allclose(eps, np.exp(-50) / (1 + np.exp(-50)), rtol=1e-14)


@settings(max_examples=80, deadline=None)
@given(_qkv_cases(max_n=15), st.data())
def test_top_k_error_is_bounded_by_dropped_mass(case, data):
    Q, K, V = case
    k = data.draw(st.integers(1, len(K)))
    exact = softmax_attention(Q, K, V)
    result = retrieval_attention(Q, K, V, k=k)
    eps = dropped_mass(Q, K, result.ids)
    bound = topk_error_bound(eps, V)
    err = np.linalg.norm(exact - result.output, axis=1)
    slack = 1e-12 * (1 + np.abs(V).max())
    assert (err <= bound + slack).all()
    diam = np.linalg.norm(V[:, None] - V[None], axis=2).max()
    assert (err <= eps * diam + slack).all()  # the sharper form in the docstring


@pytest.mark.parametrize("a", [0.5, 3.0, 12.0])
def test_bound_is_tight_for_two_opposite_values(a):
    # scores a and 0 (tau=1), values +u and -u with |u| = 1, keep the first key:
    # A = (1-2eps) u, A_1 = u, so |A - A_1| = 2 eps = bound.
    Q, K = np.array([[1.0]]), np.array([[a], [0.0]])
    u = np.array([0.6, 0.8])
    V = np.stack([u, -u])
    result = retrieval_attention(Q, K, V, k=1, tau=1.0)
    assert result.ids.tolist() == [[0]]
    eps = dropped_mass(Q, K, result.ids, tau=1.0)
    np.testing.assert_allclose(eps, 1 / (1 + np.exp(a)), rtol=1e-14)
    err = np.linalg.norm(softmax_attention(Q, K, V, scale=1.0) - result.output, axis=1)
    np.testing.assert_allclose(err / topk_error_bound(eps, V), 1.0, rtol=1e-9)


def test_error_bound_shape_follows_eps():
    V = np.array([[3.0, 4.0], [1.0, 0.0]])
    assert topk_error_bound(0.25, V) == pytest.approx(2.5)
    np.testing.assert_allclose(topk_error_bound([0.0, 0.1], V), [0.0, 1.0])


# -- validation -----------------------------------------------------------------------
def test_shape_mismatches_are_explained():
    Q, K, V = _qkv(13)
    with pytest.raises(ValueError, match="K has 30 rows .* V has 29"):
        softmax_attention(Q, K, V[:-1])
    with pytest.raises(ValueError, match="K has 30 rows .* V has 29"):
        retrieval_attention(Q, K, V[:-1])
    with pytest.raises(ValueError, match="Q has 8 columns but K has 7"):
        softmax_attention(Q, K[:, :7], V)
    with pytest.raises(ValueError, match=r"K has 7 columns; expected d \(the columns of Q\)=8"):
        retrieval_attention(Q, K[:, :7], V)
    with pytest.raises(ValueError, match="batch dimensions .* do not broadcast"):
        softmax_attention(np.ones((2, 3, 4)), np.ones((3, 5, 4)), np.ones((3, 5, 2)))
    with pytest.raises(ValueError, match=r"Q must have shape \(\.\.\., rows, columns\)"):
        softmax_attention(Q[0], K, V)


def test_non_finite_input_is_refused():
    Q, K, V = _qkv(14)
    Q[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"Q contains NaN or infinity \(first at index \[1, 2\]\)"):
        softmax_attention(Q, K, V)
    V[0, 0] = np.inf
    with pytest.raises(ValueError, match="V contains NaN or infinity"):
        retrieval_attention(K[:3], K, V, k=2)


@pytest.mark.parametrize("k, exc, msg", [(0, ValueError, "k must be >= 1"), (-3, ValueError, "k must be >= 1"),
                                         (2.5, TypeError, "k must be an integer"),
                                         (True, TypeError, "k must be an integer")])
def test_bad_k(k, exc, msg):
    Q, K, V = _qkv(15)
    with pytest.raises(exc, match=msg):
        retrieval_attention(Q, K, V, k=k)


@pytest.mark.parametrize("value", [0, -1.0, np.inf])
def test_bad_temperature_and_scale(value):
    Q, K, V = _qkv(16)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        retrieval_attention(Q, K, V, tau=value)
    with pytest.raises(ValueError, match="tau must be a finite number > 0"):
        dropped_mass(Q, K, [[0]] * 5, tau=value)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        softmax_attention(Q, K, V, scale=value)


def test_bad_index_is_refused():
    Q, K, V = _qkv(17)
    wrong_d = FlatIndex(9, "ip")
    wrong_d.add(np.ones((30, 9)))
    with pytest.raises(ValueError, match="index was built for d=9 but K has 8 columns"):
        retrieval_attention(Q, K, V, k=3, index=wrong_d)
    short = FlatIndex(8, "ip")
    short.add(K[:10])
    with pytest.raises(ValueError, match="index holds 10 vectors but K has 30 rows"):
        retrieval_attention(Q, K, V, k=3, index=short)
    with pytest.raises(ValueError, match="pass k as well"):
        retrieval_attention(Q, K, V, index=short)


@pytest.mark.parametrize("ids, msg", [
    ([[0, 30]], r"ids\[0, 1\] = 30 is neither a row of K"),
    ([[-2, 1]], r"ids\[0, 0\] = -2 is neither a row of K"),
    ([[4, 4]], "selects key 4 more than once"),
    ([[-1, -1]], "query 0 has no ids"),
    ([[1, 2, 3]], r"ids must have shape \(1, 2\)"),
])
def test_bad_ids_from_a_custom_index(ids, msg):
    Q, K, V = _qkv(18, nq=1)

    class Bad:
        def search(self, Q, k):
            return None, np.array(ids)

    with pytest.raises(ValueError, match=msg):
        retrieval_attention(Q, K, V, k=2, index=Bad())


def test_bad_dropped_mass_and_bound_arguments():
    Q, K, V = _qkv(19)
    with pytest.raises(ValueError, match=r"ids must have shape \(5, k\)"):
        dropped_mass(Q, K, [[0]])
    with pytest.raises(TypeError, match="ids must be integers"):
        dropped_mass(Q, K, np.zeros((5, 1)))
    with pytest.raises(ValueError, match=r"eps must lie in \[0, 1\]"):
        topk_error_bound([0.5, 1.5], V)
    with pytest.raises(ValueError, match="eps contains NaN"):
        topk_error_bound(np.nan, V)


def test_bad_multi_head_arguments():
    rng = np.random.default_rng(20)
    X, W, Wo = _rand(rng, 4, 6), _rand(rng, 6, 6), _rand(rng, 6, 3)
    with pytest.raises(ValueError, match="Wq has 6 columns, not divisible by n_heads=4"):
        multi_head_attention(X, X, W, W, W, Wo, n_heads=4)
    with pytest.raises(ValueError, match="Wk has 5 rows but X_kv has 6 columns"):
        multi_head_attention(X, X, W, W[:5], W, Wo, n_heads=2)
    with pytest.raises(ValueError, match="Wo has 6 rows but Wv has 4 columns"):
        multi_head_attention(X, X, W, W, W[:, :4], Wo, n_heads=2)
    with pytest.raises(ValueError, match="Wq has 6 columns but Wk has 4"):
        multi_head_attention(X, X, W, W[:, :4], W, Wo, n_heads=2)
    with pytest.raises(ValueError, match="n_heads must be >= 1"):
        multi_head_attention(X, X, W, W, W, Wo, n_heads=0)
