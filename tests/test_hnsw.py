"""HNSWIndex: recall against exact search, parity with hnswlib, graph invariants, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from scipy.sparse.csgraph import breadth_first_order

from concurrency import assert_concurrent_searches_agree
from retgen_ref import FlatIndex, HNSWIndex, load_index, num_threads, persist
from retgen_ref.heap import EMPTY
from retgen_ref.index import hnsw_kernels
from retgen_ref.synthetic import gaussian_mixture

N, D, NQ = 20000, 32, 300


def _recall(I, I_exact):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(I.tolist(), I_exact.tolist())])


@pytest.fixture(scope="module")
def data():
    x = gaussian_mixture(N + NQ, D, seed=1)
    return x[:N], x[N:]


@pytest.fixture(scope="module")
def built(data):
    """One index per metric on the shared set (built once: builds dominate the file's time)."""
    xb, _ = data
    out = {}
    for metric in ("l2", "ip"):
        index = HNSWIndex(D, M=16, ef_construction=200, metric=metric)
        index.add(xb)
        out[metric] = index
    return out


def _exact(xb, xq, k, metric):
    flat = FlatIndex(xb.shape[1], metric)
    flat.add(xb)
    return flat.search(xq, k)


def test_recall_at_ef64_against_exact_search(data, built):
    xb, xq = data
    index = built["l2"]
    index.ef_search = 64
    D, I = index.search(xq, 10)
    D_exact, I_exact = _exact(xb, xq, 10, "l2")
    assert _recall(I, I_exact) >= 0.95
    # the distances returned are the true squared distances of the ids returned
    np.testing.assert_allclose(D, ((xq[:, None, :] - xb[I]) ** 2).sum(-1), rtol=1e-4, atol=1e-3)
    assert (np.diff(D, axis=1) >= 0).all()


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_recall_parity_with_hnswlib(data, built, metric):
    hnswlib = pytest.importorskip("hnswlib")
    xb, xq = data
    peer = hnswlib.Index(space=metric, dim=D)
    peer.init_index(max_elements=N, M=16, ef_construction=200, random_seed=0)
    peer.add_items(xb, num_threads=1)
    _, I_exact = _exact(xb, xq, 10, metric)
    index = built[metric]
    for ef in (10, 16, 32):  # where recall is still below 1 and differences show
        index.ef_search = ef
        peer.set_ef(ef)
        ours = _recall(index.search(xq, 10)[1], I_exact)
        theirs = _recall(peer.knn_query(xq, 10)[0], I_exact)
        assert ours >= theirs - 0.01, (ef, ours, theirs)


def test_ip_returns_inner_products(data, built):
    xb, xq = data
    index = built["ip"]
    index.ef_search = 64
    D, I = index.search(xq[:20], 5)
    np.testing.assert_allclose(D, np.einsum("qd,qkd->qk", xq[:20], xb[I]), rtol=1e-4, atol=1e-3)
    assert (np.diff(D, axis=1) <= 0).all()


def _layer_lists(index, layer):
    nodes = np.flatnonzero(index.levels >= layer)
    return nodes, [index.neighbors(int(i), layer) for i in nodes]


def test_graph_invariants(built):
    index = built["l2"]
    M, n = index.M, index.ntotal
    assert index.levels[index.entry_point] == index.max_level == index.levels.max()
    for layer in range(index.max_level + 1):
        nodes, lists = _layer_lists(index, layer)
        for i, links in zip(nodes, lists):
            assert len(links) <= (2 * M if layer == 0 else M)
            assert i not in links, "self-link"
            assert len(np.unique(links)) == len(links), "duplicate link"
            assert (index.levels[links] >= layer).all(), "link to a node absent from the layer"
        assert sum(len(links) > 0 for links in lists) >= len(nodes) - 1  # only a lone top node
    # every node reachable from the entry point on layer 0
    _, lists = _layer_lists(index, 0)
    rows = np.repeat(np.arange(n), [len(links) for links in lists])
    graph = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, np.concatenate(lists))), (n, n))
    assert len(breadth_first_order(graph, index.entry_point, return_predecessors=False)) == n


def test_levels_are_geometric_with_ml_1_over_ln_m(built):
    levels = built["l2"].levels
    for level in (1, 2):  # P(level >= l) = M^-l; 5 binomial standard deviations
        p = 16.0 ** -level
        assert abs((levels >= level).mean() - p) < 5 * np.sqrt(p * (1 - p) / N)


