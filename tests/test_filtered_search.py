"""Filtered search and per-call knobs on every index kind (issue 17).

``search(xq, k, ids=F)`` must return the best ``k`` of the ids ``F`` allows. For every kind
whose candidates do not depend on ``k`` (all but HNSW, with IVF probing every list and no
re-ranking), that is exactly the unfiltered ranking of every stored vector with the
disallowed ids struck out; for FlatIndex also a float64 brute force over the allowed rows;
for HNSW a recall against that brute force, on both of its paths (exact scan of few
allowed nodes, and the graph walk that passes through disallowed nodes).
"""

from __future__ import annotations

import numpy as np
import pytest

from index_kinds import D_DIM, KINDS, build, data
from retgen_ref import FlatIndex, HNSWIndex, IVFFlatIndex, IVFPQIndex, exact
from retgen_ref.index import hnsw as hnsw_module
from retgen_ref.distances import normalise_rows
from retgen_ref.index.base import IdFilter
from retgen_ref.synthetic import gaussian_mixture

SELECTIVITIES = [0.0, 0.02, 0.3, 1.0]


def _filled(kind, tmp_path, n=600, seed=0):
    x = data(n, seed)
    index = build(kind, tmp_path, x)
    index.add(x)
    return index, x


def _exhaustive_knobs(index) -> dict:
    """Knobs under which every stored vector is a candidate whatever ``k`` (no re-ranking)."""
    knobs = index._checked_knobs({})
    if "nprobe" in knobs:
        knobs["nprobe"] = getattr(index, "index", index).nlist
    if "refine_k" in knobs:
        knobs["refine_k"] = 0
    return knobs


