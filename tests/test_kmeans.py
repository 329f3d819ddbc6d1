"""KMeans: Lloyd's invariants, re-seeding of empty clusters, FAISS parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from retgen_ref import KMeans, num_threads
from retgen_ref.kmeans import kmeans_plus_plus
from retgen_ref.reference import pairwise_scores
from retgen_ref.synthetic import gaussian_mixture


def _objective(x, centres):
    return pairwise_scores(x, centres, "l2").min(axis=1).sum()


def _history_from_start(x, k, **kwargs):
    """The objective of the initial centres (n_iter=0, same seed), then every iteration's."""
    start = KMeans(k, **{**kwargs, "n_iter": 0}).fit(x).inertia_
    km = KMeans(k, **kwargs).fit(x)
    return km, np.concatenate([[start], km.objective_history_])


def _assert_non_increasing(history):
    rel = np.diff(history) / np.maximum(np.abs(history[:-1]), 1e-30)
    assert (rel <= 1e-5).all(), history  # float32 rounding only


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_fit_attributes_and_inertia_match_reference(init):
    x = gaussian_mixture(3000, 8, n_clusters=12, seed=1)
    km = KMeans(12, n_iter=10, init=init).fit(x)
    assert km.cluster_centers_.shape == (12, 8) and km.cluster_centers_.dtype == np.float32
    assert km.objective_history_.shape == (10,)
    assert km.inertia_ == km.objective_history_[-1]
    assert km.inertia_ == pytest.approx(_objective(x, km.cluster_centers_), rel=1e-5)
    _assert_non_increasing(km.objective_history_)


def test_predict_and_transform_agree_with_reference():
    x = gaussian_mixture(2000, 6, n_clusters=5, seed=2)
    km = KMeans(5, n_iter=5, max_points_per_centroid=1000).fit(x)
    ref = pairwise_scores(x, km.cluster_centers_, "l2")
    np.testing.assert_allclose(km.transform(x), ref, rtol=1e-4, atol=1e-3)
    labels = km.predict(x)
    assert labels.dtype == np.int64
    np.testing.assert_allclose(ref[np.arange(len(x)), labels], ref.min(axis=1), rtol=1e-5, atol=1e-4)


