"""Ids of one's own and deletion on FlatIndex (issue 17), as FAISS's
``IndexIDMap(IndexFlatL2)``: searches return the given ids, removals take rows out."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from retgen_ref import FlatIndex, load_index


def _data(n, seed, d=16):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _brute(x, ids, xq, k):
    d2 = ((xq.astype(np.float64)[:, None] - x.astype(np.float64)[None]) ** 2).sum(axis=2)
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return ids[order]


def test_searches_return_the_given_ids_and_skip_the_removed(tmp_path):
    x, xq = _data(1_000, 0), _data(30, 1)
    ids = np.random.default_rng(2).permutation(10**6)[:1_000].astype(np.int64) * 3
    index = FlatIndex(16)
    index.add_with_ids(x, ids)
    assert np.array_equal(index.search(xq, 10)[1], _brute(x, ids, xq, 10))
    gone = ids[::3]
    assert index.remove_ids(np.concatenate([gone, [-5, 7]])) == len(gone)  # unknown: ignored
    kept = ~np.isin(ids, gone)
    assert index.ntotal == kept.sum()
    assert np.array_equal(index.search(xq, 10)[1], _brute(x[kept], ids[kept], xq, 10))
    assert np.array_equal(index.reconstruct_batch(ids[kept][[5, 0]]), x[kept][[5, 0]])
    with pytest.raises(ValueError, match=f"id {int(gone[0])} is not in this FlatIndex"):
        index.reconstruct(int(gone[0]))
    path = tmp_path / "flat.idx"
    index.save(path)
    for again in (load_index(path), copy.deepcopy(index)):
        assert np.array_equal(again.ids, index.ids)
        assert np.array_equal(again.search(xq, 10)[1], index.search(xq, 10)[1])


def test_default_ids_become_a_map_on_the_first_removal_and_add_numbers_on():
    x = _data(100, 3)
    index = FlatIndex(16)
    index.add(x)
    assert np.array_equal(index.ids, np.arange(100))
    assert index.remove_ids([0, 50, 99]) == 3
    index.add(_data(2, 4))
    assert index.ids[-2:].tolist() == [99, 100]          # after the largest id stored, 98
    assert index.search(x[50:51], 1)[1][0, 0] != 50
    index.add_with_ids(x[:1], [7_000])
    assert index.search(x[:1], 1)[1][0, 0] == 7_000
    n = index.ntotal
    assert index.remove_ids(index.ids) == n and index.ntotal == 0
    with pytest.raises(ValueError, match="id 5 is not in this FlatIndex"):
        index.reconstruct(5)                             # an empty id map, not an IndexError
    with pytest.raises(ValueError, match="empty"):
        index.search(x[:1], 1)


def test_the_same_results_as_faiss_index_id_map():
    faiss = pytest.importorskip("faiss")
    x, xq = _data(2_000, 5), _data(20, 6)
    ids = np.arange(2_000, dtype=np.int64) * 11 + 5
    ours, theirs = FlatIndex(16), faiss.IndexIDMap(faiss.IndexFlatL2(16))
    ours.add_with_ids(x, ids)
    theirs.add_with_ids(x, ids)
    remove = ids[100:600]
    assert ours.remove_ids(remove) == theirs.remove_ids(remove) == 500
    D, I = ours.search(xq, 10)
    D_f, I_f = theirs.search(xq, 10)
    assert np.array_equal(I, I_f) and np.allclose(D, D_f, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ids,error,message", [
    (np.arange(4), ValueError, "ids must be 5 integers"),
    (np.zeros(5, float), ValueError, "ids must be 5 integers"),
])
def test_bad_ids_are_clear_errors(ids, error, message):
    with pytest.raises(error, match=message):
        FlatIndex(16).add_with_ids(_data(5, 7), ids)
    with pytest.raises(TypeError, match="ids must be integers"):
        FlatIndex(16).remove_ids([0.5])
