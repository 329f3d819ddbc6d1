"""Ids and deletion in ShardedIndex (issue 17): ``add_with_ids``, ``remove_ids`` (rows
marked deleted in a file beside their shard) and ``compact``.

The store is checked against a float64 brute force over the vectors a plain Python record
says are live, through random sequences of adds, adds with ids, removals and filtered
searches that cross shard boundaries and the partial last shard, reopening the store from
disk in between; against a new store built from the survivors (compact); and for the
invariant its crash safety rests on: no write ever goes to a file the manifest names.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from retgen_ref import ShardedIndex, load_index
from retgen_ref.index import store as store_module
from retgen_ref.index.store import MANIFEST, _records
from retgen_ref.persist import write_manifest

D = 8
PARAMS = {"flat": {}, "hnsw": {"M": 6, "ef_construction": 24},
          "ivfpq": {"nlist": 4, "m": 2, "nbits": 4, "store_vectors": True}}


def _rows(n, seed):
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def _brute_force(xq, live: dict, k: int, metric: str, allowed=None):
    """Best ``k`` live ids (optionally only ``allowed`` ones) by float64 scores."""
    ids = np.array([i for i in live if allowed is None or i in allowed], dtype=np.int64)
    x = np.array([live[i] for i in ids], dtype=np.float64).reshape(-1, D)
    q = xq.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    scores = (((q[:, None, :] - x[None]) ** 2).sum(-1) if metric == "l2" else q @ x.T)
    order = np.argsort(scores if metric == "l2" else -scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), ids[order]


def _files(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_ids_removals_and_filters_equal_a_float64_brute_force(tmp_path, metric, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "s"
    store = ShardedIndex(path, D, shard_size=100, metric=metric)
    live: dict[int, np.ndarray] = {}
    next_id = 0
    for step in range(10):
        op = rng.integers(3)
        if op == 0 or not live:  # add, numbered on from the largest id ever stored
            x = _rows(int(rng.integers(1, 180)), 100 * seed + step)
            store.add(x)
            new = range(next_id, next_id + len(x))
        elif op == 1:  # add with ids, unique but in no particular order
            x = _rows(int(rng.integers(1, 180)), 100 * seed + step)
            new = rng.choice(np.arange(10**6, 2 * 10**6), len(x), replace=False)
            store.add_with_ids(x, new)
        else:  # remove some live ids, some removed before and some never stored
            gone = rng.choice(list(live), max(1, len(live) // 4), replace=False)
            asked = np.r_[gone, gone[:3], 5 * 10**6]
            assert store.remove_ids(asked) == len(gone)
            for i in gone:
                del live[int(i)]
            new, x = [], np.empty((0, D))
        for i, row in zip(new, x):
            live[int(i)] = row
        next_id = max([next_id, *(int(i) + 1 for i in new)])
        if step % 3 == 2:
            store = load_index(path)  # what was written is what is read
        assert store.ntotal == len(live)
        assert sorted(store.ids.tolist()) == sorted(live)
        xq = _rows(7, 1000 + step)
        k = int(rng.integers(1, 40))
        allowed = set(rng.choice(list(live), max(1, len(live) // 3), replace=False).tolist())
        for only in (None, allowed):
            D_, I = store.search(xq, k, ids=None if only is None else sorted(only))
            D_ref, I_ref = _brute_force(xq, live, k, metric, only)
            n = I_ref.shape[1]
            assert np.array_equal(I[:, :n], I_ref) and (I[:, n:] == -1).all()
            np.testing.assert_allclose(D_[:, :n], D_ref, rtol=1e-5, atol=1e-5)
    some = np.array(list(live)[::5])
    expected = np.array([live[int(i)] for i in some])
    if metric == "cosine":
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(store.reconstruct_batch(some), expected, rtol=1e-6)


def test_default_ids_number_on_from_the_largest_id_ever_stored(tmp_path):
    store = ShardedIndex(tmp_path / "s", D, shard_size=100)
    store.add(_rows(250, 0))
    assert store.remove_ids([249, 248]) == 2 and store.ntotal == 248
    store.add(_rows(1, 1))
    assert store.ids[-1] == 250  # not 248: a removed id is never given again
    store.add_with_ids(_rows(3, 2), [7000, 5000, 6000])
    store.add(_rows(2, 3))
    assert store.ids[-5:].tolist() == [7000, 5000, 6000, 7001, 7002]
    assert load_index(tmp_path / "s").ids.tolist() == store.ids.tolist()
    store.reset()
    store.add(_rows(2, 4))
    assert store.ids.tolist() == [0, 1]


def test_a_store_writes_ids_and_deletions_only_where_needed(tmp_path):
    path = tmp_path / "s"
    store = ShardedIndex(path, D, shard_size=100)
    store.add(_rows(250, 0))
    assert _files(path) == {MANIFEST, "shard-000000-100.npy", "shard-000001-100.npy",
                            "shard-000002-50.npy"}  # ids are row numbers: none stored
    full = [dict(s) for s in store._shards[:2]]
    store.remove_ids([3, 120, 121, 999])
    assert _files(path) - {MANIFEST} == {
        "shard-000000-100.npy", "shard-000000-100.deleted-1.npy",
        "shard-000001-100.npy", "shard-000001-100.deleted-2.npy", "shard-000002-50.npy"}
    assert [{k: s[k] for k in ("file", "sha256")} for s in store._shards[:2]] == \
        [{k: s[k] for k in ("file", "sha256")} for s in full]  # the shards were not rewritten
    store.add_with_ids(_rows(60, 1), np.arange(60) + 10**6)  # fills shard 2, starts shard 3
    assert {"shard-000002-100.npy", "shard-000002-100.ids.npy", "shard-000003-10.npy",
            "shard-000003-10.ids.npy"} <= _files(path)
    assert not any("shard-000002-50" in f for f in _files(path))  # the replaced last shard
    store.compact()
    assert store.n_deleted == 0 and store.ntotal == 307
    names = _files(path) - {MANIFEST}
    assert all("-c1" in f for f in names) and not any("deleted" in f for f in names)
    assert "shard-000000-100-c1.ids.npy" in names  # ids 0 … 2, 4 … 100: not row numbers
    assert store.nbytes == sum((path / f).stat().st_size for f in _files(path))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_compact_equals_a_new_store_given_the_survivors_with_their_ids(tmp_path, kind):
    x = _rows(330, 5)
    store = ShardedIndex(tmp_path / "s", D, 64, kind=kind, **PARAMS[kind])
    store.add(x[:200])
    store.add_with_ids(x[200:], np.arange(130) * 3 + 10**5)
    gone = np.r_[np.arange(0, 200, 7), np.arange(0, 130, 5) * 3 + 10**5]
    assert store.remove_ids(gone) == len(gone)
    survivors = store.ids
    xq = _rows(20, 6)
    before = store.search(xq, 10)
    store.compact()
    fresh = ShardedIndex(tmp_path / "fresh", D, 64, kind=kind, **PARAMS[kind])
    fresh.add_with_ids(x[~np.isin(np.r_[np.arange(200), np.arange(130) * 3 + 10**5], gone)],
                       survivors)
    assert [s["sha256"] for s in store._shards] == [s["sha256"] for s in fresh._shards]
    assert store.ids.tolist() == survivors.tolist() and store.n_deleted == 0
    after = load_index(tmp_path / "s").search(xq, 10)
    for a, b in zip(after, fresh.search(xq, 10)):
        assert np.array_equal(a, b)
    if kind == "flat":  # exact: compaction changes no answer
        for a, b in zip(after, before):
            assert np.array_equal(a, b)


def test_compact_of_ivfpq_shards_without_vectors_is_refused_before_any_write(tmp_path):
    store = ShardedIndex(tmp_path / "s", D, 64, kind="ivfpq", nlist=4, m=2, nbits=4)
    store.add(_rows(100, 0))
    store.remove_ids([1, 2])
    listing = {p: p.read_bytes() for p in (tmp_path / "s").iterdir()}
    with pytest.raises(ValueError, match="store_vectors=False.*add_with_ids"):
        store.compact()
    assert {p: p.read_bytes() for p in (tmp_path / "s").iterdir()} == listing
    assert store.remove_ids([1, 2]) == 0 and store.ntotal == 98


def test_no_write_goes_to_a_file_the_manifest_names(tmp_path, monkeypatch):
    """Crash safety rests on this: a kill between a file's rename and the manifest's leaves
    the old manifest naming only its own, unchanged files."""
    path = tmp_path / "s"
    store = ShardedIndex(path, D, shard_size=50, kind="hnsw", **PARAMS["hnsw"])
    real = store_module.atomic_write
    written = []

    def guarded(target):
        manifest = json.loads((path / MANIFEST).read_text())
        named = {r["file"] for s in manifest["shards"] for r in _records(
            {"ids": None, "deleted": None, **s})}
        assert target.name not in named, f"{target.name} is named by the manifest"
        written.append(target.name)
        return real(target)

    monkeypatch.setattr(store_module, "atomic_write", guarded)
    rng = np.random.default_rng(0)
    for step in range(12):
        if step % 4 == 0:
            store.add_with_ids(_rows(70, step), np.arange(70) + 1000 * step)
        elif step % 4 == 1:
            store.add(_rows(30, step))
        elif step % 4 == 2:
            for _ in range(2):  # twice: the second removal extends the first one's files
                store.remove_ids(rng.choice(store.ids, 5, replace=False))
        else:
            store.compact()
    assert any("deleted" in w for w in written) and any("-c3" in w for w in written)


def test_a_failed_removal_or_compaction_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "s"
    store = ShardedIndex(path, D, shard_size=50)
    store.add(_rows(120, 0))
    store.remove_ids([0])
    before = (path / MANIFEST).read_text()
    write = ShardedIndex._write_array
    calls = []

    def fail_on_second(self, name, a):
        calls.append(name)
        if len(calls) == 2:
            raise OSError("disk full")
        return write(self, name, a)

    monkeypatch.setattr(ShardedIndex, "_write_array", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        store.remove_ids([1, 60])  # two shards' deletions: the second write fails
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        store.compact()
    monkeypatch.undo()
    assert (path / MANIFEST).read_text() == before
    assert store.ntotal == 119 and store._compactions == 0
    assert load_index(path).ntotal == 119
    assert store.remove_ids([1, 60]) == 2
    store.compact()
    assert load_index(path).ids.tolist() == [i for i in range(120) if i not in (0, 1, 60)]
    assert _files(path) == {MANIFEST, *(r["file"] for s in store._shards for r in _records(s))}


def test_damaged_ids_or_deletions_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "s"
    store = ShardedIndex(path, D, shard_size=50)
    store.add_with_ids(_rows(80, 0), np.arange(80) + 500)
    store.remove_ids([501, 560])
    ids_file = path / store._shards[1]["ids"]["file"]
    raw = bytearray(ids_file.read_bytes())
    raw[-1] ^= 1
    ids_file.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=rf"\({ids_file.name}\).*damaged: its SHA-256"):
        load_index(path).search(_rows(1, 1), 3)
    deleted = path / store._shards[0]["deleted"]["file"]
    deleted.write_bytes(deleted.read_bytes()[:-8])
    with pytest.raises(ValueError, match=rf"\({deleted.name}\).*has \d+ bytes"):
        load_index(path)
    # A well-formed file whose positions are not the sorted rows of its shard.
    np.save(deleted, np.array([7, 3], dtype=np.int64))
    manifest = json.loads((path / MANIFEST).read_text())
    manifest.pop("checksum")
    entry = manifest["shards"][0]["deleted"]
    entry["bytes"], entry["sha256"] = deleted.stat().st_size, store_module._sha256(deleted)
    entry["count"] = 2
    write_manifest(path / MANIFEST, manifest)
    with pytest.raises(ValueError, match="sorted row positions"):
        load_index(path).search(_rows(1, 1), 3)


def test_a_version_1_store_loads_with_row_numbers_as_ids(tmp_path):
    path = tmp_path / "s"
    ShardedIndex(path, D, shard_size=50).add(_rows(120, 0))
    manifest = json.loads((path / MANIFEST).read_text())
    for key in ("checksum", "next_id", "compactions"):
        manifest.pop(key)
    for shard in manifest["shards"]:
        shard.pop("ids"), shard.pop("deleted")
    write_manifest(path / MANIFEST, {**manifest, "version": 1})
    old = load_index(path)
    assert old.ids.tolist() == list(range(120)) and old.n_deleted == 0
    old.add(_rows(1, 1))
    old.remove_ids([0])
    assert json.loads((path / MANIFEST).read_text())["version"] == 2
    assert load_index(path).ids.tolist() == list(range(1, 121))


def test_bad_ids_are_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "s"
    store = ShardedIndex(path, D, shard_size=50)
    store.add(_rows(60, 0))
    listing = {p: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(ValueError, match="ids must be 3 integers"):
        store.add_with_ids(_rows(3, 1), [1, 2])
    with pytest.raises(ValueError, match="ids must be 3 integers"):
        store.add_with_ids(_rows(3, 1), [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="ids must be integers"):
        store.remove_ids([1.5])
    with pytest.raises(ValueError, match="id 60 is not in this ShardedIndex"):
        store.reconstruct(60)
    assert {p: p.read_bytes() for p in path.iterdir()} == listing
    assert store.remove_ids([59]) == 1
    with pytest.raises(ValueError, match="id 59 is not in this ShardedIndex"):
        store.reconstruct(59)
    assert store.remove_ids([59]) == 0  # already removed


def test_a_search_reads_each_sidecar_once_and_a_change_only_what_it_wrote(tmp_path,
                                                                          monkeypatch):
    """Review of issue 17, (a): sidecars are read once per opened store, not per query or
    per use; a removal, add or compaction re-reads only the files it wrote."""
    path = tmp_path / "s"
    store = ShardedIndex(path, D, shard_size=50)
    store.add(_rows(110, 0))  # shards 0 and 1 full, shard 2 of 10: ids are row numbers
    store.add_with_ids(_rows(70, 1), np.arange(70) * 7 + 10**6)  # fills 2, starts 3
    store.remove_ids([3, 104, 10**6 + 7 * 45, 10**6 + 7 * 69])  # shards 0, 2, 3
    sidecars = sorted(r["file"] for s in store._shards for r in _records(s)[1:])
    assert len(sidecars) == 5 and not _records(store._shards[1])[1:]  # 0: del, 2, 3: both
    read = []
    real = ShardedIndex._read_int64

    def counted(self, i, record, n):
        read.append(record["file"])
        return real(self, i, record, n)

    monkeypatch.setattr(ShardedIndex, "_read_int64", counted)
    store = load_index(path)  # a reload starts with nothing kept
    xq = _rows(9, 2)
    allowed = store.ids[::2]
    store.search(xq, 20, ids=allowed)  # the filter needs ids, the labels again
    assert sorted(read) == sidecars
    store.search(xq, 20)
    store.range_search(xq, 30.0)
    assert store.ntotal == 176 and len(store.ids) == 176 and sorted(read) == sidecars
    read.clear()
    assert store.remove_ids([10**6 + 7 * 60]) == 1  # shard 3's deletions: a new file
    assert read == []
    store.search(xq, 20)
    assert read == [store._shards[3]["deleted"]["file"]]
    read.clear()
    store.add_with_ids(_rows(5, 3), np.arange(5) + 5 * 10**6)  # rewrites shard 3
    store.search(xq, 20, ids=allowed)
    assert sorted(read) == sorted(r["file"] for r in _records(store._shards[3])[1:])
    read.clear()
    store.compact()
    assert read == []
    after = store.search(xq, 20)
    assert sorted(read) == sorted(r["file"] for s in store._shards for r in _records(s)[1:])
    monkeypatch.undo()
    for a, b in zip(after, load_index(path).search(xq, 20)):  # what is kept is what is read
        assert np.array_equal(a, b)
    store.reset()  # names come back after a reset: what is kept must not
    store.add_with_ids(_rows(60, 4), np.arange(60) + 10**6)
    store.search(xq, 1)
    store.reset()
    store.add_with_ids(_rows(60, 4), np.arange(60) + 2 * 10**6)
    assert store.ids.tolist() == list(range(2 * 10**6, 2 * 10**6 + 60))