def test_centres_are_the_means_of_their_clusters():
    x = gaussian_mixture(2000, 4, n_clusters=6, seed=3)
    km = KMeans(6, n_iter=30, max_points_per_centroid=1000).fit(x)  # converged
    labels = km.predict(x)
    for j in range(6):
        np.testing.assert_allclose(km.cluster_centers_[j], x[labels == j].mean(axis=0), atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(
    x=st.integers(8, 80).flatmap(lambda n: arrays(
        np.float32, (n, 3), elements=st.sampled_from([-2.0, -0.5, 0.0, 1.0, 3.0]))),
    k=st.integers(2, 8), init=st.sampled_from(["k-means++", "random"]), seed=st.integers(0, 5),
    spherical=st.booleans(),
)
def test_property_objective_never_increases(x, k, init, seed, spherical):
    # few distinct values: duplicates make empty clusters, so splits are exercised too
    if len(np.unique(x, axis=0)) < k:
        return
    km, history = _history_from_start(x, k, n_iter=8, init=init, seed=seed, spherical=spherical)
    _assert_non_increasing(history)
    expected = _objective(x, km.cluster_centers_)
    assert km.inertia_ == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_empty_clusters_are_reseeded_by_splitting():
    rng = np.random.default_rng(0)
    blob = rng.standard_normal((200, 2)).astype(np.float32)
    x = np.vstack([blob, np.repeat(blob[:1], 300, axis=0)])  # 300 copies of one point
    km, history = _history_from_start(x, 20, n_iter=10, init="random", seed=1)
    assert km.n_splits_ > 0  # random init picks several copies: their clusters go empty
    assert len(np.unique(km.predict(x))) == 20  # no cluster left empty
    _assert_non_increasing(history)


def test_large_training_sets_are_subsampled_with_a_warning():
    x = gaussian_mixture(500, 4, seed=4)
    with pytest.warns(UserWarning, match="subsampling 500 training points to 40"):
        km = KMeans(4, max_points_per_centroid=10).fit(x)
    assert km.cluster_centers_.shape == (4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KMeans(4, max_points_per_centroid=125).fit(x)  # 500 = 125 · 4: no warning


def test_spherical_centres_have_unit_norm_and_assign_by_inner_product():
    x = gaussian_mixture(1500, 8, n_clusters=6, seed=5)
    km = KMeans(6, spherical=True, max_points_per_centroid=1000).fit(x)
    np.testing.assert_allclose(np.linalg.norm(km.cluster_centers_, axis=1), 1.0, rtol=1e-5)
    ip = x.astype(np.float64) @ km.cluster_centers_.T.astype(np.float64)
    labels = km.predict(x)
    np.testing.assert_allclose(ip[np.arange(len(x)), labels], ip.max(axis=1), rtol=1e-5, atol=1e-5)


def test_kmeans_plus_plus_finds_every_separated_blob():
    rng = np.random.default_rng(6)
    centres = rng.standard_normal((10, 5)) * 100
    x = (centres[np.repeat(np.arange(10), 50)] + rng.standard_normal((500, 5))).astype(np.float32)
    for seed in range(5):
        seeds = kmeans_plus_plus(x, 10, np.random.default_rng(seed))
        assert len(set((seeds // 50).tolist())) == 10  # one seed in each blob


def test_same_seed_same_result_and_thread_count_does_not_matter():
    x = gaussian_mixture(5000, 16, n_clusters=20, seed=7)
    with num_threads(1):
        a = KMeans(20, n_iter=5, seed=3).fit(x)
    with num_threads(2):
        b = KMeans(20, n_iter=5, seed=3).fit(x)
    c = KMeans(20, n_iter=5, seed=4).fit(x)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
    assert not np.array_equal(a.cluster_centers_, c.cluster_centers_)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"n_clusters": 0}, ValueError, "n_clusters must be >= 1"),
    ({"n_clusters": 3, "init": "kmeans++"}, ValueError, "unknown init 'kmeans\\+\\+'"),
    ({"n_clusters": 3, "n_iter": -1}, ValueError, "n_iter must be >= 0"),
    ({"n_clusters": 2.5}, TypeError, "n_clusters must be an integer"),
])
def test_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        KMeans(**kwargs)


def test_bad_use():
    with pytest.raises(ValueError, match="cannot find 10 clusters in 5 points"):
        KMeans(10).fit(np.ones((5, 2)))
    with pytest.raises(ValueError, match="not fitted yet; call fit"):
        KMeans(2).predict(np.ones((1, 2)))
    km = KMeans(2).fit(np.arange(20, dtype=float).reshape(10, 2))
    with pytest.raises(ValueError, match="3 columns; expected d \\(the fitted data's dimension\\)=2"):
        km.transform(np.ones((1, 3)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(2).fit([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]])


def test_parity_with_faiss_kmeans():
    """Same settings (random init, 25 iterations, 256 points per centroid); a single run's
    local optimum varies by a few percent with the seed, so compare means over 4 seeds."""
    faiss = pytest.importorskip("faiss")
    x = gaussian_mixture(20000, 32, n_clusters=100, seed=8)
    ours, peer = [], []
    for seed in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # both subsample to 64 · 256 points
            ours.append(_objective(x, KMeans(64, init="random", seed=seed).fit(x).cluster_centers_))
        km = faiss.Kmeans(32, 64, niter=25, seed=seed, max_points_per_centroid=256)
        km.train(x)
        peer.append(_objective(x, km.centroids))
    assert np.mean(ours) <= 1.02 * np.mean(peer)
