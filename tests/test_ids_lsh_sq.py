"""Own ids, removal and filtered search on LSHIndex, SQIndex and IVFSQIndex (issue 17).

Every filtered search is checked against a computation that does not use the filter code:
for SQ a float64 NumPy brute force over the decoded codes of the allowed rows; for IVF-SQ
with every list probed, the brute force over its reconstructions (``reconstruct_batch``)
of the allowed rows; for LSH, whose candidates are its buckets, the unfiltered result
with ``k = ntotal`` (every candidate) restricted to the allowed ids, in the same order.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from retgen_ref import IVFSQIndex, LSHIndex, SQIndex, load_index

D_DIM = 16
SEEDS = [0, 1, 2]
SIZES = [1, 17, 3000]
METRICS = ["l2", "ip", "cosine"]
NLIST = 8


def _data(n, seed, d=D_DIM):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _unit(x):
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _own_ids(n, seed, high=10**6):
    """``n`` distinct ids in ``[0, high)``, shuffled (neither sorted nor positions)."""
    return np.random.default_rng(seed + 100).choice(high, size=n, replace=False).astype(np.int64)


def _trained(kind, metric, seed):
    """An empty index of ``kind`` (trained on its own data where it needs training)."""
    if kind == "lsh":
        return LSHIndex(D_DIM, nbits=3, n_tables=3, metric=metric, seed=seed)
    train = _data(600, seed + 50)
    index = SQIndex(D_DIM, metric) if kind == "sq" else IVFSQIndex(D_DIM, NLIST, metric,
                                                                   seed=seed)
    index.train(train)
    return index


def _filters(stored_ids, seed):
    """Filters over ``stored_ids``: ``(the filter as passed, allowed ids as a set)``. An
    allowed-id array (with repeats and ids not stored) and a boolean mask over ids."""
    rng = np.random.default_rng(seed + 200)
    chosen = stored_ids[rng.random(len(stored_ids)) < 0.3]
    as_array = np.concatenate([chosen, chosen[:3], [stored_ids.max() + 1, 10**12]])
    rng.shuffle(as_array)
    mask = np.zeros(int(stored_ids.max()) + 2, dtype=bool)
    mask[stored_ids[rng.random(len(stored_ids)) < 0.5]] = True
    every = np.ones(int(stored_ids.max()) + 1, dtype=bool)
    return [(as_array, set(chosen.tolist())), (mask, set(np.flatnonzero(mask).tolist())),
            (every, set(stored_ids.tolist())), (np.empty(0, np.int64), set())]


def _reference(queries, decoded, metric):
    """Float64 values to minimise, ``(nq, n)``: ``‖q − x‖²`` or ``−q·x``."""
    q = _unit(queries) if metric == "cosine" else queries.astype(np.float64)
    decoded = decoded.astype(np.float64)
    if metric == "l2":
        return ((q[:, None, :] - decoded[None, :, :]) ** 2).sum(axis=2)
    return -(q[:, None, :] * decoded[None, :, :]).sum(axis=2)


def _assert_brute_force(D, I, queries, decoded, stored_ids, allowed_ids, k, metric, rtol):
    """``(D, I)`` is the top ``k`` of the float64 brute force over the allowed rows of
    ``decoded`` (row ``r`` holding id ``stored_ids[r]``), ties by storage order: ids equal
    except between values equal within ``rtol``, then padding."""
    rows = np.flatnonzero(np.isin(stored_ids, list(allowed_ids)))
    values = _reference(queries, decoded[rows], metric)
    m = min(k, len(rows))
    pad = np.inf if metric == "l2" else -np.inf
    assert D.shape == I.shape == (len(queries), k)
    assert (I[:, m:] == -1).all() and (D[:, m:] == pad).all()
    if m == 0:
        return
    order = np.argsort(values, axis=1, kind="stable")[:, :m]
    expected_vals = np.take_along_axis(values, order, axis=1)
    expected_ids = stored_ids[rows][order]
    sign = 1.0 if metric == "l2" else -1.0
    tol = rtol * (1.0 + np.abs(expected_vals))
    assert (np.abs(sign * D[:, :m] - expected_vals) <= tol).all()
    column = {int(i): c for c, i in enumerate(stored_ids[rows])}
    for qi in range(len(queries)):
        got = I[qi, :m]
        assert set(got.tolist()) <= allowed_ids and len(set(got.tolist())) == m
        for slot in np.flatnonzero(got != expected_ids[qi]):  # only near-ties may swap
            ours = values[qi, column[int(got[slot])]]
            assert abs(ours - expected_vals[qi, slot]) <= tol[qi, slot]


# -- SQIndex and IVFSQIndex: filtered search equals the brute force -------------------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["sq", "ivfsq"])
def test_sq_filtered_search_equals_the_brute_force_over_the_allowed_rows(kind, seed, n,
                                                                         metric):
    x, xq = _data(n, seed), _data(7, seed + 10)
    ids = _own_ids(n, seed)
    index = _trained(kind, metric, seed)
    index.add_with_ids(x, ids)
    if kind == "sq":
        assert np.array_equal(index.ids, ids)
        decoded, rtol = index.sq.decode(index.codes), 1e-6  # rows in storage order
        stored = ids
    else:
        decoded, rtol, stored = index.reconstruct_batch(ids), 2e-5, ids
    for flt, allowed in _filters(ids, seed):
        for queries in (xq, xq[:1]):  # the batch kernel and the single-query kernel
            for k in (5, n):
                D, I = index.search(queries, k, ids=flt, **({"nprobe": NLIST}
                                                             if kind == "ivfsq" else {}))
                _assert_brute_force(D, I, queries, decoded, stored, allowed, k, metric, rtol)
                scanned = index.last_search_stats["entries_scanned"]
                assert (scanned == len(allowed)).all()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["sq", "ivfsq"])
def test_sq_removed_ids_are_never_returned_nor_reconstructed(kind, seed, tmp_path):
    n = 3000
    x, xq = _data(n, seed), _data(20, seed + 10)
    ids = _own_ids(n, seed, high=2**40)  # large ids: only an id array can filter them
    index = _trained(kind, "l2", seed)
    index.add_with_ids(x, ids)
    before = index.reconstruct_batch(ids)
    gone = ids[np.random.default_rng(seed).random(n) < 0.4]
    assert index.remove_ids(np.concatenate([gone, [-3, 2**41]])) == len(gone)
    kept = ~np.isin(ids, gone)
    assert index.ntotal == kept.sum()
    with pytest.raises(ValueError, match=f"id {int(gone[0])} is not in this"):
        index.reconstruct(int(gone[0]))
    np.testing.assert_array_equal(index.reconstruct_batch(ids[kept]), before[kept])
    knobs = {"nprobe": NLIST} if kind == "ivfsq" else {}
    D, I = index.search(xq, 50, **knobs)
    assert not np.isin(I, gone).any()
    _assert_brute_force(D, I, xq, before[kept], ids[kept], set(ids[kept].tolist()), 50,
                        "l2", 1e-6 if kind == "sq" else 2e-5)
    # a filter naming removed ids returns only the allowed ids still stored
    allowed = np.concatenate([gone[:200], ids[kept][:100]])
    D, I = index.search(xq, 150, ids=allowed, **knobs)
    _assert_brute_force(D, I, xq, before[kept], ids[kept], set(ids[kept][:100].tolist()),
                        150, "l2", 1e-6 if kind == "sq" else 2e-5)
    if kind == "sq":  # the kept codes are those of the kept vectors, in their order
        assert np.array_equal(index.codes, index.sq.encode(x[kept]))
        assert np.array_equal(index.ids, ids[kept])
    path = tmp_path / f"{kind}.idx"
    index.save(path)
    for again in (load_index(path), copy.deepcopy(index), pickle.loads(pickle.dumps(index))):
        assert type(again) is type(index)
        for a, b in zip(again.search(xq, 10, ids=allowed, **knobs),
                        index.search(xq, 10, ids=allowed, **knobs)):
            assert np.array_equal(a, b)
        np.testing.assert_array_equal(again.reconstruct_batch(ids[kept][:50]),
                                      before[kept][:50])
        with pytest.raises(ValueError, match="is not in this"):
            again.reconstruct(int(gone[0]))


def test_sq_ids_follow_add_reset_and_train():
    x = _data(300, 3)
    index = _trained("sq", "l2", 3)
    index.add(x[:10])
    assert np.array_equal(index.ids, np.arange(10))
    index.add_with_ids(x[10:20], np.arange(500, 510)[::-1])
    index.add(x[20:25])                                 # numbered on after the largest id
    assert index.ids.tolist() == list(range(10)) + list(range(509, 499, -1)) + \
        list(range(510, 515))
    assert index.search(x[12:13], 1)[1][0, 0] == 507
    assert index.search(x[22:23], 1)[1][0, 0] == 512
    np.testing.assert_array_equal(index.reconstruct(507), index.sq.decode(index.codes[12:13])[0])
    index.reset()
    index.add(x[:5])
    assert np.array_equal(index.ids, np.arange(5))
    index.add_with_ids(x[:3], [70, 80, 90])
    index.train(x)                                      # training discards rows and ids
    assert index.ntotal == 0
    index.add(x[:4])
    assert np.array_equal(index.ids, np.arange(4))
    assert index.search(x[3:4], 1)[1][0, 0] == 3


# -- LSHIndex: a filter keeps the allowed members of the unfiltered candidates ----------
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("seed", SEEDS)
def test_lsh_filtered_search_is_the_unfiltered_candidates_restricted(seed, n, metric):
    x, xq = _data(n, seed), _data(9, seed + 10)
    ids = _own_ids(n, seed)
    index = _trained("lsh", metric, seed)
    index.add_with_ids(x, ids)
    D_all, I_all = index.search(xq, n)                   # every candidate of each query
    counts_all = index.last_search_stats["candidates"]
    assert ((I_all >= 0).sum(axis=1) == counts_all).all()
    pad = np.inf if metric == "l2" else -np.inf
    for flt, allowed in _filters(ids, seed):
        for queries, D_ref, I_ref in ((xq, D_all, I_all), (xq[:1], D_all[:1], I_all[:1])):
            for k in (n, 4):
                D, I = index.search(queries, k, ids=flt)
                counts = index.last_search_stats["candidates"]
                for qi in range(len(queries)):
                    keep = np.isin(I_ref[qi], list(allowed)) & (I_ref[qi] >= 0)
                    assert counts[qi] == keep.sum()      # only allowed ones are scored
                    m = min(k, int(keep.sum()))
                    assert np.array_equal(I[qi, :m], I_ref[qi][keep][:m])
                    assert np.array_equal(D[qi, :m], D_ref[qi][keep][:m])
                    assert (I[qi, m:] == -1).all() and (D[qi, m:] == pad).all()
                assert set(I[I >= 0].tolist()) <= allowed


@pytest.mark.parametrize("seed", SEEDS)
def test_lsh_own_ids_equal_default_ids_mapped_and_removal_equals_a_fresh_build(seed,
                                                                               tmp_path):
    n = 3000
    x, xq = _data(n, seed), _data(30, seed + 10)
    ids = _own_ids(n, seed, high=2**40)
    plain, mine = _trained("lsh", "l2", seed), _trained("lsh", "l2", seed)
    plain.add(x)
    mine.add_with_ids(x, ids)
    D0, I0 = plain.search(xq, 20)
    D1, I1 = mine.search(xq, 20)                         # also builds the sorted buckets
    assert np.array_equal(D0, D1) and np.array_equal(I1, np.where(I0 >= 0, ids[I0], -1))
    gone = ids[np.random.default_rng(seed).random(n) < 0.4]
    assert mine.remove_ids(gone) == len(gone)
    kept = ~np.isin(ids, gone)
    extra = _data(len(gone), seed + 20)                  # back to the same ntotal
    extra_ids = np.arange(len(gone)) + 2**41
    mine.add_with_ids(extra, extra_ids)
    assert mine.ntotal == n
    fresh = _trained("lsh", "l2", seed)
    fresh.add(np.concatenate([x[kept], extra]))
    fresh_ids = np.concatenate([ids[kept], extra_ids])
    D2, I2 = fresh.search(xq, 40)
    D3, I3 = mine.search(xq, 40)
    assert np.array_equal(D3, D2) and np.array_equal(I3, np.where(I2 >= 0, fresh_ids[I2], -1))
    assert np.array_equal(mine.last_search_stats["candidates"],
                          fresh.last_search_stats["candidates"])
    assert not np.isin(I3, gone).any()
    with pytest.raises(ValueError, match=f"id {int(gone[0])} is not in this LSHIndex"):
        mine.reconstruct(int(gone[0]))
    np.testing.assert_array_equal(mine.reconstruct_batch(ids[kept][:20]), x[kept][:20])
    np.testing.assert_array_equal(mine.reconstruct(int(extra_ids[3])), extra[3])
    path = tmp_path / "lsh.idx"
    mine.save(path)
    allowed = fresh_ids[::3]
    for again in (load_index(path), copy.deepcopy(mine), pickle.loads(pickle.dumps(mine))):
        assert np.array_equal(again.ids, mine.ids)
        for a, b in zip(again.search(xq, 40, ids=allowed), mine.search(xq, 40, ids=allowed)):
            assert np.array_equal(a, b)
        with pytest.raises(ValueError, match="is not in this LSHIndex"):
            again.reconstruct(int(gone[0]))


def test_lsh_ids_follow_add_and_reset_and_files_without_ids_load(tmp_path):
    x = _data(200, 4)
    index = _trained("lsh", "cosine", 4)
    index.add(x[:50])
    index.save(tmp_path / "plain.idx")                   # default ids: no ids array saved
    loaded = load_index(tmp_path / "plain.idx")
    assert np.array_equal(loaded.ids, np.arange(50))
    loaded.add(x[50:60])
    assert np.array_equal(loaded.ids, np.arange(60))
    index.add_with_ids(x[50:60], np.arange(1000, 1010))
    index.add(x[60:62])
    assert index.ids[-3:].tolist() == [1009, 1010, 1011]
    assert index.search(x[55:56], 1)[1][0, 0] == 1005
    index.reset()
    assert index.ntotal == 0
    index.add(x[:3])
    assert np.array_equal(index.ids, np.arange(3))
    assert index.search(x[2:3], 1)[1][0, 0] == 2


# -- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lsh", "sq", "ivfsq"])
def test_a_mask_shorter_than_the_largest_id_is_an_error(kind):
    x = _data(40, 5)
    index = _trained(kind, "l2", 5)
    index.add_with_ids(x, np.arange(40) * 10)
    for nq in (1, 3):
        with pytest.raises(ValueError, match="mask has 390 entries but the index holds id 390"):
            index.search(x[:nq], 3, ids=np.ones(390, dtype=bool))
        D, I = index.search(x[:nq], 3, ids=np.ones(391, dtype=bool))  # long enough
        assert (I[:, 0] == np.arange(nq) * 10).all()
    plain = _trained(kind, "l2", 5)
    plain.add(x)                                         # default ids 0 … 39
    with pytest.raises(ValueError, match="mask has 39 entries but the index holds id 39"):
        plain.search(x[:1], 3, ids=np.ones(39, dtype=bool))
    mask = np.zeros(40, dtype=bool)
    mask[[5, 7]] = True
    assert set(plain.search(x[:2], 40, ids=mask)[1].ravel().tolist()) <= {5, 7, -1}