def test_heuristic_keeps_a_candidate_only_if_closer_to_the_base_than_to_kept_ones():
    # base point 0 on a line; candidates at 1, -1.5, 2: 2 is closer to 1 than to 0, so it is
    # dropped although a slot is free; -1.5 is on the other side and kept.
    vectors = np.array([[1.0], [-1.5], [2.0]], dtype=np.float32)
    cand_v = np.array([1.0, 2.25, 4.0], dtype=np.float32)
    cand_i = np.array([0, 1, 2], dtype=np.int64)
    links = np.full((1, 3), 7, dtype=np.int32)
    counts = np.zeros(1, dtype=np.int32)
    hnsw_kernels.select_neighbors(vectors, cand_v, cand_i, 3, 3, links, counts, 0, False)
    assert counts[0] == 2 and links[0].tolist() == [0, 1, -1]
    # fewer candidates than slots: hnswlib keeps them all without the heuristic
    hnsw_kernels.select_neighbors(vectors, cand_v, cand_i, 3, 4, links, counts, 0, False)
    assert counts[0] == 3 and links[0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_search_is_exact_when_ef_covers_the_set(metric):
    rng = np.random.default_rng(2)
    xb = rng.standard_normal((300, 8)).astype(np.float32)
    xq = rng.standard_normal((25, 8)).astype(np.float32)
    index = HNSWIndex(8, M=4, ef_construction=20, metric=metric)
    index.add(xb)
    index.ef_search = 300
    D, I = index.search(xq, 10)
    D_exact, I_exact = _exact(xb, xq, 10, metric)
    np.testing.assert_allclose(D, D_exact, rtol=1e-4, atol=1e-4)
    assert (I == I_exact).mean() > 0.99  # only near-ties may swap


@pytest.mark.parametrize("metric,pad", [("l2", np.inf), ("ip", -np.inf), ("cosine", -np.inf)])
@pytest.mark.parametrize("nq", [1, 4])
def test_k_larger_than_ntotal_is_padded(metric, pad, nq):
    xb = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    index = HNSWIndex(4, metric=metric)
    index.add(xb)
    D, I = index.search(xb[:nq], 8)
    assert D.dtype == np.float32 and I.dtype == np.int64 and I.shape == (nq, 8)
    assert (I[:, 5:] == -1).all() and (D[:, 5:] == pad).all()
    assert sorted(I[0, :5].tolist()) == [0, 1, 2, 3, 4]


def test_add_in_batches_finds_the_new_points():
    x = gaussian_mixture(6000, 16, seed=4)
    index = HNSWIndex(16, M=8, ef_construction=64)
    for chunk in np.array_split(x, [1, 2, 50, 1000, 3000]):  # sizes 1, 1, 48, 950, 2000, 3000
        index.add(chunk)
        n = index.ntotal
        D, I = index.search(chunk[:50], 1)
        assert (I[:, 0] >= n - len(chunk)).all() and (D[:, 0] == 0).all()
    assert index.ntotal == 6000
    index.ef_search = 64
    _, I_exact = _exact(x, x[::50], 10, "l2")
    assert _recall(index.search(x[::50], 10)[1], I_exact) >= 0.95


def _graph(index):
    return index._state()


def _assert_same_graph(a, b):
    params_a, arrays_a = _graph(a)
    params_b, arrays_b = _graph(b)
    assert params_a == params_b
    assert arrays_a.keys() == arrays_b.keys()
    for name in arrays_a:
        assert np.array_equal(arrays_a[name], arrays_b[name]), name


def test_same_seed_gives_the_same_graph_and_another_seed_does_not():
    x = gaussian_mixture(3000, 16, seed=5)
    a, b, c = HNSWIndex(16, seed=7), HNSWIndex(16, seed=7), HNSWIndex(16, seed=8)
    a.add(x)
    for chunk in np.array_split(x, 3):  # the same adds in other batches: the same levels
        b.add(chunk)
    c.add(x)
    assert np.array_equal(a.levels, b.levels) and not np.array_equal(a.levels, c.levels)
    a2 = HNSWIndex(16, seed=7)
    a2.add(x)
    _assert_same_graph(a, a2)
    a2.reset()
    a2.add(x)
    _assert_same_graph(a, a2)


def test_graph_and_results_do_not_depend_on_the_thread_count():
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    x = gaussian_mixture(5000, 16, seed=6)
    indexes = []
    for t in (1, 2):
        with num_threads(t):
            index = HNSWIndex(16, M=8, ef_construction=50)
            index.add(x)
            indexes.append((index, index.search(x[:300], 10), index.search(x[:1], 10)))
    (a, ra, sa), (b, rb, sb) = indexes
    _assert_same_graph(a, b)
    for (Da, Ia), (Db, Ib) in ((ra, rb), (sa, sb)):
        assert np.array_equal(Ia, Ib) and np.array_equal(Da, Db)


def test_concurrent_searches_from_threads_agree_with_sequential(data, built):
    _, xq = data
    index = built["l2"]
    index.ef_search = 32
    queries = [xq[i::8] for i in range(7)] + [xq[:1]]  # the last: the single-query kernel
    assert_concurrent_searches_agree(lambda i: index.search(queries[i], 5), 8, repeats=3)


def test_last_search_stats_count_distance_computations(data, built):
    _, xq = data
    index = built["l2"]
    counts = []
    for ef in (10, 100):
        index.ef_search = ef
        index.search(xq, 10)
        ndis = index.last_search_stats["distances"]
        assert ndis.dtype == np.int64 and ndis.shape == (NQ,)
        counts.append(ndis)
    # at least the ef results were computed, and far fewer than a scan of all N
    assert (counts[0] >= 10).all() and (counts[1] >= 100).all() and (counts[1] < N / 4).all()
    assert counts[1].mean() > counts[0].mean()
    index.search(xq[:1], 10)
    assert index.last_search_stats["distances"].tolist() == [counts[1][0]]


def test_save_load_round_trip_is_exact(tmp_path):
    x = gaussian_mixture(3000, 16, seed=7)
    index = HNSWIndex(16, M=6, ef_construction=40, metric="cosine", seed=3)
    index.add(x[:2000])
    index.ef_search = 37
    index.save(tmp_path / "h.idx")
    loaded = load_index(tmp_path / "h.idx")
    assert isinstance(loaded, HNSWIndex) and loaded.ef_search == 37 and loaded.M == 6
    assert loaded.entry_point == index.entry_point and loaded.max_level == index.max_level
    _assert_same_graph(index, loaded)
    Da, Ia = index.search(x[2000:2100], 7)
    Db, Ib = loaded.search(x[2000:2100], 7)
    assert np.array_equal(Ia, Ib) and np.array_equal(Da, Db)
    # the level generator resumes too: adding after a reload builds the same graph
    index.add(x[2000:])
    loaded.add(x[2000:])
    _assert_same_graph(index, loaded)


def test_empty_index_round_trip_then_add(tmp_path):
    HNSWIndex(3, M=5, seed=9).save(tmp_path / "e.idx")
    loaded = load_index(tmp_path / "e.idx")
    assert loaded.ntotal == 0 and loaded.entry_point == -1 and loaded.M == 5
    x = np.random.default_rng(10).standard_normal((50, 3))
    loaded.add(x)
    fresh = HNSWIndex(3, M=5, seed=9)
    fresh.add(x)
    _assert_same_graph(loaded, fresh)


def test_damaged_or_inconsistent_file_is_rejected(tmp_path):
    index = HNSWIndex(4, M=4)
    index.add(np.random.default_rng(8).standard_normal((200, 4)))
    path = tmp_path / "h.idx"
    index.save(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "bad.idx").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged|not a retgen_ref"):
        load_index(tmp_path / "bad.idx")
    params, arrays = index._state()
    base = {"d": 4, "metric": "l2", **params}
    broken = {
        "a link out of range": ({}, {"links0": np.where(arrays["links0"] == 3, 999,
                                                          arrays["links0"])}),
        "a count above 2M": ({}, {"counts0": arrays["counts0"] + 8}),
        "a wrong shape": ({}, {"links0": arrays["links0"][:, :5]}),
        "a wrong entry point": ({"entry_point": 5000}, {}),
        "an entry point that is not an integer": ({"entry_point": 1.5}, {}),
        "a bad level": ({}, {"levels": arrays["levels"] + 1}),
    }
    for p, a in broken.values():
        persist.save_state(path, "HNSWIndex", {**base, **p}, {**arrays, **a})
        with pytest.raises(ValueError, match="inconsistent HNSWIndex"):
            load_index(path)


def test_validation_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="M must be >= 2, got 1"):
        HNSWIndex(8, M=1)
    with pytest.raises(ValueError, match="ef_construction must be >= 1, got 0"):
        HNSWIndex(8, ef_construction=0)
    with pytest.raises(TypeError, match="M must be an integer"):
        HNSWIndex(8, M=16.0)
    with pytest.raises(ValueError, match="unknown metric"):
        HNSWIndex(8, metric="hamming")
    index = HNSWIndex(8)
    with pytest.raises(ValueError, match="ef_search must be >= 1, got 0"):
        index.ef_search = 0
    with pytest.raises(ValueError, match="ef_construction must be >= 1, got -3"):
        index.ef_construction = -3
    with pytest.raises(AttributeError):
        index.M = 4  # the arrays are sized by M
    with pytest.raises(ValueError, match="empty; add vectors"):
        index.neighbors(0)
    with pytest.raises(ValueError, match="empty; add vectors"):
        index.search(np.ones((1, 8)), 1)
    with pytest.raises(ValueError, match="x has 7 columns; expected d"):
        index.add(np.ones((3, 7)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        index.add(np.array([[np.nan] * 8]))
    index.add(np.ones((3, 8)))
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(np.ones((1, 8)), 0)
    with pytest.raises(ValueError, match="xq must be 2-D"):
        index.search(np.ones(8), 1)
    with pytest.raises(ValueError, match="i must be <= 2, got 3"):
        index.neighbors(3)
    assert index.ntotal == 3 and index.ef_search == 16 and index.ef_construction == 200


def test_empty_sentinel_never_leaks_into_results():
    index = HNSWIndex(2, M=2)
    index.add(np.array([[0, 0], [1e18, 0]]))  # squared distance 1e36 is still finite
    D, I = index.search(np.array([[0, 0]]), 3)
    assert I.tolist() == [[0, 1, -1]] and D[0, 1] < EMPTY and D[0, 2] == np.inf
