"""LSHIndex: collision probabilities of sign projections, candidates, recall, FAISS conventions."""

from __future__ import annotations

import numpy as np
import pytest

from concurrency import assert_concurrent_searches_agree
from retgen_ref import FlatIndex, LSHIndex, load_index, num_threads
from retgen_ref.reference import pairwise_scores
from retgen_ref.synthetic import clustered_unit_vectors

METRICS = ["l2", "ip", "cosine"]
ANGLES = np.pi * np.array([1 / 8, 1 / 4, 1 / 2, 3 / 4])


@pytest.fixture(scope="module")
def clustered():
    """3000 stored unit vectors and 200 held-out queries from the same mixture."""
    x = clustered_unit_vectors(3200, 32, seed=0)
    return x[:3000], x[3000:]


def _pair_at_angle(d, theta, seed=1):
    """Two unit vectors at angle ``theta`` in a random plane of R^d."""
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, 2)))
    u, v = basis[:, 0], basis[:, 1]
    return np.stack([u, np.cos(theta) * u + np.sin(theta) * v])


def _recall(I, I_ref):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(I, I_ref)])


def _assert_within_binomial_error(measured, p, n, z=4.0):
    se = np.sqrt(p * (1 - p) / n)
    assert abs(measured - p) < z * se, (measured, p, se)


@pytest.mark.parametrize("theta", ANGLES)
def test_a_hyperplane_bit_agrees_with_probability_one_minus_angle_over_pi(theta):
    index = LSHIndex(16, nbits=1, n_tables=20000, metric="ip")  # 20,000 independent bits
    keys = index.hash_keys(_pair_at_angle(16, theta))
    _assert_within_binomial_error((keys[0] == keys[1]).mean(), 1 - theta / np.pi, 20000)


@pytest.mark.parametrize("theta", ANGLES)
def test_a_table_collides_with_probability_bit_rate_to_the_nbits(theta):
    index = LSHIndex(16, nbits=4, n_tables=20000, metric="ip")
    keys = index.hash_keys(_pair_at_angle(16, theta))
    _assert_within_binomial_error((keys[0] == keys[1]).mean(), (1 - theta / np.pi) ** 4, 20000)


