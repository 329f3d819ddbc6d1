"""Every index against a float64 brute force, on the data users bring and at their sizes.

Data far from the origin (``|x|`` up to 10⁴ × the spread, FAISS's own roundoff test),
scaled by 10⁻³ and 10³, duplicated rows, near-duplicates; sizes that cross the kernels'
thresholds (20 queries: scan vs BLAS; 512-query and 4096-row tiles; 256 KiB NumPy
temporaries) and ``k`` past ``ntotal``. The reference is :func:`brute_force`: float64 over
the vectors as the index stores them (float32, unit rows for cosine), every row scored
directly (``Σ (q − x)²``, no ``‖x‖² − 2q·x``), ties broken by id.

* FlatIndex (and a flat ShardedIndex) must return the reference's ids and distances.
* Indexes that score candidates in float32 (IVF-Flat, HNSW, LSH, IVF-PQ's re-ranking) must
  return distances equal to the reference's for the ids they return and, at exhaustive
  settings, the reference's top k up to float32 ties.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from retgen_ref import (FlatIndex, HNSWIndex, IVFFlatIndex, IVFPQIndex, LSHIndex,
                        ShardedIndex)

METRICS = ("l2", "ip", "cosine")
SHAPES = ("gaussian", "shifted", "scaled-down", "scaled-up", "duplicated", "near-duplicate")
U32 = 2.0 ** -24


def make_data(shape: str, n: int, nq: int, d: int, seed: int):
    """``(xb, xq)`` float32; queries are perturbed stored rows, so neighbours are close."""
    rng = np.random.default_rng(seed)
    xb = rng.standard_normal((n, d))
    if shape == "shifted":  # the spread is 1, the offset 10⁴ (FAISS: xb[:, 0] += 12345)
        xb[:, 0] = rng.permutation(n) + 12345.0
        xb += rng.uniform(-1e4, 1e4, d)
    elif shape == "scaled-down":
        xb *= 1e-3
    elif shape == "scaled-up":
        xb *= 1e3
    elif shape == "duplicated":  # each row 4 times, in shuffled order
        xb = np.repeat(xb[: -(-n // 4)], 4, axis=0)[:n]
        xb = xb[rng.permutation(n)]
    elif shape == "near-duplicate":
        xb = np.repeat(xb[: -(-n // 4)], 4, axis=0)[:n]
        xb += 1e-5 * rng.standard_normal(xb.shape)
    scale = np.abs(xb).std() if shape != "shifted" else 1.0
    xq = xb[rng.integers(0, n, nq)] + 0.3 * scale * rng.standard_normal((nq, d))
    return xb.astype(np.float32), xq.astype(np.float32)


def stored(x: np.ndarray, metric: str) -> np.ndarray:
    """What an index stores for ``x``: float32 rows, unit-normalised (in float64) for cosine."""
    x = np.asarray(x, np.float32)
    if metric != "cosine":
        return x
    x64 = x.astype(np.float64)
    norms = np.sqrt((x64 * x64).sum(axis=1, keepdims=True))
    return (x / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def scores64(xq: np.ndarray, xb: np.ndarray, metric: str) -> np.ndarray:
    """(nq, n) float64: ‖q − x‖² summed directly, or q·x, over the stored float32 rows."""
    q, b = stored(xq, metric).astype(np.float64), stored(xb, metric).astype(np.float64)
    if metric == "l2":
        return np.stack([((b - row) ** 2).sum(axis=1) for row in q])
    # per pair, not q @ b.T: BLAS may round two equal rows differently by their position
    # in its tiles, which turns a tie into a 1-ulp gap (found by hypothesis: duplicated, ip)
    return np.stack([(b * row).sum(axis=1) for row in q])


def brute_force(xq, xb, k: int, metric: str):
    """The reference ``(D, I)``: best first, ties by id, padded with ∓inf / -1 past n."""
    s = scores64(xq, xb, metric)
    key = s if metric == "l2" else -s
    ids = np.broadcast_to(np.arange(s.shape[1]), s.shape)
    order = np.lexsort((ids, key), axis=1)[:, :k]
    D = np.full((len(xq), k), np.inf if metric == "l2" else -np.inf)
    I = np.full((len(xq), k), -1, np.int64)
    D[:, :order.shape[1]] = np.take_along_axis(s, order, axis=1)
    I[:, :order.shape[1]] = order
    return D, I, s


def float32_tolerance(xq, xb, metric: str, D_ref: np.ndarray) -> np.ndarray:
    """Per query and rank, what float32 scoring may be off by: ``4 d u`` times the
    distance (l2, summed directly) or times ``‖q‖ max‖x‖`` (inner products)."""
    d = xb.shape[1]
    if metric == "l2":
        return 4 * d * U32 * np.where(np.isfinite(D_ref), np.abs(D_ref), 0) + 1e-30
    qn = np.linalg.norm(stored(xq, metric).astype(np.float64), axis=1)
    xn = np.linalg.norm(stored(xb, metric).astype(np.float64), axis=1).max()
    return np.broadcast_to((4 * d * U32 * qn * xn)[:, None], D_ref.shape) + 1e-30


def assert_exact(D, I, xq, xb, k, metric):
    """Ids and distances of the float64 brute force (ids may differ only on exact ties)."""
    D_ref, I_ref, s = brute_force(xq, xb, k, metric)
    assert D.dtype == np.float32 and I.dtype == np.int64 and D.shape == I.shape == (len(xq), k)
    np.testing.assert_allclose(D, D_ref.astype(np.float32), rtol=1e-6, atol=0)
    rows, cols = np.nonzero(I != I_ref)
    for r, c in zip(rows, cols):  # only a tie in float64 may swap two ids
        assert I[r, c] >= 0 and s[r, I[r, c]] == s[r, I_ref[r, c]], (r, c, I[r], I_ref[r])


def assert_float32_exact(D, I, xq, xb, k, metric, exhaustive: bool):
    """Distances of the returned ids as float32 scoring gives them; with ``exhaustive``
    the best k up to what float32 cannot tell apart."""
    D_ref, _, s = brute_force(xq, xb, k, metric)
    tol = float32_tolerance(xq, xb, metric, D_ref)
    valid = I >= 0
    assert (np.isfinite(D) == valid).all()  # padding, and only padding, is ∓inf
    returned = np.take_along_axis(s, np.maximum(I, 0), axis=1)
    assert (np.abs(np.where(valid, D - np.where(valid, returned, 0), 0)) <= tol).all()
    for row in I:  # no id twice
        kept = row[row >= 0]
        assert len(np.unique(kept)) == len(kept)
    if exhaustive:
        assert (valid == np.isfinite(D_ref)).all()  # every stored vector was reachable
        gap = np.where(valid, D - np.where(valid, D_ref, 0), 0)
        assert ((gap if metric == "l2" else -gap) <= tol).all()


# -- FlatIndex: exact, every path --------------------------------------------------------
SIZES = st.sampled_from([(1, 1), (7, 3), (300, 1), (300, 19), (300, 20), (300, 21),
                         (5000, 1), (5000, 25), (4097, 600), (9000, 1030)])


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(shape="shifted", size=(5000, 25), d=16, metric="l2", k=5, seed=1)  # needs the bound
@given(shape=st.sampled_from(SHAPES), size=SIZES, d=st.sampled_from([1, 2, 7, 16, 33]),
       metric=st.sampled_from(METRICS), k=st.sampled_from([1, 5, 64, "n", "n+3"]),
       seed=st.integers(0, 2 ** 16))
def test_flat_index_equals_float64_brute_force(shape, size, d, metric, k, seed):
    n, nq = size
    k = {"n": n, "n+3": n + 3}.get(k, k)
    xb, xq = make_data(shape, n, nq, d, seed)
    index = FlatIndex(d, metric)
    for part in np.array_split(xb, min(n, 2)):  # two adds: the norm bound spans both
        index.add(part)
    D, I = index.search(xq, k)
    assert_exact(D, I, xq, xb, k, metric)


@pytest.mark.parametrize("nq", [1, 25])  # the one-query kernel and the BLAS tiles
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_faiss_roundoff_data_is_searched_exactly(nq, metric):
    """FAISS's test: 100 rows whose first coordinate is 12345 + i; queries 0.3 away."""
    rng = np.random.default_rng(123)
    xb = rng.random((100, 32)).astype(np.float32)
    xb[:, 0] = np.arange(100) + 12345
    xq = xb[:nq] + 0.3
    index = FlatIndex(32, metric)
    index.add(xb)
    D, I = index.search(xq, 1)
    assert_exact(D, I, xq, xb, 1, metric)
    if metric == "l2":
        assert (I[:, 0] == np.arange(nq)).all()
        assert index.last_search_stats["rescanned"] > 0  # the bound saw the danger


