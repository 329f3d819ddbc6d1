"""FlatIndex: exact search against the float64 reference, both kernel paths, FAISS conventions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from concurrency import assert_concurrent_searches_agree
from retgen_ref import FlatIndex, distances
from retgen_ref.reference import exact_search, pairwise_scores

METRICS = ["l2", "ip", "cosine"]


def _data(n, d, nq, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((nq, d)).astype(np.float32)


def _assert_matches_reference(index, xb, xq, k):
    D, I = index.search(xq, k)
    D_ref, I_ref = exact_search(xq, xb, k, index.metric)
    assert D.dtype == np.float32 and I.dtype == np.int64 and D.shape == I.shape == (len(xq), k)
    np.testing.assert_allclose(D, D_ref, rtol=1e-4, atol=1e-4)
    # ids may differ from the reference only among candidates of (nearly) equal score
    scores = pairwise_scores(xq, xb, index.metric)
    np.testing.assert_allclose(np.take_along_axis(scores, I, axis=1), D_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("nq", [1, 7, 50])  # below and above distances.BLAS_THRESHOLD
def test_search_equals_reference(metric, nq):
    xb, xq = _data(3000, 24, nq)
    index = FlatIndex(24, metric)
    index.add(xb)
    _assert_matches_reference(index, xb, xq, 10)


@pytest.mark.parametrize("metric", METRICS)
def test_tiled_batch_path_equals_reference(metric, monkeypatch):
    monkeypatch.setattr(distances, "QUERY_BLOCK", 16)
    monkeypatch.setattr(distances, "BASE_BLOCK", 100)
    xb, xq = _data(1000, 8, 40, seed=1)
    index = FlatIndex(8, metric)
    index.add(xb)
    _assert_matches_reference(index, xb, xq, 15)


@pytest.mark.parametrize("nq", [3, 30])
def test_ties_are_broken_by_id(nq):
    xb = np.repeat(np.eye(4, dtype=np.float32), 5, axis=0)  # 5 copies of each unit vector
    index = FlatIndex(4)
    index.add(xb)
    D, I = index.search(np.tile(np.eye(4, dtype=np.float32)[:1], (nq, 1)), 7)
    assert I[0].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert D[0].tolist() == [0, 0, 0, 0, 0, 2, 2]
    assert (I == I[0]).all()


@pytest.mark.parametrize("nq", [3, 30])
def test_many_equal_distances_come_back_in_id_order(nq):
    xb = np.zeros((50, 3), dtype=np.float32)  # every stored vector at the same point
    index = FlatIndex(3)
    index.add(xb)
    D, I = index.search(np.ones((nq, 3)), 20)
    assert (I == np.arange(20)).all() and (D == 3).all()


@pytest.mark.parametrize("metric,pad", [("l2", np.inf), ("ip", -np.inf), ("cosine", -np.inf)])
@pytest.mark.parametrize("nq", [2, 25])
def test_k_larger_than_ntotal_is_padded(metric, pad, nq):
    xb, xq = _data(3, 5, nq)
    index = FlatIndex(5, metric)
    index.add(xb)
    D, I = index.search(xq, 6)
    assert (I[:, 3:] == -1).all() and (D[:, 3:] == pad).all()
    assert sorted(I[0, :3].tolist()) == [0, 1, 2]


def test_l2_distance_is_never_negative():
    x = (np.random.default_rng(3).standard_normal((200, 16)) * 1e3).astype(np.float32)
    index = FlatIndex(16)
    index.add(x)
    for xq in (x[:5], x[:40]):  # a vector's distance to itself suffers cancellation
        D, I = index.search(xq, 1)
        assert (D >= 0).all()
        assert (I[:, 0] == np.arange(len(xq))).all()


def test_cosine_is_scale_invariant_and_ip_is_not():
    xb, xq = _data(500, 12, 4)
    for metric, same in (("cosine", True), ("ip", False)):
        a, b = FlatIndex(12, metric), FlatIndex(12, metric)
        a.add(xb)
        b.add(xb * np.linspace(0.1, 10, 500, dtype=np.float32)[:, None])
        assert np.array_equal(a.search(xq, 5)[1], b.search(xq, 5)[1]) == same


def test_incremental_add_equals_single_add_and_reset_empties():
    xb, xq = _data(1000, 6, 30)
    one, many = FlatIndex(6), FlatIndex(6)
    one.add(xb)
    for chunk in np.array_split(xb, 17):
        many.add(chunk)
    assert many.ntotal == 1000
    assert np.array_equal(one.search(xq, 9)[1], many.search(xq, 9)[1])
    many.reset()
    assert many.ntotal == 0
    many.add(xb[:10])
    assert many.ntotal == 10 and many.search(xq, 1)[1].max() < 10


def test_accepts_float64_and_integer_input():
    index = FlatIndex(3)
    index.add(np.array([[0, 0, 0], [10, 0, 0]]))  # int64
    D, I = index.search([[9.0, 0.0, 0.0]], 1)  # list of float64
    assert I.tolist() == [[1]] and D.tolist() == [[1.0]]


def test_stored_vectors_cannot_be_modified_through_the_view():
    index = FlatIndex(2)
    index.add(np.ones((3, 2)))
    with pytest.raises(ValueError):
        index.vectors[0, 0] = 5


def test_concurrent_searches_from_threads_agree_with_sequential():
    xb, xq = _data(5000, 16, 400)
    index = FlatIndex(16)
    index.add(xb)
    assert_concurrent_searches_agree(lambda i: index.search(xq[i::8], 5), 8)


@settings(max_examples=40, deadline=None)
@given(
    data=st.integers(1, 60).flatmap(lambda n: st.integers(1, 9).flatmap(lambda d: st.tuples(
        arrays(np.float32, (n, d), elements=st.floats(-100, 100, width=32)),
        arrays(np.float32, (3, d), elements=st.floats(-100, 100, width=32))))),
    k=st.integers(1, 70),
    metric=st.sampled_from(METRICS),
)
def test_property_distances_match_reference(data, k, metric):
    xb, xq = data
    index = FlatIndex(xb.shape[1], metric)
    index.add(xb)
    D, I = index.search(xq, k)
    D_ref, _ = exact_search(xq, xb, k, metric)
    scale = 1.0 + np.abs(D_ref[np.isfinite(D_ref)]).max(initial=0.0)
    np.testing.assert_allclose(D, D_ref, atol=2e-5 * scale * max(1, xb.shape[1]), rtol=0)
    valid = I >= 0
    assert (valid.sum(1) == min(k, len(xb))).all()
    for row in I:  # no id twice
        ids = row[row >= 0]
        assert len(set(ids.tolist())) == len(ids)


@pytest.mark.parametrize("nq", [5, 300])
def test_results_do_not_depend_on_the_thread_count(nq):
    from retgen_ref import num_threads

    xb, xq = _data(20000, 32, nq, seed=4)
    index = FlatIndex(32)
    index.add(xb)
    with num_threads(1):
        D1, I1 = index.search(xq, 10)
    with num_threads(2):
        D2, I2 = index.search(xq, 10)
    assert np.array_equal(I1, I2) and np.array_equal(D1, D2)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("nq", [4, 64])
def test_parity_with_faiss_flat(metric, nq):
    faiss = pytest.importorskip("faiss")
    xb, xq = _data(4000, 32, nq, seed=5)
    ours = FlatIndex(32, metric)
    ours.add(xb)
    if metric == "cosine":  # FAISS's recipe: normalise, then inner product
        xb, xq = xb / np.linalg.norm(xb, axis=1, keepdims=True), xq / np.linalg.norm(xq, axis=1, keepdims=True)
    peer = faiss.IndexFlatL2(32) if metric == "l2" else faiss.IndexFlatIP(32)
    peer.add(xb)
    D, I = ours.search(xq, 10)
    D_peer, I_peer = peer.search(xq, 10)
    np.testing.assert_allclose(D, D_peer, rtol=1e-5, atol=1e-4)
    assert (I == I_peer).mean() > 0.99
