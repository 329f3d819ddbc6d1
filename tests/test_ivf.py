"""IVF indexes: exactness at nprobe = nlist, ids, removal, errors, persistence, FAISS parity."""

from __future__ import annotations

import numpy as np
import pytest

from concurrency import assert_concurrent_searches_agree
from retgen_ref import FlatIndex, IVFFlatIndex, IVFPQIndex, load_index, num_threads
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
        _, ids = index.lists.list_entries(l, "vectors")
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
    assert_concurrent_searches_agree(lambda i: index.search(xq[i::4], 5), 4)


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


# -- IVF-PQ ---------------------------------------------------------------------------------
def _reconstructions(index):
    """id -> the vector the index's codes stand for (y_l + decoded residual, or decoded x)."""
    out = {}
    for l in range(index.nlist):
        codes, ids = index.lists.list_entries(l, "codes")
        if len(ids):
            rec = index.pq.decode(codes) + (index.centroids[l] if index.by_residual else 0)
            out.update(zip(ids.tolist(), rec))
    return out


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("by_residual", [True, False])
def test_pq_distances_are_exact_distances_to_the_reconstructions(data, metric, by_residual):
    """The precomputed-table algebra: D equals ‖q − x̂‖² (or q·x̂) for the returned x̂."""
    x, xq = data
    index = _trained(x, metric, nlist=16, cls=IVFPQIndex, m=4, nbits=6, by_residual=by_residual)
    index.nprobe = 16
    D, I = index.search(xq, 8)
    rec = _reconstructions(index)
    xhat = np.array([[rec[i] for i in row] for row in I], dtype=np.float64)
    q = xq.astype(np.float64)[:, None, :]
    expected = ((q - xhat) ** 2).sum(-1) if metric == "l2" else (q * xhat).sum(-1)
    np.testing.assert_allclose(D, expected, rtol=1e-4, atol=1e-3)
    # and they are the best reconstructions: brute force over all of them
    all_ids = np.array(sorted(rec))
    all_rec = np.array([rec[i] for i in all_ids], dtype=np.float64)
    D_ref, _ = exact_search(xq, all_rec, 8, metric)
    np.testing.assert_allclose(D, D_ref, rtol=1e-4, atol=1e-3)


def test_pq_refine_with_every_candidate_is_exact(data):
    x, xq = data
    index = _trained(x, "l2", nlist=16, cls=IVFPQIndex, m=4, store_vectors=True)
    index.nprobe = 16
    index.refine_k = len(x)
    D, I = index.search(xq, 10)
    D_ref, I_ref = exact_search(xq, x, 10, "l2")
    np.testing.assert_allclose(D, D_ref, rtol=1e-4, atol=1e-4)
    assert _recall(I, I_ref) == 1.0


def test_query_blocks_bound_memory_and_change_nothing(data, monkeypatch):
    """refine_k far above ntotal is capped, and queries are searched in memory-bounded
    blocks with the same results as one block."""
    import retgen_ref.index.ivf as ivf

    x, xq = data
    index = _trained(x, "l2", nlist=16, cls=IVFPQIndex, m=4, store_vectors=True)
    index.nprobe = 16
    index.refine_k = 10 ** 9  # would need petabytes if not capped at ntotal
    D, I = index.search(xq, 10)
    monkeypatch.setattr(ivf, "SEARCH_BLOCK_BYTES", 1)  # one query per block
    D_blocks, I_blocks = index.search(xq, 10)
    np.testing.assert_array_equal(I_blocks, I)
    np.testing.assert_array_equal(D_blocks, D)
    assert len(index.last_search_stats["entries_scanned"]) == len(xq)


def test_pq_refine_improves_recall(data):
    x, xq = data
    index = _trained(x, "l2", nlist=16, cls=IVFPQIndex, m=2, nbits=4, store_vectors=True)
    index.nprobe = 4
    I_ref = exact_search(xq, x, 10, "l2")[1]
    plain = _recall(index.search(xq, 10)[1], I_ref)
    index.refine_k = 100
    assert _recall(index.search(xq, 10)[1], I_ref) > plain + 0.1


def test_pq_errors(data):
    x, _ = data
    with pytest.raises(ValueError, match="m=5 does not divide d=16"):
        IVFPQIndex(16, 8, m=5)
    index = IVFPQIndex(16, 8, m=4)
    with pytest.raises(ValueError, match="store_vectors=True"):
        index.refine_k = 10
    with pytest.raises(ValueError, match="must be trained before add"):
        index.add(x)


@pytest.mark.parametrize("store_vectors", [False, True])
def test_pq_save_load_round_trip(data, tmp_path, store_vectors):
    x, xq = data
    index = _trained(x, "ip", nlist=8, cls=IVFPQIndex, m=4, store_vectors=store_vectors,
                     seed=4)
    index.nprobe = 3
    if store_vectors:
        index.refine_k = 20
    index.save(tmp_path / "ivfpq")
    loaded = load_index(tmp_path / "ivfpq")
    assert type(loaded) is IVFPQIndex and loaded.refine_k == index.refine_k
    for a, b in zip(loaded.search(xq, 5), index.search(xq, 5)):
        assert np.array_equal(a, b)


def test_pq_same_seed_same_codes(data):
    x, _ = data
    a = _trained(x, "l2", nlist=8, cls=IVFPQIndex, m=4, seed=9)
    b = _trained(x, "l2", nlist=8, cls=IVFPQIndex, m=4, seed=9)
    assert np.array_equal(a.pq.codebooks_, b.pq.codebooks_)
    assert np.array_equal(a.lists.columns["codes"], b.lists.columns["codes"])


def test_recall_parity_with_faiss_ivfpq():
    faiss = pytest.importorskip("faiss")
    both = gaussian_mixture(20200, 32, n_clusters=50, seed=5)
    x, xq = both[:20000], both[20000:]
    I_ref = exact_search(xq, x, 10, "l2")[1]
    ours = _trained(x, "l2", nlist=64, cls=IVFPQIndex, m=8)
    peer = faiss.IndexIVFPQ(faiss.IndexFlatL2(32), 32, 64, 8, 8)
    peer.train(x)
    peer.add(x)
    for nprobe in (1, 8):
        ours.nprobe = peer.nprobe = nprobe
        r_ours = _recall(ours.search(xq, 10)[1], I_ref)
        r_peer = _recall(peer.search(xq, 10)[1], I_ref)
        assert r_ours >= r_peer - 0.02, (nprobe, r_ours, r_peer)


@pytest.mark.parametrize("cls,kwargs", [(IVFFlatIndex, {}), (IVFPQIndex, {"m": 4}),
                                        (IVFPQIndex, {"m": 4, "by_residual": False})])
@pytest.mark.parametrize("metric", METRICS)
def test_single_query_path_agrees_with_batch_path(data, cls, kwargs, metric):
    """One query runs a fused kernel; it must find what the batch kernels find."""
    x, xq = data
    index = _trained(x, metric, nlist=16, cls=cls, **kwargs)
    index.nprobe = 5
    D, I = index.search(xq, 7)
    for i in range(0, len(xq), 6):
        D1, I1 = index.search(xq[i:i + 1], 7)
        assert np.array_equal(I1[0], I[i])
        np.testing.assert_allclose(D1[0], D[i], rtol=1e-5, atol=1e-4)
        assert index.last_search_stats["entries_scanned"][0] > 0
