"""Crash safety (issue 15, point 4): a process SIGKILLed at any moment of ``Index.save``,
of a model's ``add_documents`` + ``save``, of ``ShardedIndex.add``, or of its
``add_with_ids``, ``remove_ids`` and ``compact`` (issue 17) leaves on disk
exactly the state before or exactly the state after, and that state loads. A model folder
loads the files its manifest names, whatever else a killed save left there.

Each kill scenario starts a writer process that loops over one update and reports, on
stdout, the state it is about to write (``saving``) and the state it has written
(``saved``). The first ``saved`` line comes after one warm-up iteration (kernels loaded
from the disk cache); the test measures how long an iteration lasts, then kills a fresh
writer at ``KILLS`` random moments spread over one iteration and after each kill reloads
the files and checks their state against the last two reported. A final uninterrupted
update must leave no files behind but the ones the state refers to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from retgen_ref import IVFFlatIndex, ShardedIndex, load_index
from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.index.store import _records
from retgen_ref.persist import write_manifest

KILLS = 12
D, POOL = 8, 20_000
STORE = {"shard_size": 50, "kind": "hnsw", "M": 6, "ef_construction": 24}

WRITER = r"""
import sys, time
import numpy as np
from retgen_ref import load_index
from retgen_ref.lm import RetgenLM

scenario, path, d, pool = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = np.random.default_rng(0).standard_normal((pool, d)).astype(np.float32)

def say(word, state):
    print(word, state, time.perf_counter(), flush=True)

if scenario == "model":
    model = RetgenLM.load(path)
    words = [w for w in model.vocab.tokens if w.isalpha()]
    state = lambda: f"{model.n_patterns},{int(model.unigram.counts_.sum())}"
    rng = np.random.default_rng(int(model.unigram.counts_.sum()))
    while True:
        model.add_documents([" ".join(rng.choice(words, 12)) + "."])
        say("saving", state())
        model.save(path)
        say("saved", state())
elif scenario == "store-ids":  # the ids of row r of `data` is 1000 + r
    import os
    index = load_index(path)
    state = lambda: f"{index.ntotal}/{index.n_deleted}"
    rng = np.random.default_rng(index.ntotal)

    def add():
        r = max(index._next_id - 1000, 0)
        say("saving", f"{index.ntotal + 60}/{index.n_deleted}")
        index.add_with_ids(data[r:r + 60], 1000 + np.arange(r, r + 60))

    def remove():
        say("saving", f"{index.ntotal - 10}/{index.n_deleted + 10}")
        index.remove_ids(rng.choice(index.ids, 10, replace=False))

    def compact():
        say("saving", f"{index.ntotal}/0")
        index.compact()

    ops = [add, remove, compact]
    # Which write the kill meets varies; a store grown small (each writer's warm-up may
    # be a removal) starts with an add.
    for step in range(os.getpid() % 3 if index.ntotal >= 100 else 0, 10**9):
        ops[step % 3]()
        say("saved", state())
else:
    index = load_index(path)
    while True:
        n = index.ntotal
        if scenario == "index":
            index.add(data[n:n + 40])
            say("saving", index.ntotal)
            index.save(path)
        else:  # "store": an add writes itself; 70 rows span two or three shards
            say("saving", n + 70)
            index.add(data[n:n + 70])
        say("saved", index.ntotal)