@pytest.mark.parametrize("seed", [5, 13, 2026])
@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("one_at_a_time", [True, False])  # the one-query kernel, the tiles
def test_well_conditioned_data_need_no_rescan(one_at_a_time, metric, seed):
    """The float32 pass is certified at once on ordinary data: exactness costs ``k'``
    float64 scores per query, not a second scan (a certificate that compared values on
    different scales, e.g. without the ``‖q‖²`` shift, would rescan here)."""
    xb, xq = make_data("gaussian", 20_000, 16, 32, seed=seed)
    index = FlatIndex(32, metric)
    index.add(xb)
    if one_at_a_time:
        rescanned = 0
        for q in xq:
            D, I = index.search(q[None], 10)
            assert_exact(D, I, q[None], xb, 10, metric)
            rescanned += index.last_search_stats["rescanned"]
    else:
        D, I = index.search(xq, 10)
        assert_exact(D, I, xq, xb, 10, metric)
        rescanned = index.last_search_stats["rescanned"]
    assert rescanned == 0


@pytest.mark.parametrize("spread_over_norm", [1e-4, 1e-5])
@pytest.mark.parametrize("nq", [1, 5, 40])
def test_exact_search_stays_exact_when_norms_dwarf_the_spread(spread_over_norm, nq):
    """``|x|`` is 10⁴–10⁵ × the spread of the data: the float32 value ``‖x‖² − 2q·x``
    rounds the distances away entirely, the certified search does not."""
    rng = np.random.default_rng(11)
    centre = rng.standard_normal(16) / spread_over_norm
    xb = (centre + rng.standard_normal((3000, 16))).astype(np.float32)
    xq = (centre + rng.standard_normal((nq, 16))).astype(np.float32)
    index = FlatIndex(16)
    index.add(xb)
    D, I = index.search(xq, 10)
    assert_exact(D, I, xq, xb, 10, "l2")


