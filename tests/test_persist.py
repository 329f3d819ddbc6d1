"""Saved indexes round-trip exactly; damaged, foreign and future files are refused clearly."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

from retgen_ref import FlatIndex, load_index
from retgen_ref import persist


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