def test_keys_are_the_sign_bits_of_the_projections():
    x = np.random.default_rng(2).standard_normal((300, 24)).astype(np.float32)
    index = LSHIndex(24, nbits=64, n_tables=3, metric="l2")
    proj = np.einsum("tbd,nd->ntb", index.hyperplanes.astype(np.float64), x)
    expected = ((proj > 0).astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(axis=2)
    keys = index.hash_keys(x)
    assert keys.dtype == np.uint64 and keys.shape == (300, 3)
    bits = (keys[:, :, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    mismatch = bits.astype(bool) != (proj > 0)
    assert not mismatch[np.abs(proj) > 1e-4].any()  # float32 rounding only at the margin
    assert np.array_equal(keys[~mismatch.any(axis=2)], expected[~mismatch.any(axis=2)])


@pytest.mark.parametrize("metric", METRICS)
def test_candidates_are_the_vectors_sharing_a_bucket_and_are_scored_exactly(metric):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    xq = rng.standard_normal((30, 8)).astype(np.float32)
    index = LSHIndex(8, nbits=5, n_tables=4, metric=metric, seed=7)
    index.add(x)
    D, I = index.search(xq, 500)
    shared = (index.hash_keys(xq)[:, None, :] == index.hash_keys(x)[None, :, :]).any(axis=2)
    candidates = index.last_search_stats["candidates"]
    assert np.array_equal(candidates, shared.sum(axis=1))
    assert index.last_search_stats["projections"] == 20
    scores = pairwise_scores(xq, x, metric)
    pad = np.inf if metric == "l2" else -np.inf
    for i in range(len(xq)):
        found = I[i, :candidates[i]]
        assert set(found) == set(np.flatnonzero(shared[i]))
        np.testing.assert_allclose(D[i, :candidates[i]], scores[i, found], rtol=1e-4, atol=1e-4)
        assert (I[i, candidates[i]:] == -1).all() and (D[i, candidates[i]:] == pad).all()
        assert (np.diff(D[i, :candidates[i]]) >= 0).all() if metric == "l2" \
            else (np.diff(D[i, :candidates[i]]) <= 0).all()
    assert D.dtype == np.float32 and I.dtype == np.int64


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_few_candidates_are_padded_and_a_stored_vector_finds_itself(metric):
    x = np.random.default_rng(4).standard_normal((50, 8)).astype(np.float32)
    index = LSHIndex(8, nbits=16, n_tables=1, metric=metric)
    index.add(x)
    D, I = index.search(x, 20)
    assert (I[:, 0] == np.arange(50)).all()
    counts = index.last_search_stats["candidates"]
    assert (counts < 20).all() and ((I >= 0).sum(axis=1) == counts).all()
    pad = np.inf if metric == "l2" else -np.inf
    assert (D[I < 0] == pad).all()


def test_recall_grows_with_tables_falls_with_bits_and_matches_the_formula(clustered):
    x, xq = clustered
    exact = FlatIndex(32, "cosine")
    exact.add(x)
    D_ref, I_ref = exact.search(xq, 10)
    theta = np.arccos(np.clip(D_ref, -1, 1))

    def measure(nbits, n_tables):
        index = LSHIndex(32, nbits, n_tables)
        index.add(x)
        recall = _recall(index.search(xq, 10)[1], I_ref)
        predicted = np.mean(1 - (1 - (1 - theta / np.pi) ** nbits) ** n_tables)
        assert abs(recall - predicted) < 0.06, (nbits, n_tables, recall, predicted)
        return recall, index.last_search_stats["candidates"].mean()

    by_tables = [measure(12, n_tables) for n_tables in (1, 2, 4, 8, 16)]
    recalls = [r for r, _ in by_tables]
    assert recalls == sorted(recalls) and recalls[-1] > recalls[0] + 0.4  # nested tables
    by_bits = [measure(nbits, 8) for nbits in (6, 10, 14, 18)]
    assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip(by_bits, by_bits[1:]))


def test_few_bits_and_many_tables_find_every_true_neighbour():
    x = clustered_unit_vectors(1100, 16, n_clusters=20, seed=5)
    x, xq = x[:1000], x[1000:]
    index = LSHIndex(16, nbits=3, n_tables=40)
    index.add(x)
    exact = FlatIndex(16, "cosine")
    exact.add(x)
    D_ref, I_ref = exact.search(xq, 10)
    D, I = index.search(xq, 10)
    assert _recall(I, I_ref) == 1.0
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-5)


def test_adding_in_batches_equals_adding_at_once_and_finds_new_vectors(clustered):
    x, xq = clustered
    batched, whole = LSHIndex(32, 8, 6, metric="ip"), LSHIndex(32, 8, 6, metric="ip")
    whole.add(x)
    for lo, hi in ((0, 1000), (1000, 1001), (1001, 3000)):
        batched.add(x[lo:hi])
        D, I = batched.search(x[lo:hi], 1)  # the lazy re-sort sees the new vectors
        assert (I[:, 0] == np.arange(lo, hi)).all()
    assert batched.ntotal == 3000
    for a, b in zip(batched.search(xq, 10), whole.search(xq, 10)):
        assert np.array_equal(a, b)
    batched.reset()
    assert batched.ntotal == 0
    with pytest.raises(ValueError, match="empty; add vectors"):
        batched.search(xq, 1)
    batched.add(x[5:6])
    assert batched.search(x[5:6], 2)[1].tolist() == [[0, -1]]


def test_same_seed_same_results_and_thread_count_does_not_matter(clustered):
    x, xq = clustered
    a, b, c = LSHIndex(32, 10, 8, seed=3), LSHIndex(32, 10, 8, seed=3), LSHIndex(32, 10, 8)
    assert np.array_equal(a.hyperplanes, b.hyperplanes)
    assert not np.array_equal(a.hyperplanes, c.hyperplanes)
    for index in (a, b):
        index.add(x)
    with num_threads(1):
        D1, I1 = a.search(xq, 10)
        keys1 = a.hash_keys(x)
    with num_threads(2):
        D2, I2 = b.search(xq, 10)
        keys2 = a.hash_keys(x)
    assert np.array_equal(I1, I2) and np.array_equal(D1, D2) and np.array_equal(keys1, keys2)


def test_concurrent_searches_from_threads_agree_with_sequential(clustered):
    x, xq = clustered
    sequential = LSHIndex(32, 10, 8, metric="l2")
    sequential.add(x)
    expected = [sequential.search(xq[i::4], 5) for i in range(4)]
    shared = LSHIndex(32, 10, 8, metric="l2")
    shared.add(x)  # not searched yet: the threads race to build the sorted view
    assert_concurrent_searches_agree(lambda i: shared.search(xq[i::4], 5), 4,
                                     expected=expected)


@pytest.mark.parametrize("filled", [True, False])
def test_save_load_round_trip(clustered, tmp_path, filled):
    x, xq = clustered
    index = LSHIndex(32, 12, 5, metric="l2", seed=9)
    if filled:
        index.add(x[:2000])
    index.save(tmp_path / "lsh")
    loaded = load_index(tmp_path / "lsh")
    assert type(loaded) is LSHIndex and repr(loaded) == repr(index)
    assert (loaded.nbits, loaded.n_tables, loaded.seed) == (12, 5, 9)
    assert np.array_equal(loaded.hyperplanes, index.hyperplanes)
    loaded.add(x[2000:])
    index.add(x[2000:])
    for a, b in zip(loaded.search(xq, 10), index.search(xq, 10)):
        assert np.array_equal(a, b)


def test_errors_say_what_to_fix():
    with pytest.raises(ValueError, match="nbits must be <= 64"):
        LSHIndex(8, 65, 4)
    with pytest.raises(ValueError, match="nbits must be >= 1"):
        LSHIndex(8, 0, 4)
    with pytest.raises(ValueError, match="n_tables must be >= 1"):
        LSHIndex(8, 8, 0)
    with pytest.raises(TypeError, match="nbits must be an integer"):
        LSHIndex(8, 8.0, 4)
    with pytest.raises(ValueError, match="unknown metric"):
        LSHIndex(8, 8, 4, metric="hamming")
    index = LSHIndex(8, 8, 4)
    with pytest.raises(ValueError, match="empty; add vectors"):
        index.search(np.ones((1, 8)), 1)
    with pytest.raises(ValueError, match="x has 9 columns; expected d"):
        index.add(np.ones((2, 9)))
    index.add(np.ones((2, 8)))
    with pytest.raises(ValueError, match="xq has 7 columns; expected d"):
        index.search(np.ones((1, 7)), 1)
    with pytest.raises(ValueError, match="NaN or infinity"):
        index.search(np.array([[np.nan] * 8]), 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(np.ones((1, 8)), 0)
    with pytest.raises(ValueError, match="x contains NaN"):
        index.hash_keys(np.full((1, 8), np.inf))
