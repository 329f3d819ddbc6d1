"""Saved indexes round-trip exactly; damaged, foreign and future files are refused clearly;
a failed save names the user's path, a missing folder is an error, files get the umask's mode,
and every class that saves has a ``load`` that refuses other kinds."""

from __future__ import annotations

import errno
import os
import stat
import traceback

import numpy as np
import pytest

from index_kinds import KINDS, build, data
from retgen_ref import (OPQ, FlatIndex, HNSWIndex, Index, ProductQuantizer, ScalarQuantizer,
                        load_index, persist)
from retgen_ref.lm import RetgenLM, load_corpus


@pytest.fixture(params=["l2", "ip", "cosine"])
def saved(request, tmp_path):
    rng = np.random.default_rng(0)
    index = FlatIndex(8, request.param)
    index.add(rng.standard_normal((300, 8)))
    path = tmp_path / "flat.idx"
    index.save(path)
    return index, path


def test_round_trip_is_exact(saved):
    index, path = saved
    loaded = load_index(path)
    assert type(loaded) is FlatIndex and loaded.metric == index.metric and loaded.ntotal == 300
    assert np.array_equal(loaded.vectors, index.vectors)
    xq = np.random.default_rng(1).standard_normal((30, 8))
    for a, b in zip(loaded.search(xq, 7), index.search(xq, 7)):
        assert np.array_equal(a, b)


def test_saved_path_is_used_verbatim_and_loaded_index_can_grow(saved):
    index, path = saved
    assert path.exists() and not path.with_suffix(".idx.npz").exists()
    loaded = load_index(path)
    loaded.add(np.zeros((1, 8)))
    assert loaded.ntotal == 301


def test_empty_index_round_trips(tmp_path):
    FlatIndex(5, "ip").save(tmp_path / "e")
    loaded = load_index(tmp_path / "e")
    assert loaded.ntotal == 0 and loaded.d == 5 and loaded.metric == "ip"


def test_flipped_byte_is_detected(saved):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the stored vectors
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        load_index(path)


@pytest.mark.parametrize("keep", [0.5, 0.95, 0.0])
def test_truncated_file_is_detected(saved, keep):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="damaged|not a retgen_ref file"):
        load_index(path)


def test_foreign_files_are_refused(tmp_path):
    np.savez(tmp_path / "foreign.npz", x=np.ones(3))
    with pytest.raises(ValueError, match="not a retgen_ref file"):
        load_index(tmp_path / "foreign.npz")
    (tmp_path / "text.idx").write_text("hello")
    with pytest.raises(ValueError, match="damaged or not a retgen_ref file"):
        load_index(tmp_path / "text.idx")
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "missing.idx")


def test_other_format_version_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(persist, "FORMAT_VERSION", 99)
    FlatIndex(2).save(tmp_path / "future")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="format version 99; this retgen_ref reads version 1"):
        load_index(tmp_path / "future")


def test_non_index_kind_is_refused(tmp_path):
    persist.save_state(tmp_path / "model", "RetgenModel", {}, {"a": np.ones(2)})
    with pytest.raises(ValueError, match="holds a 'RetgenModel', not an index"):
        load_index(tmp_path / "model")


def test_inconsistent_arrays_are_refused(tmp_path):
    persist.save_state(tmp_path / "bad", "FlatIndex", {"d": 4, "metric": "l2"},
                       {"vectors": np.ones((3, 5), np.float32)})
    with pytest.raises(ValueError, match="inconsistent FlatIndex"):
        load_index(tmp_path / "bad")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "idx"
    FlatIndex(2).save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    index = FlatIndex(2)
    index.add(np.ones((4, 2)))
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]