"""


def _data():
    return np.random.default_rng(0).standard_normal((POOL, D)).astype(np.float32)


def _model_state(model) -> str:
    """What the writer prints: the number of patterns, then of tokens counted."""
    return f"{model.n_patterns},{int(model.unigram.counts_.sum())}"


class Writer:
    """A writer process of one scenario, read line by line."""

    def __init__(self, scenario, path, stderr):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, scenario, str(path), str(D), str(POOL)],
            stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.stderr, self.lines = stderr, []

    def read(self):
        """The next ``(word, state, time)`` line; fails if the writer died."""
        line = self.proc.stdout.readline()
        assert line, (f"the writer died (exit code {self.proc.wait()}):\n"
                      f"{open(self.stderr.name).read()[-3000:]}")
        word, state, stamp = line.split()
        self.lines.append((word, state))
        return word, state, float(stamp)

    def kill(self) -> set[str]:
        """SIGKILL the writer; return the states the files may be in: the last one written
        (``saved``) and the one being written after it (``saving``), if any."""
        os.kill(self.proc.pid, signal.SIGKILL)
        rest = self.proc.stdout.read()
        assert self.proc.wait() == -signal.SIGKILL, "the writer ended before the kill"
        self.proc.stdout.close()
        self.lines += [tuple(line.split()[:2]) for line in rest.splitlines(keepends=True)
                       if line.endswith("\n")]  # not a line cut short by the kill
        last = max(i for i, (word, _) in enumerate(self.lines) if word == "saved")
        return {state for _, state in self.lines[last:]}


def _kill_at_random_moments(scenario, path, tmp_path, check):
    """Measure one iteration, then kill a writer ``KILLS`` times within its iteration."""
    with open(tmp_path / f"{scenario}.stderr", "w") as stderr:
        writer = Writer(scenario, path, stderr)
        stamps = [writer.read()[2] for _ in range(12)][1::2]  # the times of 6 ``saved``
        iteration = float(np.median(np.diff(stamps)))
        check(writer.kill())
        rng = np.random.default_rng(15)
        delays = (np.arange(KILLS) + rng.uniform(size=KILLS)) / KILLS * iteration
        for delay in rng.permutation(delays):
            writer = Writer(scenario, path, stderr)
            writer.read(), writer.read()  # the warm-up iteration
            time.sleep(delay)
            check(writer.kill())


def _listing(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.slow
def test_killed_index_save_leaves_the_old_or_the_new_file(tmp_path):
    data, path = _data(), tmp_path / "data" / "ivf.npz"
    path.parent.mkdir()  # saving creates no folder
    index = IVFFlatIndex(D, nlist=8)
    index.train(data[:1000])
    index.add(data[:1000])
    index.save(path)
    seen = []

    def check(allowed):
        loaded = load_index(path)
        assert str(loaded.ntotal) in allowed
        loaded.nprobe = loaded.nlist  # exhaustive: exact, so every row finds itself
        ids = np.r_[0, loaded.ntotal - 1, np.random.default_rng(len(seen)).integers(
            loaded.ntotal, size=8)]
        D_, I = loaded.search(data[ids], 1)
        assert np.array_equal(I[:, 0], ids) and np.all(D_[:, 0] == 0)
        seen.append(loaded.ntotal)

    _kill_at_random_moments("index", path, tmp_path, check)
    loaded = load_index(path)
    loaded.add(data[loaded.ntotal:loaded.ntotal + 1])
    loaded.save(path)
    assert _listing(path.parent) == {"ivf.npz"}  # the killed saves' temp files are gone
    assert len(set(seen)) > 1  # the writers did write


@pytest.fixture(scope="module")
def small_model(corpus_dir):
    return RetgenLM(index="flat", resolutions=(1, 2), word_dim=16).fit(load_corpus(corpus_dir))


@pytest.mark.slow
def test_killed_model_update_leaves_the_old_or_the_new_folder(small_model, tmp_path):
    path = tmp_path / "model"
    small_model.save(path)
    states = [_model_state(small_model)]

    def check(allowed):
        states.append(_model_state(RetgenLM.load(path)))  # loads, whole
        assert states[-1] in allowed

    _kill_at_random_moments("model", path, tmp_path, check)
    model = RetgenLM.load(path)
    model.add_documents(["she walked home with the letter."])
    model.save(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert _listing(path) == {"manifest.json", manifest["model"], *manifest["indexes"].values()}
    assert _model_state(RetgenLM.load(path)) == _model_state(model)
    assert len(set(states)) > 1


@pytest.mark.slow
def test_killed_sharded_add_leaves_the_old_or_the_new_store(tmp_path):
    data, path = _data(), tmp_path / "store"
    ShardedIndex(path, D, **STORE).add(data[:80])  # builds a shard: kernels compiled here
    seen = []

    def check(allowed):
        loaded = load_index(path)
        assert str(loaded.ntotal) in allowed
        loaded.verify()
        if loaded.ntotal not in seen:  # the same store as one add of the same rows
            whole = ShardedIndex(tmp_path / f"whole-{len(seen)}", D, **STORE)
            whole.add(data[:loaded.ntotal])
            xq = data[:loaded.ntotal:7] + 0.01
            for a, b in zip(loaded.search(xq, 5), whole.search(xq, 5)):
                assert np.array_equal(a, b)
        seen.append(loaded.ntotal)

    _kill_at_random_moments("store", path, tmp_path, check)
    store = load_index(path)
    store.add(data[store.ntotal:store.ntotal + 1])
    assert _listing(path) == {"sharded_index.json", *(s["file"] for s in store._shards)}
    assert len(set(seen)) > 1


@pytest.mark.slow
def test_killed_sharded_add_with_ids_remove_or_compact_leaves_the_old_or_the_new_store(
        tmp_path):
    data, path = _data(), tmp_path / "store"
    ShardedIndex(path, D, **STORE).add_with_ids(data[:80], 1000 + np.arange(80))
    seen = []

    def check(allowed):
        loaded = load_index(path)
        assert f"{loaded.ntotal}/{loaded.n_deleted}" in allowed
        loaded.verify()
        ids = loaded.ids
        assert len(np.unique(ids)) == len(ids) == loaded.ntotal
        # every id still holds its own row of `data`, and a search finds only live ids
        assert np.array_equal(loaded.reconstruct_batch(ids), data[ids - 1000])
        I = loaded.search(data[ids[::9] - 1000], 5)[1]
        assert np.isin(I, ids).all() and np.array_equal(I[:, 0], ids[::9])
        seen.append((loaded.ntotal, loaded.n_deleted))

    _kill_at_random_moments("store-ids", path, tmp_path, check)
    store = load_index(path)
    store.remove_ids(store.ids[:3])
    store.compact()
    assert _listing(path) == {"sharded_index.json",
                              *(r["file"] for s in store._shards for r in _records(s))}
    assert len(set(seen)) > 1


def test_a_model_folder_loads_only_the_files_its_manifest_names(small_model, tmp_path):
    path = tmp_path / "model"
    small_model.save(path)
    for name in ("model-000009.npz", "index_r2-000009.npz", "manifest.json.0123456789abcdef.tmp",
                 "index_r1-000001.npz.fedcba9876543210.tmp"):
        (path / name).write_bytes(b"what a SIGKILL left")
    (path / "notes.txt").write_text("not the model's")
    assert _model_state(RetgenLM.load(path)) == _model_state(small_model)
    small_model.save(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["generation"] == 10  # past every name in use
    assert _listing(path) == {"manifest.json", "notes.txt", manifest["model"],
                              *manifest["indexes"].values()}
    assert _model_state(RetgenLM.load(path)) == _model_state(small_model)


def test_a_folder_saved_before_manifests_loads_and_the_next_save_converts_it(small_model,
                                                                             tmp_path):
    path = tmp_path / "model"
    small_model.save(path)
    manifest = json.loads((path / "manifest.json").read_text())
    (path / manifest["model"]).rename(path / "model.npz")
    for r, name in manifest["indexes"].items():
        (path / name).rename(path / f"index_r{r}.npz")
    (path / "manifest.json").unlink()
    loaded = RetgenLM.load(path)
    np.testing.assert_array_equal(loaded.log_prob("test"), small_model.log_prob("test"))
    loaded.save(path)
    manifest = json.loads((path / "manifest.json").read_text())
    assert _listing(path) == {"manifest.json", manifest["model"], *manifest["indexes"].values()}
    assert _model_state(RetgenLM.load(path)) == _model_state(small_model)


def test_a_damaged_or_inconsistent_manifest_is_refused(small_model, tmp_path):
    path = tmp_path / "model"
    small_model.save(path)
    file = path / "manifest.json"
    good = json.loads(file.read_text())
    del good["checksum"]
    file.write_text(file.read_text().replace('"generation": 1', '"generation": 2'))
    with pytest.raises(ValueError, match="manifest.json is damaged: its checksum"):
        RetgenLM.load(path)
    write_manifest(file, {**good, "indexes": {"1": good["indexes"]["1"]}})
    with pytest.raises(ValueError, match=r"resolutions \[1\]; the model has \[1, 2\].*backup"):
        RetgenLM.load(path)
    write_manifest(file, {**good, "model": "../model-000001.npz"})
    with pytest.raises(ValueError, match="names files outside"):
        RetgenLM.load(path)
    write_manifest(file, {**good, "version": 99})
    with pytest.raises(ValueError, match="RETGEN model format version 99.*Train the model again"):
        RetgenLM.load(path)
    file.unlink()
    with pytest.raises(FileNotFoundError, match="holds no RETGEN model.*retgen-ref train"):
        RetgenLM.load(path)
