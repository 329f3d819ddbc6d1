"""Saving and loading project objects as checksummed ``.npz`` files (DESIGN.md, convention 7).

A file holds the object's arrays plus three entries of our own:

``__format__``
    the string ``"retgen_ref"``, so a foreign ``.npz`` is recognised as such;
``__header__``
    JSON with the format version, the object's kind and its scalar parameters;
``__checksum__``
    SHA-256 over the header and every array's name, dtype, shape and bytes.

No pickle is ever used (``allow_pickle=False``): loading a file cannot run code. Any
damage (truncation, flipped bytes, a missing array) raises ``ValueError`` naming the file.

Crash safety. Every file is written by :func:`atomic_write`: to a temporary file next to
it, flushed to disk, renamed over the final name, and the directory flushed too. A process
killed at any moment (or a power cut) leaves the old file or the new one, never a mix.
Objects made of several files (a model folder, a :class:`~retgen_ref.index.ShardedIndex`)
write new files under new names, then switch one JSON manifest (:func:`write_manifest`),
then delete what the manifest no longer names (:func:`remove_unreferenced`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import stat
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

FORMAT_NAME = "retgen_ref"
FORMAT_VERSION = 1
_RESERVED = ("__format__", "__header__", "__checksum__")
#: How :func:`atomic_write` names its temporary file: ``<final name>.<16 hex digits>.tmp``.
_TEMP = re.compile(r"\.[0-9a-f]{16}\.tmp$")


def _digest(header: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(header.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_state(path, kind: str, params: dict, arrays: dict[str, np.ndarray], *,
               make_parents: bool = False) -> Path:
    """Write ``arrays`` and ``params`` of an object of ``kind`` to ``path`` atomically.

    A save killed at any moment leaves the previous file (or none) or the new one under
    ``path``; the temporary files of earlier killed saves to ``path`` are removed. ``path``
    is used as given (no ``.npz`` suffix is appended). Its folder must exist
    (:func:`check_destination`) unless ``make_parents`` asks for it to be created.
    """
    path = check_destination(path, make_parents=make_parents)
    if any(name in _RESERVED for name in arrays):
        raise ValueError(f"array names {_RESERVED} are reserved")
    header = json.dumps({"version": FORMAT_VERSION, "kind": kind, "params": params},
                        sort_keys=True)
    payload = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    payload["__format__"] = np.array(FORMAT_NAME)
    payload["__header__"] = np.array(header)
    payload["__checksum__"] = np.array(_digest(header, arrays))
    with atomic_write(path) as f:
        np.savez(f, **payload)
    remove_unreferenced(path.parent, re.compile(re.escape(path.name)), keep={path.name})
    return path


def load_state(path) -> tuple[str, dict, dict[str, np.ndarray]]:
    """Read a file written by :func:`save_state`; return ``(kind, params, arrays)``.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a retgen_ref file, comes from another format version, or is
        damaged (its checksum does not match).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is damaged or not a retgen_ref file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            entries = {name: z[name] for name in z.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is damaged or not a retgen_ref file: {exc}") from None
    if "__format__" not in entries or str(entries["__format__"]) != FORMAT_NAME:
        raise ValueError(f"{path} is not a retgen_ref file (no retgen_ref format tag)")
    header = str(entries.pop("__header__", ""))
    checksum = str(entries.pop("__checksum__", ""))
    del entries["__format__"]
    arrays = entries
    try:
        meta = json.loads(header)
        version, kind, params = meta["version"], meta["kind"], meta["params"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path} has a damaged header") from None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} was written in format version {version}; this retgen_ref reads "
            f"version {FORMAT_VERSION}. Rebuild the object and save it again."
        )
    if _digest(header, arrays) != checksum:
        raise ValueError(f"{path} is damaged: its checksum does not match its contents")
    return kind, params, arrays


def check_destination(path, *, make_parents: bool = False, directory: bool = False) -> Path:
    """``path`` as a :class:`~pathlib.Path` once it is known that a file (or, with
    ``directory``, a folder) can be written there; else an ``OSError`` naming ``path`` and
    what to do, before anything is written.

    The folder holding ``path`` must exist: a missing one is a ``FileNotFoundError``
    (a typo in a folder name should not silently create a tree of folders), unless
    ``make_parents`` creates it (and its own missing parents). ``path`` itself must not be
    a folder (a file when ``directory``).
    """
    path = Path(path)
    parent = path.parent
    if directory and path.exists() and not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"cannot save to {path}: it is a file; give "
                                 "the name of a new or empty folder")
    if not directory and path.is_dir():
        raise IsADirectoryError(errno.EISDIR, f"cannot save to {path}: it is a folder; give "
                                "a file name")
    if not parent.is_dir():
        existing = next((p for p in parent.parents if p.exists()), None)
        if parent.exists() or (existing is not None and not existing.is_dir()):
            blocker = parent if parent.exists() else existing
            raise NotADirectoryError(errno.ENOTDIR, f"cannot save to {path}: {blocker} is a "
                                     "file, not a folder; choose another path")
        if not make_parents:
            raise FileNotFoundError(errno.ENOENT, f"cannot save to {path}: folder {parent} "
                                    "does not exist; create it first (or pass "
                                    "make_parents=True)")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _naming(exc, f"cannot create folder {parent} for {path}") from None
    return path