def test_save_fsyncs_the_file_then_renames_then_fsyncs_the_directory(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(
        "fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file"), fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), replace(a, b)))
    FlatIndex(2).save(tmp_path / "idx")
    assert events == ["fsync file", "replace", "fsync dir"]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_get_the_mode_of_any_new_file(tmp_path, umask, mode):
    """0o666 less the umask, as open() and FAISS give, not mkstemp's 0o600."""
    previous = os.umask(umask)
    try:
        FlatIndex(2).save(tmp_path / "idx")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "idx").stat().st_mode) == mode


def test_a_failed_rename_names_the_final_path_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "idx"

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", src)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError, match=f"cannot write {path}: Permission denied$"):
        FlatIndex(2).save(path)
    assert list(tmp_path.iterdir()) == []


def test_temp_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    for name in ("idx.0123456789abcdef.tmp", "idx.fedcba9876543210.tmp"):
        (tmp_path / name).write_bytes(b"half a file")  # what a SIGKILL mid-save leaves
    for name in ("idx.notes", "other.0123456789abcdef.tmp"):
        (tmp_path / name).write_text("not ours to delete")
    FlatIndex(2).save(tmp_path / "idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == \
        ["idx", "idx.notes", "other.0123456789abcdef.tmp"]


# -- saving from Python: the user's path in errors, no silent folders, the umask's mode,
# -- and a load classmethod on every class that saves --------------------------------------



def _fitted(name: str):
    """A small fitted object of each class with ``save`` other than the indexes."""
    x = data(300)
    return {"pq": lambda: ProductQuantizer(8, 2, nbits=4).fit(x),
            "sq": lambda: ScalarQuantizer(8).fit(x),
            "opq": lambda: OPQ(8, 2, nbits=4, n_iter=2).fit(x),
            "flat": lambda: FlatIndex(8),
            "hnsw": lambda: HNSWIndex(8, M=4)}[name]()


SAVERS = ["flat", "hnsw", "pq", "sq", "opq"]


def _failing(what: str, monkeypatch):
    """Make one step of a save fail the way a full disk or a permission problem does."""
    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))

    target = {"write": (np, "savez"), "fsync": (os, "fsync"), "rename": (os, "replace")}[what]
    monkeypatch.setattr(*target, fail)


@pytest.mark.parametrize("saver", SAVERS)
@pytest.mark.parametrize("what", ["write", "fsync", "rename"])
def test_a_failed_save_names_the_users_path_and_no_temporary_file(saver, what, tmp_path,
                                                                  monkeypatch):
    """The message, and the whole traceback a user would see, name ``x.idx``; none of it
    mentions the ``.tmp`` file the save wrote to (no chained exception carries it)."""
    obj = _fitted(saver)
    path = tmp_path / "x.idx"
    _failing(what, monkeypatch)
    with pytest.raises(OSError) as caught:
        obj.save(path)
    shown = "".join(traceback.format_exception(caught.value))
    assert f"cannot write {path}: No space left on device" in str(caught.value)
    assert ".tmp" not in shown and "tempfile" not in shown
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("saver", SAVERS)
def test_a_missing_folder_is_an_error_and_nothing_is_created(saver, tmp_path):
    path = tmp_path / "no" / "such" / "x.idx"
    with pytest.raises(FileNotFoundError,
                       match=f"cannot save to {path}: folder {path.parent} does not exist; "
                             "create it first"):
        _fitted(saver).save(path)
    assert list(tmp_path.iterdir()) == []


def test_make_parents_creates_the_missing_folders(tmp_path):
    path = tmp_path / "a" / "b" / "x.idx"
    persist.save_state(path, "FlatIndex", {"d": 2, "metric": "l2"},
                       {"vectors": np.ones((1, 2), np.float32)}, make_parents=True)
    assert load_index(path).ntotal == 1


