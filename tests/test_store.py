"""ShardedIndex (retgen_v2.md §8.2): flat shards equal one FlatIndex, batches do not matter,
the store reopens, approximate shards reach their recall floor, knobs pass through, and
damaged, missing or foreign files are refused clearly."""

from __future__ import annotations

import numpy as np
import pytest

from retgen_ref import FlatIndex, HNSWIndex, IVFPQIndex, ShardedIndex, load_index
from retgen_ref.index.store import MANIFEST
from retgen_ref.reference import pairwise_scores
from retgen_ref.synthetic import gaussian_mixture

METRICS = ["l2", "ip", "cosine"]
PARAMS = {"flat": {}, "ivfpq": {"nlist": 8, "m": 4, "nbits": 5},
          "hnsw": {"M": 6, "ef_construction": 24}}


def _data(n, d, nq, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)).astype(np.float32),
            rng.standard_normal((nq, d)).astype(np.float32))


def _assert_same_results(D, I, D_ref, I_ref, xq, xb, metric, exact_distances):
    """Equal up to ties: distances equal (bitwise, or to float32 rounding of the BLAS
    products), ids equal except among (nearly) equal distances, and every returned id
    really has the distance reported at its position."""
    assert D.dtype == np.float32 and I.dtype == np.int64 and D.shape == I.shape == D_ref.shape
    if exact_distances:
        assert np.array_equal(D, D_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-5)
    assert np.array_equal(I < 0, I_ref < 0)
    close = np.isclose(D[:, 1:], D[:, :-1], rtol=1e-5, atol=1e-5)
    tied = np.zeros(I.shape, dtype=bool)
    tied[:, 1:] |= close
    tied[:, :-1] |= close
    assert np.array_equal(I[~tied], I_ref[~tied])
    valid = I >= 0
    scores = np.take_along_axis(pairwise_scores(xq, xb, metric), np.maximum(I, 0), axis=1)
    np.testing.assert_allclose(scores[valid], D_ref[valid], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("metric", METRICS)
def test_flat_shards_equal_one_flat_index(tmp_path, metric, seed):
    xb, xq = _data(1050, 16, 30, seed)
    store = ShardedIndex(tmp_path / "s", 16, shard_size=100, metric=metric)
    for part in np.split(xb, [333, 334, 700]):  # several batches, crossing shard boundaries
        store.add(part)
    assert store.ntotal == 1050 and store.nshards == 11  # 10 full shards and one of 50
    flat = FlatIndex(16, metric)
    flat.add(xb)
    for nq in (5, 30):  # the scan path and the BLAS path of exact_topk
        for k in (1, 10, 150, 2000):  # up to more than a shard and more than ntotal
            D, I = store.search(xq[:nq], k)
            D_ref, I_ref = flat.search(xq[:nq], k)
            _assert_same_results(D, I, D_ref, I_ref, xq[:nq], xb, metric, nq < 20)
    D, I = store.search(xq, 2000)
    assert (I[:, 1050:] == -1).all()
    assert (D[:, 1050:] == (np.inf if metric == "l2" else -np.inf)).all()


@pytest.mark.parametrize("kind", ["flat", "ivfpq", "hnsw"])
def test_adding_in_batches_equals_one_batch_and_rewrites_only_the_last_shard(tmp_path, kind):
    xb = gaussian_mixture(330, 8, n_clusters=10, seed=0)
    one = ShardedIndex(tmp_path / "one", 8, 64, kind=kind, **PARAMS[kind])
    one.add(xb)
    many = ShardedIndex(tmp_path / "many", 8, 64, kind=kind, **PARAMS[kind])
    many.add(xb[:100])
    first = sorted(p.name for p in (tmp_path / "many").iterdir())
    many.add(xb[100:101])
    many.add(xb[101:])
    files = sorted(p.name for p in (tmp_path / "many").iterdir())
    assert "shard-000000-64" + (".npy" if kind == "flat" else ".npz") in first and \
        first[0] == files[0]  # the full shard was left alone
    assert len(files) == 1 + 6 and not any(f.endswith(".tmp") for f in files)  # 5 + 1 partial
    assert [s["sha256"] for s in many._shards] == [s["sha256"] for s in one._shards]
    xq = xb[::7] + 0.01
    for a, b in zip(one.search(xq, 5), many.search(xq, 5)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", ["flat", "ivfpq", "hnsw"])
def test_reopened_store_gives_identical_results_and_can_grow(tmp_path, kind):
    xb = gaussian_mixture(300, 8, n_clusters=10, seed=1)
    store = ShardedIndex(tmp_path / "s", 8, 64, metric="cosine", kind=kind, **PARAMS[kind])
    store.add(xb[:250])
    again = load_index(tmp_path / "s")
    assert isinstance(again, ShardedIndex) and repr(again) == repr(store)
    assert (again.d, again.metric, again.shard_kind, again.index_params) == \
        (8, "cosine", kind, PARAMS[kind])
    for a, b in zip(store.search(xb[:20], 12), again.search(xb[:20], 12)):
        assert np.array_equal(a, b)
    again.add(xb[250:])  # one writer at a time: `store` is now stale
    whole = ShardedIndex(tmp_path / "w", 8, 64, metric="cosine", kind=kind, **PARAMS[kind])
    whole.add(xb)
    grown = load_index(tmp_path / "s")
    assert grown.ntotal == 300
    for a, b in zip(whole.search(xb[:20], 12), grown.search(xb[:20], 12)):
        assert np.array_equal(a, b)


def _recall(I, I_true):
    return np.mean([len(np.intersect1d(a, b)) / I_true.shape[1] for a, b in zip(I, I_true)])


@pytest.fixture(scope="module")
def clustered():
    x = gaussian_mixture(2300, 32, n_clusters=100, spread=0.7, seed=3)
    flat = FlatIndex(32)
    flat.add(x[:2200])
    return x[:2200], x[2200:], flat.search(x[2200:], 10)[1]


def test_ivfpq_shards_reach_recall_floor_and_knobs_pass_through(tmp_path, clustered):
    xb, xq, I_true = clustered
    store = ShardedIndex(tmp_path / "s", 32, 500, kind="ivfpq", nlist=16, m=16, nbits=6,
                         store_vectors=True)
    store.add(xb)  # 4 shards, each with its own quantizers, and 200 raw rows
    assert [s["stored"] for s in store._shards] == ["index"] * 4 + ["vectors"]
    recalls = []
    for nprobe in (1, 4, 16):
        store.nprobe = nprobe
        recalls.append(_recall(store.search(xq, 10)[1], I_true))
    assert recalls[0] < recalls[1] < recalls[2] and recalls[1] >= 0.8
    store.refine_k = 40  # exact re-ranking of each shard's best 40
    assert _recall(store.search(xq, 10)[1], I_true) >= 0.99


def test_hnsw_shards_reach_recall_floor(tmp_path, clustered):
    xb, xq, I_true = clustered
    store = ShardedIndex(tmp_path / "s", 32, 500, kind="hnsw", M=8, ef_construction=40)
    store.add(xb)
    store.ef_search = 64
    assert _recall(store.search(xq, 10)[1], I_true) >= 0.95


@pytest.mark.parametrize("kind", ["ivfpq", "hnsw"])
def test_one_full_shard_is_the_shard_index_with_the_same_knobs(tmp_path, kind, clustered):
    xb, xq, _ = clustered
    xb = xb[:300]
    store = ShardedIndex(tmp_path / "s", 32, 300, kind=kind, **PARAMS[kind])
    store.add(xb)
    single = (IVFPQIndex if kind == "ivfpq" else HNSWIndex)(32, **PARAMS[kind])
    if kind == "ivfpq":
        single.train(xb)
    single.add(xb)
    knob, value = ("nprobe", 3) if kind == "ivfpq" else ("ef_search", 5)
    setattr(store, knob, value)
    setattr(single, knob, value)
    assert getattr(store, knob) == value
    for a, b in zip(store.search(xq, 10), single.search(xq, 10)):
        assert np.array_equal(a, b)


def test_knobs_are_validated_and_belong_to_their_kind(tmp_path):
    ivf = ShardedIndex(tmp_path / "a", 8, 64, kind="ivfpq", **PARAMS["ivfpq"])
    with pytest.raises(ValueError, match="nprobe must be <= 8"):
        ivf.nprobe = 9
    with pytest.raises(ValueError, match="store_vectors=True"):
        ivf.refine_k = 20
    with pytest.raises(AttributeError, match="ef_search is not a knob of ivfpq"):
        ivf.ef_search = 10
    flat = ShardedIndex(tmp_path / "b", 8, 64)
    assert not hasattr(flat, "nprobe")
    with pytest.raises(AttributeError, match="flat shards have: none"):
        flat.nprobe = 2


def _store(tmp_path, kind="flat"):
    store = ShardedIndex(tmp_path / "s", 8, 64, kind=kind, **PARAMS[kind])
    store.add(gaussian_mixture(150, 8, n_clusters=10, seed=2))
    return store


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_flipped_byte_in_a_shard_is_refused_naming_the_shard(tmp_path, kind):
    store = _store(tmp_path, kind)
    name = store._shards[1]["file"]
    _flip_byte(tmp_path / "s" / name)
    reopened = load_index(tmp_path / "s")  # opening checks sizes only (lazy checksums)
    with pytest.raises(ValueError, match=f"shard 1 \\({name}\\).*damaged"):
        reopened.search(np.zeros((1, 8)), 3)
    with pytest.raises(ValueError, match=f"shard 1 \\({name}\\).*damaged"):
        store.verify()  # the object that wrote the shard re-hashes everything on request
    last = tmp_path / "s" / store._shards[-1]["file"]
    _flip_byte(last)
    with pytest.raises(ValueError, match=f"shard 2 \\({last.name}\\).*damaged"):
        load_index(tmp_path / "s").add(np.zeros((1, 8)))  # add reads the partial last shard
    assert load_index(tmp_path / "s").ntotal == 150 and last.exists()  # and changed nothing


def test_missing_truncated_or_damaged_files_are_refused_on_open(tmp_path):
    store = _store(tmp_path)
    shard = tmp_path / "s" / store._shards[0]["file"]
    data = shard.read_bytes()
    shard.write_bytes(data[:-4])
    with pytest.raises(ValueError, match=f"shard 0 \\({shard.name}\\).*has {len(data) - 4} bytes"):
        load_index(tmp_path / "s")
    shard.unlink()
    with pytest.raises(ValueError, match=f"shard 0 \\({shard.name}\\).*is missing"):
        load_index(tmp_path / "s")
    manifest = tmp_path / "s" / MANIFEST
    text = manifest.read_text()
    manifest.write_text(text.replace('"rows": 64', '"rows": 65', 1))
    with pytest.raises(ValueError, match="damaged: its checksum"):
        load_index(tmp_path / "s")
    manifest.write_text(text.replace('"version": 2', '"version": 99'))
    with pytest.raises(ValueError, match="format version 99.*Rebuild"):
        load_index(tmp_path / "s")
    manifest.write_text("{not json")
    with pytest.raises(ValueError, match="damaged"):
        load_index(tmp_path / "s")


def test_directories_that_are_not_stores_are_refused_and_never_clobbered(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without a ShardedIndex manifest"):
        load_index(tmp_path / "empty")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and holds no ShardedIndex"):
        ShardedIndex(other, 8, 64)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        ShardedIndex(tmp_path / "file", 8, 64)
    _store(tmp_path)
    with pytest.raises(ValueError, match="already holds a ShardedIndex.*load_index"):
        ShardedIndex(tmp_path / "s", 8, 64)
    assert load_index(tmp_path / "s").ntotal == 150
    ShardedIndex(tmp_path / "empty", 8, 64)  # an empty directory is fine


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown kind 'ivf'"):
        ShardedIndex(tmp_path / "a", 8, 64, kind="ivf")
    with pytest.raises(ValueError, match="unknown metric"):
        ShardedIndex(tmp_path / "a", 8, 64, metric="L2")
    with pytest.raises(ValueError, match="shard_size must be >= 1"):
        ShardedIndex(tmp_path / "a", 8, 0)
    with pytest.raises(ValueError, match="ivfpq shards need nlist, m"):
        ShardedIndex(tmp_path / "a", 8, 64, kind="ivfpq")
    with pytest.raises(ValueError, match="take no parameter.*efSearch.*M, ef_construction"):
        ShardedIndex(tmp_path / "a", 8, 64, kind="hnsw", efSearch=5)
    with pytest.raises(ValueError, match="FlatIndex shards take no parameter.*none"):
        ShardedIndex(tmp_path / "a", 8, 64, nlist=4)
    with pytest.raises(ValueError, match="too small to train.*at least .* = 256"):
        ShardedIndex(tmp_path / "a", 8, 100, kind="ivfpq", nlist=4, m=2)
    with pytest.raises(TypeError, match="path must be"):
        ShardedIndex(None, 8, 64)
    assert not (tmp_path / "a").exists()  # nothing was created by a refused constructor
    store = ShardedIndex(tmp_path / "b", 8, 64)
    with pytest.raises(ValueError, match="empty; add vectors"):
        store.search(np.zeros((1, 8)), 1)
    store.add(np.ones((3, 8)))
    with pytest.raises(ValueError, match="xq has 7 columns; expected d"):
        store.search(np.zeros((1, 7)), 1)
    with pytest.raises(ValueError, match="NaN"):
        store.add(np.full((1, 8), np.nan))
    with pytest.raises(ValueError, match="k must be >= 1"):
        store.search(np.zeros((1, 8)), 0)
    assert store.ntotal == 3


def test_reset_nbytes_and_save(tmp_path):
    store = _store(tmp_path)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "s").iterdir())
    assert store.nbytes == on_disk and store.nbytes > 150 * 8 * 4
    store.save(tmp_path / "copy")
    store.save(tmp_path / "s")  # its own directory: nothing to do
    copy = load_index(tmp_path / "copy")
    for a, b in zip(copy.search(np.ones((2, 8)), 4), store.search(np.ones((2, 8)), 4)):
        assert np.array_equal(a, b)
    store.reset()
    assert store.ntotal == 0 and [p.name for p in (tmp_path / "s").iterdir()] == [MANIFEST]
    assert load_index(tmp_path / "s").ntotal == 0 and copy.ntotal == 150
    store.add(np.ones((70, 8)))
    assert load_index(tmp_path / "s").nshards == 2


def test_leftovers_of_killed_writes_are_ignored_then_removed(tmp_path):
    store = _store(tmp_path)
    folder = tmp_path / "s"
    leftovers = ["shard-000002-40.npy", "shard-000003-64.npz",
                 "shard-000002-22.npy.0123456789abcdef.tmp", f"{MANIFEST}.fedcba9876543210.tmp"]
    for name in leftovers:
        (folder / name).write_bytes(b"what a SIGKILL left")
    (folder / "notes.txt").write_text("not the store's")
    reopened = load_index(folder)
    assert reopened.ntotal == 150 and reopened.nshards == 3
    reopened.add(np.ones((1, 8)))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [MANIFEST, "notes.txt", *(s["file"] for s in reopened._shards)])
    store = load_index(folder)
    store.reset()
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, "notes.txt"])


