"""ShardedIndex past NumPy's 256 KiB temporary threshold (review of issue 17, (c)).

NumPy treats arrays of 256 KiB and more differently from small ones (temporaries may be
reused in place, buffers allocated otherwise), so the ids and deletions of a store are
checked here at sizes past it: shards of ``2**18 + 4096`` rows, so that each full shard's
ids file (8 bytes a row), its boolean row mask (1 byte a row) and its deleted-positions
file (~30 % of the rows, 8 bytes each) are all larger than 256 KiB. Non-contiguous ids are
added in two batches (the second extends the partial last shard), about 30 % are removed
in two calls, and the searches are compared with a float64 brute force over the
survivors, before and after ``compact``.
"""

from __future__ import annotations

import numpy as np
import pytest

from retgen_ref import ShardedIndex, load_index

D = 4
SHARD = 2**18 + 4096  # rows per shard: every per-shard array above is past 256 KiB
N = 2 * SHARD + 60_000  # two full shards and a partial one
K = 25
THRESHOLD = 256 * 1024


def _brute_force(xq: np.ndarray, xb: np.ndarray, metric: str) -> np.ndarray:
    """``(nq, n)`` float64 scores, summed directly (no expansion of the square)."""
    q, x = xq.astype(np.float64), xb.astype(np.float64)
    if metric == "ip":
        return q @ x.T
    return np.stack([((x - row) ** 2).sum(axis=1) for row in q])


def _assert_matches(D_, I, scores: np.ndarray, ids: np.ndarray, metric: str) -> None:
    """``(D_, I)`` are a top-``K`` of ``scores`` (over the rows ``ids``): distances equal
    to a relative 1e-5, every id a survivor reported at its own score, and every row
    strictly better than the ``K``-th score returned; among rows at the ``K``-th score
    (ties) any may be, so there only the distances are compared."""
    sign = 1.0 if metric == "l2" else -1.0
    ref = sign * np.sort(np.partition(sign * scores, K - 1, axis=1)[:, :K], axis=1)
    scale = np.abs(ref).max()
    tol = dict(rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(D_, ref, **tol)
    by_id = np.argsort(ids)
    pos = by_id[np.searchsorted(ids[by_id], I)]
    assert (ids[pos] == I).all(), "an id that is not a survivor was returned"
    assert all(len(set(row)) == K for row in I.tolist()), "an id returned twice"
    np.testing.assert_allclose(np.take_along_axis(scores, pos, axis=1), D_, **tol)
    for q in range(len(I)):
        better = np.flatnonzero(sign * scores[q] < sign * ref[q, -1] - 1e-5 * scale)
        assert set(ids[better].tolist()) <= set(I[q].tolist()), f"query {q} misses a row"


@pytest.mark.parametrize("metric, seed, offset", [
    ("l2", 3, 0.0), ("l2", 17, 0.0), ("l2", 2026, 0.0),
    ("ip", 3, 0.0), ("ip", 17, 0.0), ("ip", 2026, 0.0),
    ("l2", 17, 1000.0),  # |x| ~ 2000 for distances ~ 1: float32 expansion cancels
])
def test_large_sidecars_and_masks_equal_a_float64_brute_force(tmp_path, metric, seed,
                                                              offset):
    rng = np.random.default_rng(seed)
    xb = (rng.standard_normal((N, D)) + offset).astype(np.float32)
    ids = rng.permutation(np.cumsum(rng.integers(1, 1000, N)) + 2**40)  # gaps, no order
    path = tmp_path / "s"
    store = ShardedIndex(path, D, shard_size=SHARD, metric=metric)
    first = SHARD + 50_000
    store.add_with_ids(xb[:first], ids[:first])
    store.add_with_ids(xb[first:], ids[first:])  # extends the partial shard 1
    assert store.nshards == 3 and store.ntotal == N
    gone = rng.permutation(N)[:int(0.3 * N)]
    removed = store.remove_ids(ids[gone[:len(gone) * 2 // 3]])
    removed += store.remove_ids(np.r_[ids[gone[len(gone) * 2 // 3:]], ids[gone[:5]], 7])
    assert removed == len(gone)
    live = np.ones(N, dtype=bool)
    live[gone] = False
    assert np.array_equal(store.ids, ids[live])
    for shard in store._shards[:2]:  # the sizes this file is about
        assert (path / shard["ids"]["file"]).stat().st_size > THRESHOLD
        assert (path / shard["deleted"]["file"]).stat().st_size > THRESHOLD
        assert shard["rows"] > THRESHOLD  # the boolean mask of its rows
    # Queries at removed rows (an l2 search that let one through would return it at
    # distance 0), at the first and last removed position of every shard (the ends of
    # each deleted-positions file), at survivors, and fresh ones.
    starts = np.r_[0, SHARD, 2 * SHARD, N]
    ends = [np.flatnonzero(~live[a:b])[[0, -1]] + a for a, b in zip(starts, starts[1:])]
    at = np.r_[np.concatenate(ends), gone[-6:], np.flatnonzero(live)[:4]]
    xq = np.r_[xb[at], (rng.standard_normal((4, D)) + offset).astype(np.float32)]
    scores = _brute_force(xq, xb[live], metric)
    for searched in (store, load_index(path)):  # kept sidecars, then read afresh
        D_, I = searched.search(xq, K)
        _assert_matches(D_, I, scores, ids[live], metric)
    store.compact()
    assert store.n_deleted == 0 and np.array_equal(store.ids, ids[live])
    D_, I = store.search(xq, K)
    _assert_matches(D_, I, scores, ids[live], metric)
