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
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT_NAME = "retgen_ref"
FORMAT_VERSION = 1
_RESERVED = ("__format__", "__header__", "__checksum__")


def _digest(header: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(header.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_state(path, kind: str, params: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` and ``params`` of an object of ``kind`` to ``path`` atomically.

    The file is written next to ``path`` and renamed into place, so an interrupted save
    never leaves a half-written file under the final name. ``path`` is used as given (no
    ``.npz`` suffix is appended).
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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
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