def _naming(exc: OSError, what: str) -> OSError:
    """An ``OSError`` of the same kind as ``exc`` whose message is ``what`` and the cause,
    naming no temporary file."""
    message = f"{what}: {exc.strerror or exc}"
    return OSError(exc.errno, message) if exc.errno else OSError(message)


@contextmanager
def atomic_write(path):
    """Open a new file for writing in binary that replaces ``path`` only once complete.

    Yields a file object on ``<path>.<random>.tmp``; when the block ends, the file is
    fsynced, renamed onto ``path`` (``os.replace``, atomic) and the directory is fsynced,
    so after a kill or a power cut ``path`` is the old file or the new one. The new file
    gets the mode any new file gets (``0o666`` less the umask: ``0644`` under umask 022),
    not ``mkstemp``'s ``0600``. If the block raises, the temporary file is removed and
    ``path`` is untouched; an ``OSError`` names ``path``, not the temporary file.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        # 0o666 here is what open(path, "wb") asks for; the kernel takes the umask off it.
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                               | getattr(os, "O_BINARY", 0), 0o666), "wb") as f:
            yield f
            f.flush()
            _keep_mode(path, f.fileno())
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            # from None: the chained original would name the temporary file
            raise _naming(exc, f"cannot write {path}") from None
        raise


def _keep_mode(path: Path, fd: int) -> None:
    """Give the new file the permissions of the file it replaces, as rewriting that file
    in place would (a new file keeps the mode it was created with, ``0o666`` less the
    umask)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)


def _fsync_directory(path: Path) -> None:
    """Make a rename in directory ``path`` durable (a no-op on Windows, which cannot)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def written_by(name: str, ours: re.Pattern) -> bool:
    """Whether ``ours`` matches the file name ``name`` in full, or ``name`` is the
    temporary file of :func:`atomic_write` for such a name."""
    return ours.fullmatch(_TEMP.sub("", name)) is not None


def remove_unreferenced(directory, ours: re.Pattern, keep: set[str]) -> None:
    """Delete what earlier or interrupted writes left in ``directory``: every file
    :func:`written_by` ``ours`` except the names in ``keep``. Other files are never
    touched."""
    for entry in os.scandir(directory):
        if entry.name not in keep and written_by(entry.name, ours):
            Path(entry.path).unlink(missing_ok=True)


def _json_digest(manifest: dict) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def write_manifest(path, manifest: dict) -> None:
    """Write ``manifest`` (a JSON object holding ``format`` and ``version``) to ``path``
    atomically, with a SHA-256 of its contents under ``checksum``."""
    text = json.dumps({**manifest, "checksum": _json_digest(manifest)}, indent=1,
                      sort_keys=True)
    with atomic_write(path) as f:
        f.write(text.encode() + b"\n")


def read_manifest(path, format_name: str, version: int | tuple[int, ...], what: str,
                  remedy: str) -> dict:
    """Read a manifest written by :func:`write_manifest`, without its checksum.

    Raises ``ValueError`` naming ``path`` when it is not JSON, not a ``what`` manifest
    (``format`` is not ``format_name``), of a format version other than ``version`` (one
    or a tuple of those this code reads; the message ends with ``remedy``) or damaged (its checksum does not match).
    """
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is damaged: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        raise ValueError(f"{path} is not a {what} manifest (no {format_name} tag)")
    versions = (version,) if isinstance(version, int) else tuple(version)
    if manifest.get("version") not in versions:
        raise ValueError(f"{path} was written in {what} format version "
                         f"{manifest.get('version')}; this retgen_ref reads version "
                         f"{' or '.join(map(str, versions))}. {remedy}")
    checksum = manifest.pop("checksum", None)
    if _json_digest(manifest) != checksum:
        raise ValueError(f"{path} is damaged: its checksum does not match its contents")
    return manifest
