"""IVF indexes: exactness at nprobe = nlist, ids, removal, errors, persistence, FAISS parity."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from retgen_ref import FlatIndex, IVFFlatIndex, load_index, num_threads
from retgen_ref.reference import exact_search, pairwise_scores
from retgen_ref.synthetic import gaussian_mixture

METRICS = ["l2", "ip", "cosine"]


@pytest.fixture(scope="module")
def data():
    both = gaussian_mixture(6060, 16, n_clusters=30, seed=0)  # queries: same mixture
    return both[:6000], both[6000:]


def _recall(I, I_ref):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(I, I_ref)])


def _trained(x, metric, nlist=32, cls=IVFFlatIndex, **kwargs):
    index = cls(x.shape[1], nlist, metric=metric, **kwargs)
    index.train(x)
    index.add(x)
    return index


@pytest.mark.parametrize("metric", METRICS)
def test_all_lists_probed_equals_exact_search(data, metric):
    x, xq = data
    index = _trained(x, metric)
    index.nprobe = index.nlist
    D, I = index.search(xq, 10)
    D_ref, I_ref = exact_search(xq, x, 10, metric)
    np.testing.assert_allclose(D, D_ref, rtol=1e-4, atol=1e-4)
    scores = pairwise_scores(xq, x, metric)  # ids may differ only among equal scores
    np.testing.assert_allclose(np.take_along_axis(scores, I, axis=1), D_ref, rtol=1e-4, atol=1e-4)
    assert (index.last_search_stats["entries_scanned"] == len(x)).all()


@pytest.mark.parametrize("metric", METRICS)
def test_recall_grows_with_nprobe_and_scanned_entries_follow_list_sizes(data, metric):
    x, xq = data
    index = _trained(x, metric)
    exact = FlatIndex(16, metric)
    exact.add(x)
    I_ref = exact.search(xq, 10)[1]
    recalls = []
    for nprobe in (1, 4, 16, 32):
        index.nprobe = nprobe
        I = index.search(xq, 10)[1]
        recalls.append(_recall(I, I_ref))
        _, probes = index._coarse_search(index._prepare(xq, "xq"), nprobe)
        expected = index.lists.sizes[probes].sum(axis=1)
        assert np.array_equal(index.last_search_stats["entries_scanned"], expected)
    assert recalls == sorted(recalls) and recalls[-1] == 1.0 and recalls[0] < 1.0


def test_every_vector_sits_in_the_list_of_its_nearest_centroid(data):
    x, _ = data
    index = _trained(x, "l2")
    nearest = pairwise_scores(x, index.centroids, "l2").argmin(axis=1)
    for l in range(index.nlist):
        _, ids = index.lists.list_entries(l)
        assert (nearest[ids] == l).all()


def test_ids_add_with_ids_and_remove(data):
    x, xq = data
    index = IVFFlatIndex(16, 8)
    index.train(x)
    index.add(x[:100])
    index.add_with_ids(x[100:200], np.arange(1000, 1100))
    index.add(x[200:300])  # numbering continues after the largest id
    index.nprobe = 8
    assert index.ntotal == 300
    assert index.search(x[150:151], 1)[1][0, 0] == 1050
    assert index.search(x[250:251], 1)[1][0, 0] == 1150
    assert index.remove_ids(np.array([1050, 1051, 99999])) == 2
    assert index.ntotal == 298
    assert index.search(x[150:151], 1)[1][0, 0] != 1050
    index.reset()
    assert index.ntotal == 0 and index.is_trained


@pytest.mark.parametrize("nq", [1, 40])
def test_k_larger_than_stored_is_padded(data, nq):
    x, _ = data
    index = IVFFlatIndex(16, 4, metric="ip")
    index.train(x)
    index.add(x[:3])
    index.nprobe = 4
    D, I = index.search(x[:nq], 5)
    assert (I[:, 3:] == -1).all() and (D[:, 3:] == -np.inf).all()


def test_errors_say_what_to_do(data):
    x, xq = data
    index = IVFFlatIndex(16, 8)
    with pytest.raises(ValueError, match="must be trained before add\\(\\); call train"):
        index.add(x)
    with pytest.raises(ValueError, match="nprobe must be <= 8"):
        index.nprobe = 9
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        index.nprobe = 0
    with pytest.raises(ValueError, match="at least nlist=8 vectors"):
        index.train(x[:5])
    with pytest.raises(ValueError, match="empty; add vectors"):
        index.search(xq, 1)
    index.train(x)
    with pytest.raises(ValueError, match="ids must be 10 integers"):
        index.add_with_ids(x[:10], np.arange(9))
    with pytest.raises(ValueError, match="17 columns"):
        index.add(np.ones((2, 17)))


def test_same_seed_same_index_and_thread_count_does_not_matter(data):
    x, xq = data
    a, b = _trained(x, "l2", seed=3), _trained(x, "l2", seed=3)
    assert np.array_equal(a.centroids, b.centroids)
    a.nprobe = 4
    with num_threads(1):
        D1, I1 = a.search(xq, 10)
    with num_threads(2):
        D2, I2 = a.search(xq, 10)
    assert np.array_equal(I1, I2) and np.array_equal(D1, D2)


def test_concurrent_searches_from_threads(data):
    x, xq = data
    index = _trained(x, "l2")
    index.nprobe = 4
    expected = [index.search(xq[i::4], 5) for i in range(4)]
    results = [None] * 4

    def run(i):
        results[i] = index.search(xq[i::4], 5)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (D, I), (De, Ie) in zip(results, expected):
        assert np.array_equal(I, Ie) and np.array_equal(D, De)


@pytest.mark.parametrize("trained", [True, False])
def test_save_load_round_trip(data, tmp_path, trained):
    x, xq = data
    index = IVFFlatIndex(16, 8, metric="cosine", seed=2)
    if trained:
        index.train(x)
        index.add(x[:500])
        index.remove_ids(np.arange(10))
        index.nprobe = 3
    index.save(tmp_path / "ivf")
    loaded = load_index(tmp_path / "ivf")
    assert type(loaded) is IVFFlatIndex and loaded.ntotal == index.ntotal
    assert loaded.is_trained == trained and loaded.nprobe == index.nprobe
    if trained:
        for a, b in zip(loaded.search(xq, 5), index.search(xq, 5)):
            assert np.array_equal(a, b)
        loaded.add(x[500:510])  # keeps numbering: ids continue after the saved ones
        assert loaded.ntotal == index.ntotal + 10


def test_recall_parity_with_faiss_ivfflat():
    faiss = pytest.importorskip("faiss")
    both = gaussian_mixture(20200, 32, n_clusters=50, seed=5)
    x, xq = both[:20000], both[20000:]
    exact = FlatIndex(32)
    exact.add(x)
    I_ref = exact.search(xq, 10)[1]
    ours = _trained(x, "l2", nlist=64)
    peer = faiss.IndexIVFFlat(faiss.IndexFlatL2(32), 32, 64)
    peer.train(x)
    peer.add(x)
    for nprobe in (1, 4, 16):
        ours.nprobe = peer.nprobe = nprobe
        r_ours = _recall(ours.search(xq, 10)[1], I_ref)
        r_peer = _recall(peer.search(xq, 10)[1], I_ref)
        assert r_ours >= r_peer - 0.02, (nprobe, r_ours, r_peer)