def _struck_out(D, I, allowed: np.ndarray, k: int, metric: str):
    """The first ``k`` allowed entries of each full ranking, padded as FAISS pads."""
    pad = np.inf if metric == "l2" else -np.inf
    D_out, I_out = np.full((len(I), k), pad, np.float32), np.full((len(I), k), -1)
    for r in range(len(I)):
        keep = (I[r] >= 0) & allowed[np.maximum(I[r], 0)]
        ids, dists = I[r][keep][:k], D[r][keep][:k]
        I_out[r, :len(ids)], D_out[r, :len(ids)] = ids, dists
    return D_out, I_out


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "hnsw"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filtered_search_is_the_full_ranking_with_disallowed_ids_struck_out(kind, tmp_path,
                                                                            seed):
    index, x = _filled(kind, tmp_path, seed=seed)
    xq = data(25, seed + 10)
    knobs = _exhaustive_knobs(index)
    D_all, I_all = index.search(xq, index.ntotal, **knobs)
    rng = np.random.default_rng(seed)
    for selectivity in SELECTIVITIES:
        allowed = rng.random(index.ntotal) < selectivity
        for k in (1, 10, 200):
            want_D, want_I = _struck_out(D_all, I_all, allowed, k, index.metric)
            for ids in (allowed, np.flatnonzero(allowed)):  # a mask, then an id array
                D, I = index.search(xq, k, ids=ids, **knobs)
                np.testing.assert_array_equal(I, want_I, err_msg=f"{kind} s={selectivity}")
                np.testing.assert_allclose(D, want_D, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_a_filter_allowing_everything_changes_nothing(kind, tmp_path, monkeypatch):
    monkeypatch.setattr(hnsw_module, "EXACT_SCAN_FACTOR", 0.0)  # HNSW: the same walk
    index, _ = _filled(kind, tmp_path, n=700, seed=3)
    xq = data(40, seed=4)
    D, I = index.search(xq, 10)
    D_f, I_f = index.search(xq, 10, ids=np.arange(index.ntotal))
    np.testing.assert_array_equal(I_f, I)
    np.testing.assert_allclose(D_f, D, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("block_bytes", [None, 3_000])  # one gathered block, or many
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("seed", [5, 6, 7])
def test_filtered_flat_search_equals_a_float64_brute_force_of_the_allowed_rows(
        metric, seed, block_bytes, monkeypatch):
    if block_bytes:
        monkeypatch.setattr(exact, "GATHER_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3_000, 24)).astype(np.float32) + 500.0  # far from the origin
    xq = x[:20] + rng.standard_normal((20, 24)).astype(np.float32) * 0.1
    ids = rng.permutation(np.unique(rng.integers(0, 10 ** 9, 6_000))[:3_000])  # not positions
    index = FlatIndex(24, metric)
    index.add_with_ids(x, ids)
    allowed = np.sort(rng.choice(ids, size=311, replace=False))
    D, I = index.search(xq, 7, ids=allowed)
    rows = np.flatnonzero(np.isin(ids, allowed))
    # the stored float32 rows (unit rows for cosine) and the query as the index sees it
    x64 = index.reconstruct_batch(ids[rows]).astype(np.float64)
    q64 = (normalise_rows(xq) if metric == "cosine" else xq).astype(np.float64)
    score = (((q64[:, None] - x64[None]) ** 2).sum(2) if metric == "l2"
             else -(q64[:, None] * x64[None]).sum(2))
    best = np.argsort(score, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(I, ids[rows][best])
    sign = 1 if metric == "l2" else -1
    np.testing.assert_allclose(D, sign * np.take_along_axis(score, best, 1), rtol=1e-5)


def _brute_ids(x, xq, allowed, k):
    rows = np.flatnonzero(allowed)
    d = ((xq[:, None].astype(np.float64) - x[rows][None]) ** 2).sum(2)
    return rows[np.argsort(d, axis=1, kind="stable")[:, :k]]


def _recall(I, truth):
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / len(b) for a, b in zip(I, truth)]))


@pytest.mark.parametrize("path", ["graph", "exact scan", "automatic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hnsw_keeps_its_recall_under_filters(path, seed, monkeypatch):
    factor = {"graph": 0.0, "exact scan": 1e12, "automatic": hnsw_module.EXACT_SCAN_FACTOR}
    monkeypatch.setattr(hnsw_module, "EXACT_SCAN_FACTOR", factor[path])
    x = gaussian_mixture(6_000, 16, n_clusters=30, seed=seed)
    xq = gaussian_mixture(100, 16, n_clusters=30, seed=seed + 100)
    index = HNSWIndex(16, M=12, ef_construction=100, seed=seed)
    index.add(x)
    rng = np.random.default_rng(seed)
    for selectivity in (0.01, 0.1, 0.5):
        allowed = rng.random(len(x)) < selectivity
        D, I = index.search(xq, 10, ids=allowed, ef=64)
        assert allowed[I[I >= 0]].all(), "a disallowed id was returned"
        if path != "automatic":
            assert index.last_search_stats["path"] == path
        assert _recall(I, _brute_ids(x, xq, allowed, 10)) >= 0.95, (path, selectivity)


def test_hnsw_graph_walk_passes_through_disallowed_nodes(monkeypatch):
    """Few allowed nodes, far apart in the graph: a walk that stopped at disallowed nodes
    (results-only filtering) would find almost nothing."""
    monkeypatch.setattr(hnsw_module, "EXACT_SCAN_FACTOR", 0.0)
    x = gaussian_mixture(5_000, 16, n_clusters=20, seed=3)
    index = HNSWIndex(16, M=12, ef_construction=100)
    index.add(x)
    allowed = np.zeros(len(x), bool)
    allowed[::97] = True
    D, I = index.search(x[:50], 5, ids=allowed, ef=32)
    assert (I >= 0).all()
    assert _recall(I, _brute_ids(x, x[:50], allowed, 5)) >= 0.9


def test_filter_input_errors():
    index = FlatIndex(D_DIM)
    index.add_with_ids(data(50), np.arange(100, 150))
    for short in (120, 149):  # 149 leaves out the largest id, 149
        with pytest.raises(ValueError, match="length ≥ 150"):
            index.search(data(2), 3, ids=np.ones(short, bool))
    with pytest.raises(TypeError, match="integers .* or booleans"):
        index.search(data(2), 3, ids=np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="1-d"):
        index.search(data(2), 3, ids=np.ones((2, 2), np.int64))
    D, I = index.search(data(2), 3, ids=np.ones(150, bool))  # long enough: every id
    assert (I >= 100).all()
    D, I = index.search(data(2), 3, ids=[])  # nothing allowed: all padding
    assert (I == -1).all() and np.isinf(D).all()
    f = IdFilter([120, 5, 120])  # repeats and ids not stored are fine
    assert index.search(data(1), 3, ids=f)[1].tolist() == [[120, -1, -1]]


def test_range_search_with_a_filter():
    x, xq = data(2_000, 1), data(20, 2)
    index = FlatIndex(D_DIM)
    index.add(x)
    allowed = np.random.default_rng(0).random(2_000) < 0.25
    lims, D, I = index.range_search(xq, 9.0, ids=allowed)
    lims_all, D_all, I_all = index.range_search(xq, 9.0)
    for i in range(20):
        got = I[lims[i]:lims[i + 1]]
        every = I_all[lims_all[i]:lims_all[i + 1]]
        np.testing.assert_array_equal(got, every[allowed[every]])


# -- per-call knobs ------------------------------------------------------------------------
def test_per_call_nprobe_is_the_attribute_for_one_call(tmp_path):
    x = gaussian_mixture(4_000, 16, n_clusters=40, seed=0)
    index = IVFFlatIndex(16, 32)
    index.train(x)
    index.add(x)
    for nprobe in (1, 3, 32):
        D, I = index.search(x[:30] + 0.1, 5, nprobe=nprobe)
        assert index.nprobe == 1  # unchanged
        index.nprobe = nprobe
        D2, I2 = index.search(x[:30] + 0.1, 5)
        index.nprobe = 1
        np.testing.assert_array_equal(I, I2)
        assert (index.search(x[:1] + 0.1, 5, nprobe=nprobe)[1] == I[:1]).all()  # one query
    assert not np.array_equal(index.search(x[:30] + 0.1, 5, nprobe=1)[1],
                              index.search(x[:30] + 0.1, 5, nprobe=32)[1])


def test_per_call_knobs_of_hnsw_ivfpq_and_the_wrappers(tmp_path):
    x = gaussian_mixture(3_000, 16, n_clusters=30, seed=1)
    hnsw = HNSWIndex(16, M=8, ef_construction=40)
    hnsw.add(x)
    _, I_small = hnsw.search(x[:50] + 0.3, 10, ef=10)
    hnsw.ef_search = 200
    _, I_big = hnsw.search(x[:50] + 0.3, 10)
    np.testing.assert_array_equal(hnsw.search(x[:50] + 0.3, 10, ef=200)[1], I_big)
    assert not np.array_equal(I_small, I_big)
    ivfpq = IVFPQIndex(16, 16, 4, 8, store_vectors=True)
    ivfpq.train(x)
    ivfpq.add(x)
    exact = FlatIndex(16)
    exact.add(x)
    truth = exact.search(x[:50] + 0.3, 10)[1]
    plain = _recall(ivfpq.search(x[:50] + 0.3, 10, nprobe=16)[1], truth)
    refined = _recall(ivfpq.search(x[:50] + 0.3, 10, nprobe=16, refine_k=100)[1], truth)
    assert refined > plain and ivfpq.refine_k == 0
    opq = build("opq", tmp_path)
    opq.add(data())
    np.testing.assert_array_equal(opq.search(data(5, 9), 4, nprobe=2)[1],
                                  opq.index.search(opq.transform.transform(data(5, 9)), 4,
                                                   nprobe=2)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_or_bad_knobs_are_refused_before_any_work(kind, tmp_path):
    index, _ = _filled(kind, tmp_path)
    with pytest.raises(TypeError, match="per-call parameters"):
        index.search(data(2), 3, nprobes=4)
    knobs = index._checked_knobs({})
    for name in knobs:
        with pytest.raises(ValueError, match=name):
            index.search(data(2), 3, **{name: -1})
    if "nprobe" in knobs:
        with pytest.raises(ValueError, match="nprobe"):
            index.search(data(2), 3, nprobe=10 ** 6)
