"""HNSWIndex ids and deletion (issue 17): hnswlib's labels and ``mark_deleted``, ``compact``.

A deleted node is never returned but stays in the graph for navigation; ``compact`` must
give the index that ``add_with_ids`` of the surviving vectors builds; files round-trip.
"""

from __future__ import annotations

import numpy as np
import pytest

from retgen_ref import FlatIndex, HNSWIndex, load_index
from retgen_ref.synthetic import gaussian_mixture


def _pair(n=3_000, seed=0, d=16):
    x = gaussian_mixture(n, d, n_clusters=25, seed=seed)
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.unique(rng.integers(0, 10 ** 12, 2 * n))[:n]).astype(np.int64)
    index = HNSWIndex(d, M=10, ef_construction=80, seed=seed)
    index.add_with_ids(x, ids)
    return index, x, ids


def _recall(I, truth):
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / len(b) for a, b in zip(I, truth)]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ids_are_returned_and_reconstructed(seed):
    index, x, ids = _pair(seed=seed)
    D, I = index.search(x[:40], 1)
    np.testing.assert_array_equal(I[:, 0], ids[:40])
    np.testing.assert_array_equal(index.reconstruct_batch(ids[[5, 0, 2999]]), x[[5, 0, 2999]])
    index.add(x[:2])  # numbers on from the largest id
    assert index.search(x[:1], 2)[1][0].tolist() in ([ids[0], ids.max() + 1],
                                                      [ids.max() + 1, ids[0]])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_removed_ids_are_never_returned_and_recall_holds(seed, fraction):
    index, x, ids = _pair(seed=seed)
    rng = np.random.default_rng(seed + 50)
    gone = rng.random(len(x)) < fraction
    assert index.remove_ids(ids[gone]) == gone.sum()
    assert index.remove_ids(ids[gone]) == 0  # already deleted
    assert index.ntotal == (~gone).sum() and index.n_deleted == gone.sum()
    xq = gaussian_mixture(200, 16, n_clusters=25, seed=seed + 100)
    D, I = index.search(xq, 10, ef=80)
    assert not np.isin(I, ids[gone]).any()
    exact = FlatIndex(16)
    exact.add_with_ids(x[~gone], ids[~gone])
    assert _recall(I, exact.search(xq, 10)[1]) >= 0.95
    with pytest.raises(ValueError, match="not in this HNSWIndex"):
        index.reconstruct(int(ids[gone][0]))


def test_deleted_nodes_still_carry_searches():
    """Delete every node but a few scattered ones: without walking through deleted
    nodes the graph would be cut into pieces and most live neighbours lost."""
    index, x, ids = _pair(n=4_000, seed=3)
    live = np.zeros(len(x), bool)
    live[::50] = True
    index.remove_ids(ids[~live])
    D, I = index.search(x[:100], 5, ef=64)
    exact = FlatIndex(16)
    exact.add_with_ids(x[live], ids[live])
    assert _recall(I, exact.search(x[:100], 5)[1]) >= 0.9


def test_compact_equals_a_fresh_build_of_the_survivors():
    index, x, ids = _pair(seed=4)
    gone = np.random.default_rng(4).random(len(x)) < 0.3
    index.remove_ids(ids[gone])
    index.compact()
    fresh = HNSWIndex(16, M=10, ef_construction=80, seed=4)
    fresh.add_with_ids(x[~gone], ids[~gone])
    assert index.n_deleted == 0 and index.ntotal == fresh.ntotal
    np.testing.assert_array_equal(index.ids, fresh.ids)
    for node in range(0, fresh.ntotal, 97):
        np.testing.assert_array_equal(index.neighbors(node), fresh.neighbors(node))
    xq = x[:50] + 0.01
    np.testing.assert_array_equal(index.search(xq, 5)[1], fresh.search(xq, 5)[1])
    index.add(x[:1])  # the numbering does not reuse the ids removed
    assert index.ids[-1] == ids.max() + 1


def test_removing_everything_leaves_an_empty_index():
    index, x, ids = _pair(n=200)
    index.remove_ids(ids)
    assert index.ntotal == 0
    with pytest.raises(ValueError, match="empty"):
        index.search(x[:1], 1)
    index.compact()
    index.add(x[:5])
    assert index.search(x[:1], 1)[1][0, 0] == ids.max() + 1


def test_save_load_keeps_ids_and_deletions(tmp_path):
    index, x, ids = _pair(seed=5)
    index.remove_ids(ids[::3])
    index.save(tmp_path / "h.npz")
    back = load_index(tmp_path / "h.npz")
    assert (back.ntotal, back.n_deleted) == (index.ntotal, index.n_deleted)
    np.testing.assert_array_equal(back.ids, index.ids)
    np.testing.assert_array_equal(back.is_deleted(), index.is_deleted())
    xq = x[:64] + 0.05
    np.testing.assert_array_equal(back.search(xq, 7)[1], index.search(xq, 7)[1])
    back.add(x[:1])
    index.add(x[:1])
    assert back.ids[-1] == index.ids[-1] == ids.max() + 1


def test_a_file_written_before_ids_existed_still_loads(tmp_path):
    from retgen_ref import persist
    x = gaussian_mixture(500, 8, seed=6)
    index = HNSWIndex(8, M=6)
    index.add(x)
    params, arrays = index._state()
    del params["next_id"], arrays["ids"], arrays["deleted"]
    persist.save_state(tmp_path / "old.npz", index.kind,
                       {"d": 8, "metric": "l2", **params}, arrays)
    old = load_index(tmp_path / "old.npz")
    np.testing.assert_array_equal(old.ids, np.arange(500))
    np.testing.assert_array_equal(old.search(x[:20], 3)[1], index.search(x[:20], 3)[1])
