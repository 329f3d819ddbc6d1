"""ShardedIndex: vectors in fixed-size shards on disk, searched one shard at a time.

``retgen_v2.md`` §8.2 lists a "MemoryOptimizedVectorDB: sharded storage with disk
offloading" among RETGEN's components. This is that store. The database ``X`` is cut, in
the order of ``add``, into shards ``X_1, X_2, …`` of ``shard_size`` rows (the last may be
partial), each a file under one directory. A search visits the shards in turn and keeps a
running top-k, which is exact because the top-k of a union is the top-k of the union of
the parts' top-k:

    TopK_k(X_1 ∪ … ∪ X_S)  =  TopK_k( TopK_k(X_1) ∪ … ∪ TopK_k(X_S) )

Only one shard is open at a time, so the resident memory of a search is about one shard
plus the queries and ``2 · nq · k`` results, whatever the size of ``X``, plus the ids and
deleted positions of the shards that store them, which are kept once read (8 bytes a row).

Directory layout (no pickle anywhere, DESIGN.md convention 7): ``sharded_index.json``, a
manifest with the format version, ``d``, ``metric``, the shard kind and its parameters,
and per shard its row count, file name, size and SHA-256, itself checksummed; plus one
file per shard. A shard of raw vectors is a float32 ``.npy`` file, memory-mapped when
searched; a built shard is an ``.npz`` written by :meth:`Index.save`. Beside a shard, only
when needed: its ids (``<shard>.ids.npy``, int64, when they are not its row numbers) and
its deletions (``<shard>.deleted-<count>.npy``, the sorted positions removed).

Crash safety: every file is written atomically and fsynced
(:func:`retgen_ref.persist.atomic_write`), and no file the manifest names is ever
overwritten: an ``add``, ``remove_ids`` or ``compact`` writes its new files, and the
partial last shard it extends, under new names (a name carries the shard's row count and
its number of deleted rows, which only grow, and the store's compaction count), then
switches the manifest to them in one atomic rename, and only then deletes the files the
manifest no longer names (replaced ones, and whatever a killed write left). A process
killed at any moment of ``add``, ``remove_ids``, ``compact`` or ``reset`` leaves the store
loading as it was before or as it is after; a killed ``save`` leaves the target without a
manifest, so holding no store, and a new ``save`` or ``ShardedIndex`` there takes it over.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .._validation import check_int, check_metric
from ..distances import squared_norms
from ..exact import exact_topk, exact_topk_rows, merge_results
from ..persist import (atomic_write, read_manifest, remove_unreferenced, write_manifest,
                       written_by)
from .base import IdFilter, Index, find_ids, load_index
from .flat import FlatIndex
from .hnsw import HNSWIndex
from .ivf import IVFPQIndex

MANIFEST = "sharded_index.json"
FORMAT_NAME = "retgen_ref.ShardedIndex"
#: Version 2 added ids and deletions; a version-1 store (every id its row number) loads.
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
#: The names of the files a store writes: its manifest, its shards and their ids and
#: deletions.
_OURS = re.compile(rf"{re.escape(MANIFEST)}|shard-\d{{6}}-\d+(-c\d+)?(\.ids|\.deleted-\d+)?"
                   rf"\.np[yz]")
#: Index class of each shard kind, and the runtime knobs it passes on to its shards.
SHARD_KINDS = {"flat": FlatIndex, "ivfpq": IVFPQIndex, "hnsw": HNSWIndex}
KNOBS = {"flat": (), "ivfpq": ("nprobe", "refine_k"), "hnsw": ("ef_search",)}


def _knob(name: str, doc: str) -> property:
    """A runtime knob kept on the store and applied to every shard when it is opened."""

    def fget(self):
        return getattr(self._knob_owner(name), name)

    def fset(self, value):
        setattr(self._knob_owner(name), name, value)

    return property(fget, fset, doc=doc)


class ShardedIndex(Index):
    """Sharded on-disk vector store (``retgen_v2.md`` §8.2, MemoryOptimizedVectorDB).

    Creates a new, empty store in the directory ``path`` (which must not exist or be
    empty); reopen an existing one with :func:`load_index(path) <load_index>`. Every
    ``add`` is written to disk at once, all or nothing: there is nothing else to save.

    Parameters
    ----------
    path : str or os.PathLike
        Directory of the store.
    d : int
        Dimension of the vectors.
    shard_size : int
        Rows per shard. A search holds about one shard in memory: ``shard_size · d · 4``
        bytes for flat shards.
    metric : {"l2", "ip", "cosine"}
        As for every index: squared L2 (ascending), inner product or cosine (descending).
    kind : {"flat", "ivfpq", "hnsw"}
        What a shard is. ``"flat"``: raw float32 vectors, memory-mapped and scanned
        exactly, so the store returns what one :class:`FlatIndex` over all vectors would.
        ``"ivfpq"`` / ``"hnsw"``: each full shard is its own :class:`IVFPQIndex` /
        :class:`HNSWIndex`, built once when the shard fills up.
    **index_params
        Parameters of the shard index (``nlist``, ``m``, ``nbits``, … for ivfpq; ``M``,
        ``ef_construction``, ``seed`` for hnsw; none for flat).

    Attributes
    ----------
    nprobe, refine_k : int
        ivfpq only: runtime knobs applied to each shard when it is opened.
    ef_search : int
        hnsw only: idem.

    Notes
    -----
    *Per-shard models.* An ivfpq shard trains its own coarse quantizer and product
    quantizer on its own ``shard_size`` rows (FAISS would train one model on a sample and
    share it). Only the distance estimates of different shards are merged, never their
    codes, so this is sound, but it costs one k-means training per shard, and
    ``shard_size`` must be at least ``max(nlist, 2**nbits)`` rows to train on.

    *The last, partial shard* of an ivfpq or hnsw store holds raw vectors, searched
    exactly, until it is full; then it is built into its index. So shards are always
    built from exactly ``shard_size`` rows, and adding in several batches gives the same
    store as adding in one.

    *Checksums are verified lazily.* Opening a store checks the manifest's checksum and
    each shard file's size (truncated or missing files are refused at once) at a cost of
    one ``stat`` per shard; each shard's SHA-256 is checked the first time this object
    reads the shard (search, or ``add`` rewriting the last shard), before any of its data
    is used. That costs one extra pass over each shard file, once per opened store
    (SHA-256 runs at roughly 1–2 GB/s), paid by the first search rather than by opening,
    which stays instant for a store of any size. :meth:`verify` checks every shard now.
    A shard file changed on disk after it was verified is not noticed.

    *Ids and deletion.* Ids are the row numbers (``0 … ntotal − 1`` in the order of
    ``add``) unless :meth:`add_with_ids` gives others; a shard stores its ids only when
    they differ from its row numbers. :meth:`remove_ids` marks rows deleted, per shard, in
    a small file beside the shard: they are never returned, and the shard files are left
    as they are (so a removal costs one pass over the ids, not a rewrite).
    :meth:`compact` rewrites the store without them, equal to a new store given the
    remaining vectors with their ids by ``add_with_ids``. A shard's ids and deletions are
    read once by this object and then kept in memory (8 bytes per stored id or removed
    row), so a search reads each of these files at most once, and later ones not at all.

    *One writer.* Other objects opened on the same directory are stale after an ``add``
    or ``reset``; reopen them. Knob values are not stored: a reopened store starts from
    the shard index's defaults.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from retgen_ref import ShardedIndex, load_index
    >>> folder = tempfile.TemporaryDirectory()
    >>> store = ShardedIndex(folder.name + "/store", d=2, shard_size=2)
    >>> store.add(np.array([[0, 0], [1, 0], [0, 2]], dtype=np.float32))
    >>> store.nshards, store.ntotal
    (2, 3)
    >>> D, I = load_index(folder.name + "/store").search(np.array([[0.9, 0.1]]), k=2)
    >>> I.tolist()
    [[1, 0]]
    >>> folder.cleanup()
    """

    kind = "ShardedIndex"

    def __init__(self, path, d: int, shard_size: int, metric: str = "l2", kind: str = "flat",
                 **index_params):
        self._configure(path, d, shard_size, metric, kind, index_params)
        _claim_directory(self.path)
        self._commit(self.path)

    def _configure(self, path, d, shard_size, metric, kind, index_params) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a directory path (str or os.PathLike), got "
                            f"{type(path).__name__}")
        super().__init__(d, metric)
        self.path = Path(path)
        self.shard_size = check_int(shard_size, "shard_size")
        if kind not in SHARD_KINDS:
            raise ValueError(f"unknown kind {kind!r}; use one of "
                             f"{', '.join(repr(k) for k in SHARD_KINDS)}")
        self.shard_kind = kind
        self.index_params = _json_params(index_params)
        self._shard_template = self._new_shard_index()
        if kind == "ivfpq":
            need = max(self._shard_template.nlist, self._shard_template.pq.ksub)
            if self.shard_size < need:
                raise ValueError(f"shard_size={self.shard_size} is too small to train an "
                                 f"ivfpq shard: it needs at least max(nlist, 2**nbits) = "
                                 f"{need} rows; raise shard_size or lower nlist / nbits")
        self._shards: list[dict] = []
        self._verified: set[str] = set()
        # Sidecars (ids, deleted positions) once read: (file, sha256) -> read-only array.
        # The name carries the shard's row count and deletion count, the checksum its
        # content (a name can come back after reset), so an entry is never stale.
        self._sidecars: dict[tuple[str, str], np.ndarray] = {}
        self._next_id = 0  # one more than the largest id ever stored
        self._compactions = 0

    def _new_shard_index(self) -> Index:
        cls = SHARD_KINDS[self.shard_kind]
        params = {p: v for p, v in inspect.signature(cls).parameters.items()
                  if p not in ("d", "metric")}
        unknown = sorted(set(self.index_params) - set(params))
        if unknown:
            raise ValueError(f"{cls.__name__} shards take no parameter(s) "
                             f"{', '.join(unknown)}; they take: {', '.join(params) or 'none'}")
        missing = [p for p, v in params.items()
                   if v.default is inspect.Parameter.empty and p not in self.index_params]
        if missing:
            raise ValueError(f"{self.shard_kind} shards need {', '.join(missing)}; pass them "
                             f"as ShardedIndex(..., {', '.join(p + '=...' for p in missing)})")
        return cls(self.d, metric=self.metric, **self.index_params)

    # -- public API -----------------------------------------------------------------
    @classmethod
    def open(cls, path) -> "ShardedIndex":
        """Reopen the store in directory ``path`` (what :func:`load_index` does for a
        directory). Checks the manifest and the size of every shard file."""
        path = Path(path)
        return cls._from_state({**_read_manifest(path), "path": str(path)}, {})

    @property
    def ntotal(self) -> int:
        """Vectors stored and not removed."""
        return sum(s["rows"] - _n_deleted(s) for s in self._shards)

    @property
    def n_deleted(self) -> int:
        """Rows removed by :meth:`remove_ids` and still on disk until :meth:`compact`."""
        return sum(_n_deleted(s) for s in self._shards)

    @property
    def ids(self) -> np.ndarray:
        """The id of every stored vector, in storage order (reads every shard's ids)."""
        live = [self._shard_ids(i, offset)[self._live_rows(i)]
                for i, offset in enumerate(self._offsets())]
        return np.concatenate(live) if live else np.empty(0, np.int64)

    @property
    def nshards(self) -> int:
        return len(self._shards)

    @property
    def nbytes(self) -> int:
        """Bytes on disk: every shard file plus the manifest."""
        return (sum(r["bytes"] for s in self._shards for r in _records(s))
                + (self.path / MANIFEST).stat().st_size)

    nprobe = _knob("nprobe", "ivfpq shards: inverted lists scanned per query.")
    refine_k = _knob("refine_k", "ivfpq shards: exact re-ranking depth (store_vectors=True).")
    ef_search = _knob("ef_search", "hnsw shards: beam width of a search.")

    def _knob_owner(self, knob: str) -> Index:
        if knob not in KNOBS[self.shard_kind]:
            raise AttributeError(f"{knob} is not a knob of {self.shard_kind} shards; "
                                 f"{self.shard_kind} shards have: "
                                 f"{', '.join(KNOBS[self.shard_kind]) or 'none'}")
        return self._shard_template

    def verify(self) -> None:
        """Check every shard's SHA-256 now; ``ValueError`` naming the first damaged one."""
        self._verified.clear()
        for i, shard in enumerate(self._shards):
            for record in _records(shard):
                self._verify(i, record)

    def _reset(self) -> None:
        """Delete every shard file of the store; the directory and manifest remain."""
        self._shards = []
        self._verified.clear()
        self._sidecars.clear()
        self._next_id = 0
        self._commit(self.path)

    def save(self, path) -> None:
        """Copy the store to the directory ``path`` (new, empty, or left by a killed save);
        a no-op for its own directory, which is always up to date. The manifest is written
        last: until then ``path`` holds no store."""
        target = Path(path)
        if target.exists() and target.resolve() == self.path.resolve():
            return
        _claim_directory(target)
        for record in (r for shard in self._shards for r in _records(shard)):
            with open(self.path / record["file"], "rb") as src, \
                    atomic_write(target / record["file"]) as dst:
                shutil.copyfileobj(src, dst)
        self._commit(target)

    def __repr__(self) -> str:
        return (f"ShardedIndex(path={str(self.path)!r}, d={self.d}, metric={self.metric!r}, "
                f"kind={self.shard_kind!r}, shard_size={self.shard_size}, "
                f"nshards={self.nshards}, ntotal={self.ntotal})")

    # -- adding, removing, compacting ---------------------------------------------------
    def add_with_ids(self, x, ids) -> None:
        """Store the rows of ``x`` under the given int64 ``ids`` (FAISS ``IndexIDMap``;
        keeping them unique is up to you, as there). A later :meth:`add` numbers on from
        the largest id ever stored."""
        x = self._prepare(x, "x")
        self._write(self._add, x, self._checked_ids(ids, len(x)))

    def _add(self, x: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Write the new shard files, then switch the manifest to them once: all or nothing."""
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + len(x), dtype=np.int64)
        shards, start = list(self._shards), 0
        offset = sum(s["rows"] for s in shards)
        if shards and shards[-1]["rows"] < self.shard_size:
            i, last = len(shards) - 1, shards[-1]
            start = min(self.shard_size - last["rows"], len(x))
            offset -= last["rows"]
            shards[-1] = self._write_shard(
                i, offset, np.concatenate([self._read_vectors(i), x[:start]]),
                np.concatenate([self._shard_ids(i, offset), ids[:start]]),
                self._deleted_rows(i))
            offset += shards[-1]["rows"]
        stops = range(start, len(x), self.shard_size)
        for s in tqdm(stops, desc="ShardedIndex add", unit="shard", disable=None, leave=False):
            rows = x[s:s + self.shard_size]
            shards.append(self._write_shard(len(shards), offset, rows,
                                            ids[s:s + self.shard_size], _NONE))
            offset += len(rows)
        self._switch_to(shards, max(self._next_id, int(ids.max(initial=-1)) + 1))

    def remove_ids(self, ids) -> int:
        """Mark deleted every stored vector whose id is in ``ids``; return how many were
        newly removed. One pass over the store's ids; the shards stay on disk, their
        space reclaimed by :meth:`compact`."""
        return self._write(self._remove, self._ids_to_remove(ids))

    def _remove(self, ids: np.ndarray) -> int:
        shards, removed = list(self._shards), 0
        for i, offset in enumerate(self._offsets()):
            deleted = self._deleted_rows(i)
            hit = np.isin(self._shard_ids(i, offset), ids)
            hit[deleted] = False
            if hit.any():
                removed += int(hit.sum())
                shards[i] = self._with_deleted(shards[i], np.union1d(deleted,
                                                                     np.flatnonzero(hit)))
        if removed:
            self._switch_to(shards, self._next_id)
        return removed

    def compact(self) -> None:
        """Rewrite the store without the removed rows: the same store as a new one given
        the remaining vectors, in order, by ``add_with_ids`` with their ids (shards are
        rebuilt, so ivfpq and hnsw shards are trained again). Holds about two shards in
        memory; all or nothing, as ``add``. ivfpq shards need ``store_vectors=True``: PQ
        codes alone cannot give the vectors back."""
        if self.shard_kind == "ivfpq" and not self._shard_template.store_vectors:
            raise ValueError("compact() rebuilds shards from their vectors, and these ivfpq "
                             "shards keep only PQ codes (store_vectors=False); build a new "
                             "store from your vectors with add_with_ids(x, ids) instead")
        self._write(self._compact)

    def _compact(self) -> None:
        if not self.n_deleted:
            return
        self._compactions += 1
        try:
            # Survivors carried over to the next new shard: their rows, ids and count.
            shards, rows, ids, pending, offset = [], [], [], 0, 0
            last = len(self._shards) - 1
            for i, start in enumerate(self._offsets()):
                live = self._live_rows(i)
                rows.append(self._raw_rows(i, live))
                ids.append(self._shard_ids(i, start)[live])
                pending += len(live)
                while pending >= self.shard_size or (i == last and pending):
                    x, x_ids = np.concatenate(rows), np.concatenate(ids)
                    n = min(self.shard_size, pending)
                    shards.append(self._write_shard(len(shards), offset, x[:n], x_ids[:n],
                                                    _NONE))
                    offset += n
                    pending -= n
                    rows, ids = [x[n:]], [x_ids[n:]]
            self._switch_to(shards, self._next_id)
        except BaseException:
            self._compactions -= 1
            raise

    def _switch_to(self, shards: list[dict], next_id: int) -> None:
        self._shards, self._next_id = shards, next_id
        self._commit(self.path)
        named = {(r["file"], r["sha256"]) for s in shards for r in _records(s)}
        self._sidecars = {key: a for key, a in self._sidecars.items() if key in named}

    def _write_shard(self, i: int, offset: int, rows: np.ndarray, ids: np.ndarray,
                     deleted: np.ndarray) -> dict:
        """Write ``rows`` as the file of shard ``i`` (and its ids and deletions beside it,
        when there are any to write) and return its manifest entry. The name carries the
        row count, so a rewritten last shard never overwrites its old file."""
        n = len(rows)
        build = self.shard_kind != "flat" and n == self.shard_size
        stem = f"shard-{i:06d}-{n}" + (f"-c{self._compactions}" if self._compactions else "")
        if build:
            index = self._new_shard_index()
            if not index.is_trained:
                index.train(rows)  # the per-shard model (see Notes)
            index.add(rows)
            index.save(self.path / f"{stem}.npz")
            record = self._record(f"{stem}.npz")
        else:
            record = self._write_array(f"{stem}.npy", rows)
        entry = {**record, "rows": n, "stored": "index" if build else "vectors", "ids": None}
        if not np.array_equal(ids, np.arange(offset, offset + n)):
            entry["ids"] = self._write_array(f"{stem}.ids.npy", ids)
        return self._with_deleted(entry, deleted)

    def _with_deleted(self, entry: dict, deleted: np.ndarray) -> dict:
        """``entry`` with the sorted positions ``deleted`` as its deletions (a new file,
        whose name carries their count)."""
        record = None
        if len(deleted):
            name = f"{entry['file'].rsplit('.', 1)[0]}.deleted-{len(deleted)}.npy"
            record = {**self._write_array(name, deleted), "count": len(deleted)}
        return {**entry, "deleted": record}

    def _write_array(self, name: str, a: np.ndarray) -> dict:
        with atomic_write(self.path / name) as f:
            np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)
        return self._record(name)

    def _record(self, name: str) -> dict:
        """The manifest record of the file ``name`` just written: size and SHA-256."""
        target = self.path / name
        self._verified.add(name)
        return {"file": name, "bytes": target.stat().st_size, "sha256": _sha256(target)}

    # -- searching ----------------------------------------------------------------------
    def _checked_knobs(self, params: dict) -> dict:
        """The shard kind's per-call knobs (``nprobe=``, ``refine_k=`` for ivfpq shards,
        ``ef=`` for hnsw shards, none for flat), defaults from the store's attributes."""
        return self._shard_template._checked_knobs(params)

    def _search(self, xq: np.ndarray, k: int, id_filter=None,
                **knobs) -> tuple[np.ndarray, np.ndarray]:
        worst = np.inf if self.metric == "l2" else -np.inf
        D = np.full((len(xq), k), worst, dtype=np.float32)
        I = np.full((len(xq), k), -1, dtype=np.int64)
        for i, offset in enumerate(self._offsets()):
            # The filter over this shard's ids, minus its deleted rows, as a mask over rows.
            mask = self._allowed(i, offset, id_filter)
            if mask is None or mask.any():
                Ds, Is = self._search_shard(i, xq, min(k, self._shards[i]["rows"]),
                                            None if mask is None else IdFilter(mask), knobs)
                D, I = merge_results(D, I, Ds, self._labels(i, offset, Is), k, self.metric)
        return D, I

    def _allowed(self, i: int, offset: int, id_filter: IdFilter | None) -> np.ndarray | None:
        """Which rows of shard ``i`` a search may return (``None``: all of them)."""
        deleted = self._deleted_rows(i)
        if id_filter is None and not len(deleted):
            return None
        allowed = (np.ones(self._shards[i]["rows"], dtype=np.bool_) if id_filter is None
                   else id_filter.allows(self._shard_ids(i, offset)))
        allowed[deleted] = False
        return allowed

    def _labels(self, i: int, offset: int, rows: np.ndarray) -> np.ndarray:
        """Result rows of shard ``i`` (``-1`` = none) → ids."""
        if self._shards[i]["ids"] is None:
            return np.where(rows >= 0, rows + offset, -1)
        return np.where(rows >= 0, self._shard_ids(i, offset)[np.maximum(rows, 0)], -1)

    def _reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Each id from its shard: the raw rows, or the shard index's reconstruction (the
        first stored row of an id stored twice)."""
        out = np.empty((len(ids), self.d), dtype=np.float32)
        todo = np.ones(len(ids), dtype=bool)
        for i, offset in enumerate(self._offsets()):
            if not todo.any():
                break
            live = self._live_rows(i)
            rows, found = find_ids(self._shard_ids(i, offset)[live], ids[todo])
            if found.any():
                where = np.flatnonzero(todo)[found]
                local = live[rows[found]]
                out[where] = (self._read_vectors(i)[local]
                              if self._shards[i]["stored"] == "vectors"
                              else self._load_shard_index(i)._reconstruct(local))
                todo[where] = False
        if todo.any():
            raise ValueError(f"id {int(ids[todo][0])} is not in this ShardedIndex")
        return out

    def _raw_rows(self, i: int, local: np.ndarray) -> np.ndarray:
        """Rows ``local`` of shard ``i`` as they were added (for :meth:`compact`)."""
        if self._shards[i]["stored"] == "vectors":
            return np.array(self._read_vectors(i)[local])
        index = self._load_shard_index(i)
        if self.shard_kind == "ivfpq":
            return index._exact_vectors(local)
        return index._reconstruct(local)  # an hnsw shard keeps its vectors

    def _search_shard(self, i: int, xq: np.ndarray, k: int, id_filter, knobs: dict):
        """Open shard ``i``, search it (local ids), and let it go when this returns."""
        if self._shards[i]["stored"] == "vectors":
            x = self._read_vectors(i)
            norms = squared_norms(x) if self.metric == "l2" else np.zeros(len(x), np.float32)
            if id_filter is None:
                return exact_topk(xq, x, norms, k, self.metric)[:2]
            rows = np.flatnonzero(id_filter.allows(len(x)))
            return exact_topk_rows(xq, x, norms, rows, k, self.metric)[:2]
        return self._load_shard_index(i)._search(xq, k, id_filter, **knobs)

    def _read_vectors(self, i: int) -> np.ndarray:
        """Shard ``i``'s raw vectors, memory-mapped read-only (checksum verified first)."""
        self._verify(i)
        shard = self._shards[i]
        try:
            x = np.asarray(np.load(self.path / shard["file"], mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self._describe(i)} cannot be read: {exc}") from None
        if x.dtype != np.float32 or x.shape != (shard["rows"], self.d):
            raise ValueError(f"{self._describe(i)} holds {x.dtype} {x.shape}; the manifest "
                             f"says float32 ({shard['rows']}, {self.d})")
        return x

    def _offsets(self) -> list[int]:
        """Global row number of each shard's first row (deleted rows included)."""
        return np.cumsum([0] + [s["rows"] for s in self._shards])[:-1].tolist()

    def _shard_ids(self, i: int, offset: int) -> np.ndarray:
        """The id of every row of shard ``i`` (deleted ones included): its file, or the
        row numbers ``offset …`` when it has none."""
        shard = self._shards[i]
        if shard["ids"] is None:
            return np.arange(offset, offset + shard["rows"])
        return self._sidecar(i, "ids")

    def _deleted_rows(self, i: int) -> np.ndarray:
        """Sorted positions of the removed rows of shard ``i``."""
        if self._shards[i]["deleted"] is None:
            return _NONE
        return self._sidecar(i, "deleted")

    def _sidecar(self, i: int, key: str) -> np.ndarray:
        """Shard ``i``'s ids (``key="ids"``) or deleted positions (``"deleted"``), read-only:
        read and checked the first time, then kept in ``_sidecars``, so that a search (or
        any number of them) reads each sidecar file once. ``_switch_to`` drops the entries
        of files the manifest no longer names."""
        shard = self._shards[i]
        record = shard[key]
        cache_key = (record["file"], record["sha256"])
        a = self._sidecars.get(cache_key)
        if a is not None:
            return a
        if key == "ids":
            a = self._read_int64(i, record, shard["rows"])
        else:
            a = self._read_int64(i, record, record["count"])
            if not (np.all(np.diff(a) > 0) and a[0] >= 0 and a[-1] < shard["rows"]):
                raise ValueError(f"{self._describe(i, record)} does not hold sorted row "
                                 f"positions of the shard")
        a.flags.writeable = False
        self._sidecars[cache_key] = a
        return a

    def _live_rows(self, i: int) -> np.ndarray:
        """Positions of the rows of shard ``i`` not removed."""
        live = np.ones(self._shards[i]["rows"], dtype=bool)
        live[self._deleted_rows(i)] = False
        return np.flatnonzero(live)

    def _read_int64(self, i: int, record: dict, n: int) -> np.ndarray:
        """The int64 array of ``n`` entries in the file of ``record`` (checksum first)."""
        self._verify(i, record)
        try:
            a = np.load(self.path / record["file"], allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self._describe(i, record)} cannot be read: {exc}") from None
        if a.dtype != np.int64 or a.shape != (n,):
            raise ValueError(f"{self._describe(i, record)} holds {a.dtype} {a.shape}; the "
                             f"manifest says int64 ({n},)")
        return a

    def _load_shard_index(self, i: int) -> Index:
        self._verify(i)
        shard = self._shards[i]
        index = load_index(self.path / shard["file"])
        cls = SHARD_KINDS[self.shard_kind]
        if (type(index) is not cls or index.d != self.d or index.metric != self.metric
                or index.ntotal != shard["rows"]):
            raise ValueError(f"{self._describe(i)} holds {index!r}; the manifest expects a "
                             f"{cls.__name__} with d={self.d}, metric={self.metric!r} and "
                             f"{shard['rows']} vectors")
        for knob in KNOBS[self.shard_kind]:
            setattr(index, knob, getattr(self._shard_template, knob))
        return index

    # -- integrity and persistence --------------------------------------------------------
    def _describe(self, i: int, record: dict | None = None) -> str:
        name = (record or self._shards[i])["file"]
        return f"shard {i} ({name}) of the ShardedIndex in {self.path}"

    def _verify(self, i: int, record: dict | None = None) -> None:
        """Check the SHA-256 of ``record``'s file (default: shard ``i``'s own), once."""
        record = record or self._shards[i]
        name = record["file"]
        if name in self._verified:
            return
        try:
            digest = _sha256(self.path / name)
        except OSError as exc:
            raise ValueError(f"{self._describe(i, record)} cannot be read: {exc}") from None
        if digest != record["sha256"]:
            raise ValueError(f"{self._describe(i, record)} is damaged: its SHA-256 does not "
                             f"match the manifest; restore the file or rebuild the index")
        self._verified.add(name)

    def _check_files(self) -> None:
        """Every file of every shard exists and has the size the manifest records."""
        for i, shard in enumerate(self._shards):
            for record in _records(shard):
                try:
                    size = (self.path / record["file"]).stat().st_size
                except FileNotFoundError:
                    raise ValueError(f"{self._describe(i, record)} is missing") from None
                if size != record["bytes"]:
                    raise ValueError(f"{self._describe(i, record)} is damaged: it has {size} "
                                     f"bytes, the manifest says {record['bytes']}")

    def _state(self):
        """The manifest (without checksum) and no arrays: the vectors are in the shards."""
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "d": self.d,
                "metric": self.metric, "shard_kind": self.shard_kind,
                "shard_size": self.shard_size, "index_params": self.index_params,
                "next_id": self._next_id, "compactions": self._compactions,
                "shards": self._shards}, {}

    def _commit(self, directory: Path) -> None:
        """Switch ``directory`` to this store (its manifest, atomically), then delete the
        store files there that the manifest does not name."""
        write_manifest(directory / MANIFEST, self._state()[0])
        remove_unreferenced(directory, _OURS,
                            {MANIFEST, *(r["file"] for s in self._shards for r in _records(s))})

    @classmethod
    def _from_state(cls, params, arrays):
        index = cls.__new__(cls)
        try:
            index._configure(params["path"], params["d"], params["shard_size"],
                             params["metric"], params["shard_kind"], params["index_params"])
            index._shards = [{**_parsed_record(s), "rows": int(s["rows"]),
                              "stored": str(s["stored"]),
                              "ids": _parsed_record(s.get("ids")),
                              "deleted": _parsed_record(s.get("deleted"), "count")}
                             for s in params["shards"]]
            # Version 1 had neither: every id its row number.
            index._next_id = int(params.get("next_id", index.ntotal))
            index._compactions = int(params.get("compactions", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{params.get('path')} holds an inconsistent ShardedIndex "
                             f"manifest: {exc}") from None
        index._check_layout()
        index._check_files()
        return index

    def _check_layout(self) -> None:
        """Shards as ``add`` writes them: all full but the last; built iff full (not flat)."""
        for i, shard in enumerate(self._shards):
            full = shard["rows"] == self.shard_size
            last = i == len(self._shards) - 1
            built = self.shard_kind != "flat" and full
            deleted = _n_deleted(shard)
            if not (0 < shard["rows"] <= self.shard_size and (full or last)
                    and shard["stored"] == ("index" if built else "vectors")
                    and all(Path(r["file"]).name == r["file"] for r in _records(shard))
                    and (shard["deleted"] is None or 0 < deleted <= shard["rows"])):
                raise ValueError(f"{self.path} holds an inconsistent ShardedIndex manifest: "
                                 f"entry {i} is {shard}")


#: No rows (no deletions).
_NONE = np.empty(0, dtype=np.int64)


def _records(shard: dict) -> list[dict]:
    """The file records of a manifest entry: the shard's, then its ids' and deletions'."""
    return [shard] + [shard[k] for k in ("ids", "deleted") if shard[k] is not None]


def _n_deleted(shard: dict) -> int:
    return 0 if shard["deleted"] is None else shard["deleted"]["count"]


def _parsed_record(entry: dict | None, *counts: str) -> dict | None:
    """A file record of a manifest (``file``, ``bytes``, ``sha256`` and ``counts``), typed."""
    if entry is None:
        return None
    return {"file": str(entry["file"]), "bytes": int(entry["bytes"]),
            "sha256": str(entry["sha256"]), **{c: int(entry[c]) for c in counts}}


def _json_params(params: dict) -> dict:
    """``params`` with NumPy scalars turned into Python ones, so the manifest can hold them."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _claim_directory(path: Path) -> None:
    """Create ``path``, or accept it if it is an empty directory or holds only what a
    killed ``save`` left (shards, temporary files, no manifest); refuse anything else."""
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path} exists and is not a directory; a ShardedIndex needs a "
                             f"directory of its own")
        if (path / MANIFEST).exists():
            raise ValueError(f"{path} already holds a ShardedIndex; reopen it with "
                             f"load_index(path) (reset() empties it) or pick another directory")
        if not all(written_by(p.name, _OURS) for p in path.iterdir()):
            raise ValueError(f"{path} is not empty and holds no ShardedIndex; refusing to "
                             f"write shards among other files: pass a new or empty directory")
    path.mkdir(parents=True, exist_ok=True)


def _read_manifest(path: Path) -> dict:
    """The manifest in directory ``path``, checked for format, version and checksum."""
    file = path / MANIFEST
    if not file.is_file():
        raise ValueError(f"{path} is a directory without a ShardedIndex manifest ({MANIFEST}); "
                         f"pass the directory of a ShardedIndex or the file of a saved index")
    return read_manifest(file, FORMAT_NAME, READ_VERSIONS, "ShardedIndex", "Rebuild the index.")
