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

import hashlib
import json
import os
import re
import secrets
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


def save_state(path, kind: str, params: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` and ``params`` of an object of ``kind`` to ``path`` atomically.

    A save killed at any moment leaves the previous file (or none) or the new one under
    ``path``; the temporary files of earlier killed saves to ``path`` are removed. ``path``
    is used as given (no ``.npz`` suffix is appended).
    """
    path = Path(path)
    if any(name in _RESERVED for name in arrays):
        raise ValueError(f"array names {_RESERVED} are reserved")
    header = json.dumps({"version": FORMAT_VERSION, "kind": kind, "params": params},
                        sort_keys=True)
    payload = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    payload["__format__"] = np.array(FORMAT_NAME)
    payload["__header__"] = np.array(header)
    payload["__checksum__"] = np.array(_digest(header, arrays))
    path.parent.mkdir(parents=True, exist_ok=True)
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
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            message = f"cannot write {path}: {exc.strerror or exc}"
            raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc
        raise


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