def test_an_add_that_fails_midway_changes_nothing(tmp_path, monkeypatch):
    store = _store(tmp_path)  # 2 full shards and one of 22 rows
    before = (tmp_path / "s" / MANIFEST).read_text()
    write = ShardedIndex._write_shard
    calls = []

    def fail_on_second(self, i, *args):
        calls.append(i)
        if len(calls) == 2:
            raise OSError("disk full")
        return write(self, i, *args)

    monkeypatch.setattr(ShardedIndex, "_write_shard", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        store.add(np.ones((100, 8)))  # the last shard rewritten, then a new one
    monkeypatch.undo()
    assert calls == [2, 3] and store.ntotal == 150
    assert (tmp_path / "s" / MANIFEST).read_text() == before
    assert load_index(tmp_path / "s").ntotal == 150
    store.add(np.ones((100, 8)))
    assert load_index(tmp_path / "s").ntotal == 250
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(
        [MANIFEST, *(s["file"] for s in store._shards)])


def test_a_killed_save_leaves_no_store_and_the_next_save_takes_the_folder(tmp_path):
    store = _store(tmp_path)
    target = tmp_path / "copy"
    target.mkdir()
    first = store._shards[0]["file"]  # what a save killed before its manifest leaves
    (target / first).write_bytes((tmp_path / "s" / first).read_bytes())
    (target / (store._shards[1]["file"] + ".0123456789abcdef.tmp")).write_bytes(b"half")
    with pytest.raises(ValueError, match="without a ShardedIndex manifest"):
        load_index(target)
    store.save(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [MANIFEST, *(s["file"] for s in store._shards)])
    xq = np.ones((2, 8))
    for a, b in zip(load_index(target).search(xq, 4), store.search(xq, 4)):
        assert np.array_equal(a, b)