@pytest.mark.parametrize("layout,error,message", [
    ("folder", IsADirectoryError, "it is a folder; give a file name"),
    ("under a file", NotADirectoryError, "is a file, not a folder"),
    ("two under a file", NotADirectoryError, "is a file, not a folder"),
])
def test_a_path_that_cannot_be_a_file_is_refused_before_writing(layout, error, message,
                                                                tmp_path):
    (tmp_path / "f").write_text("mine")
    (tmp_path / "d").mkdir()
    path = {"folder": tmp_path / "d", "under a file": tmp_path / "f" / "x.idx",
            "two under a file": tmp_path / "f" / "g" / "x.idx"}[layout]
    with pytest.raises(error, match=message) as caught:
        FlatIndex(2).save(path)
    assert str(path) in str(caught.value)
    assert (tmp_path / "f").read_text() == "mine" and list((tmp_path / "d").iterdir()) == []


@pytest.mark.parametrize("saver", SAVERS)
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_saver_gives_the_umasks_mode(saver, umask, mode, tmp_path):
    obj = _fitted(saver)
    previous = os.umask(umask)
    try:
        obj.save(tmp_path / "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == mode


def test_saving_over_a_file_keeps_its_permissions(tmp_path):
    """As rewriting the file in place would (FAISS's write_index): a user's chmod stays."""
    path = tmp_path / "idx"
    FlatIndex(2).save(path)
    os.chmod(path, 0o640)
    FlatIndex(2).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("kind", KINDS)
def test_every_index_class_loads_its_own_kind(kind, tmp_path):
    x = data(200)
    index = build(kind, tmp_path)
    index.add(x)
    path = index.path if kind == "sharded" else tmp_path / "x.idx"
    index.save(path)
    cls = type(index)
    for loader in (cls.load, Index.load, load_index):
        loaded = loader(path)
        assert type(loaded) is cls and loaded.ntotal == 200
        for a, b in zip(loaded.search(x[:5], 3), index.search(x[:5], 3)):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_a_class_refuses_a_file_of_another_kind_naming_both(kind, tmp_path):
    index = build(kind, tmp_path)
    path = index.path if kind == "sharded" else tmp_path / "x.idx"
    index.save(path)
    other = HNSWIndex if kind == "flat" else FlatIndex
    found = type(index).__name__
    with pytest.raises(ValueError, match=f"holds a {found}, not a {other.__name__}; open it "
                                         f"with {found}.load"):
        other.load(path)


def test_quantizers_load_and_refuse_each_others_files(tmp_path):
    x = data(300)
    for name, cls in [("pq", ProductQuantizer), ("sq", ScalarQuantizer), ("opq", OPQ)]:
        obj = _fitted(name)
        obj.save(tmp_path / name)
        back = cls.load(tmp_path / name)
        if name == "opq":
            assert np.array_equal(back.transform(x), obj.transform(x))
            assert back.reconstruction_error(x) == obj.reconstruction_error(x)
        else:
            assert np.array_equal(back.decode(back.encode(x)), obj.decode(obj.encode(x)))
    FlatIndex(8).save(tmp_path / "flat")
    for cls in (ProductQuantizer, ScalarQuantizer, OPQ):
        with pytest.raises(ValueError, match=f"holds a 'FlatIndex', not an? '{cls.kind}'"):
            cls.load(tmp_path / "flat")
    with pytest.raises(ValueError, match="holds a 'ProductQuantizer', not an index"):
        FlatIndex.load(tmp_path / "pq")


@pytest.fixture(scope="module")
def tiny_model(corpus_dir):
    return RetgenLM(index="flat", resolutions=(1,)).fit(load_corpus(corpus_dir))


def test_a_model_folder_needs_its_parent_unless_asked(tiny_model, tmp_path):
    target = tmp_path / "runs" / "model"
    with pytest.raises(FileNotFoundError, match=f"folder {target.parent} does not exist"):
        tiny_model.save(target)
    assert list(tmp_path.iterdir()) == []
    tiny_model.save(target, make_parents=True)
    assert RetgenLM.load(target).n_patterns == tiny_model.n_patterns
    (tmp_path / "file").write_text("mine")
    with pytest.raises(NotADirectoryError, match="it is a file"):
        tiny_model.save(tmp_path / "file")