# -- the indexes that score in float32 ---------------------------------------------------
def _exhaustive(kind: str, metric: str, d: int, xb: np.ndarray):
    """An index of ``kind`` holding ``xb``, set to look at every stored vector."""
    n = len(xb)
    if kind == "ivfflat":
        index = IVFFlatIndex(d, nlist=min(8, n), metric=metric)
        index.train(xb)
        index.nprobe = index.nlist
    elif kind == "ivfpq":
        index = IVFPQIndex(d, nlist=min(4, n), m=1, nbits=min(4, max(1, int(np.log2(n)))),
                           metric=metric, store_vectors=True)
        index.train(xb)
        index.nprobe, index.refine_k = index.nlist, n
    elif kind == "hnsw":
        index = HNSWIndex(d, M=8, ef_construction=64, metric=metric)
    else:
        raise ValueError(kind)
    index.add(xb)
    if kind == "hnsw":
        index.ef_search = n
    return index


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["ivfflat", "ivfpq", "hnsw"]), shape=st.sampled_from(SHAPES),
       size=st.sampled_from([(40, 1), (600, 21), (2100, 3)]), d=st.sampled_from([2, 8, 24]),
       metric=st.sampled_from(METRICS), k=st.sampled_from([1, 10, "n+2"]),
       seed=st.integers(0, 2 ** 16))
def test_exhaustive_settings_find_the_brute_force_neighbours(kind, shape, size, d, metric, k,
                                                           seed):
    n, nq = size
    k = n + 2 if k == "n+2" else k
    xb, xq = make_data(shape, n, nq, d, seed)
    index = _exhaustive(kind, metric, d, xb)
    D, I = index.search(xq, k)
    if kind != "hnsw":
        assert_float32_exact(D, I, xq, xb, k, metric, exhaustive=True)
        return
    # A beam as wide as the graph visits every node it can reach from where the descent
    # lands on layer 0, but pruning may leave a node with no incoming link (hnswlib's
    # graphs too). So: the nodes found with k = n must be closed under the layer-0 links
    # (every neighbour of a visited node is visited) and be in the brute force's order; a
    # smaller k returns the first k of them.
    D_all, I_all = index.search(xq, n)
    for row in I_all:
        found = row[row >= 0]
        links = np.concatenate([index.neighbors(i) for i in found])
        assert np.isin(links, found).all()
    for r in range(len(xq)):
        found = np.sort(I_all[r][I_all[r] >= 0])
        sub = np.searchsorted(found, I_all[r][I_all[r] >= 0])
        assert_float32_exact(D_all[r:r + 1, :len(found)], sub[None], xq[r:r + 1], xb[found],
                             len(found), metric, exhaustive=True)
    width = min(k, n)
    assert np.array_equal(I[:, :width], I_all[:, :width])
    assert np.array_equal(D[:, :width], D_all[:, :width])
    assert (I[:, width:] == -1).all()


@settings(max_examples=15, deadline=None)
@given(shape=st.sampled_from(SHAPES), metric=st.sampled_from(METRICS),
       seed=st.integers(0, 2 ** 16))
def test_lsh_returns_the_best_of_its_candidates_with_true_distances(shape, metric, seed):
    """LSH is exact over the rows that share a bucket with the query in some table."""
    xb, xq = make_data(shape, 800, 9, 8, seed)
    index = LSHIndex(8, nbits=3, n_tables=4, metric=metric, seed=seed)
    index.add(xb)
    D, I = index.search(xq, 5)
    keys_b, keys_q = index.hash_keys(xb), index.hash_keys(xq)
    D_ref, I_ref, s = brute_force(xq, xb, len(xb), metric)
    tol = float32_tolerance(xq, xb, metric, D_ref)
    for r in range(len(xq)):
        candidates = np.flatnonzero((keys_b == keys_q[r]).any(axis=1))
        best = candidates[np.lexsort((candidates, s[r, candidates] * (1 if metric == "l2" else -1)))][:5]
        assert len(I[r][I[r] >= 0]) == len(best)
        got = s[r, I[r][I[r] >= 0]]
        assert np.allclose(got, s[r, best], rtol=0, atol=tol[r].max())
        assert np.allclose(D[r][: len(best)], got, rtol=0, atol=tol[r].max())


@pytest.mark.parametrize("shape", ["shifted", "duplicated"])
def test_flat_sharded_store_equals_brute_force(tmp_path, shape):
    xb, xq = make_data(shape, 2500, 30, 8, seed=3)
    store = ShardedIndex(tmp_path / "s", d=8, shard_size=1000)
    store.add(xb)
    D, I = store.search(xq, 7)
    assert_exact(D, I, xq, xb, 7, "l2")
