"""Input checks at the public boundary, with one message format.

Every public function and method validates its arguments here once, then hands plain
C-contiguous arrays to the Numba kernels, which do not check anything (DESIGN.md,
convention 1). Messages say what was wrong and how to fix it (convention 6).
"""

from __future__ import annotations

import numbers
import os

import numpy as np

METRICS = ("l2", "ip", "cosine")


def check_metric(metric) -> str:
    """Return ``metric`` if it is one of :data:`METRICS`, else raise ``ValueError``."""
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(
            f"unknown metric {metric!r}; use one of {', '.join(repr(m) for m in METRICS)}"
        )
    return metric


def check_int(value, name: str, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """Return ``value`` as a Python ``int`` in ``[minimum, maximum]``.

    ``bool`` is rejected although it is an ``int`` subclass: ``k=True`` is a bug.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_positive_float(value, name: str) -> float:
    """Return ``value`` as a finite ``float`` > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def as_array(x, name: str, *, ndim: int, dtype=np.float32, d: int | None = None,
             d_name: str = "d", finite: bool = True) -> np.ndarray:
    """Validate ``x`` and return it as a C-contiguous array of ``dtype``.

    Parameters
    ----------
    x : array_like
        Real numeric data (integers, floats). Booleans, complex numbers, strings and
        objects are refused with ``TypeError``.
    name : str
        The argument's name, used in messages.
    ndim : int
        Required number of dimensions.
    dtype : numpy dtype
        Dtype of the returned array.
    d : int, optional
        Required size of the last axis.
    d_name : str
        What ``d`` is called in messages.
    finite : bool
        Check that every value is finite (a caller that computes something NaN and
        infinity would spoil anyway may pass False and call :func:`check_finite` only
        when it is spoilt, saving a pass over ``x``).

    Raises
    ------
    TypeError
        Non-numeric data.
    ValueError
        Wrong rank, wrong last-axis size, an empty array, NaN or infinity (also values that
        overflow ``dtype``).
    """
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:  # ragged nested lists and the like
            raise TypeError(f"{name} must be a numeric array: {exc}") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (integer or float); got dtype {arr.dtype}"
        )
    if arr.ndim != ndim:
        hint = " (use x.reshape(1, -1) for a single vector)" if ndim == 2 and arr.ndim == 1 else ""
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}{hint}")
    if d is not None and arr.shape[-1] != d:
        raise ValueError(
            f"{name} has {arr.shape[-1]} columns; expected {d_name}={d}"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); pass at least one vector")
    if arr.dtype == dtype and arr.flags.c_contiguous:
        out = arr  # the common case: no conversion, so nothing can overflow
    else:
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(arr, dtype=dtype)
    if finite:
        check_finite(out, arr, name)
    return out


def check_finite(out: np.ndarray, source, name: str) -> None:
    """``ValueError`` if ``out`` (``source`` converted by :func:`as_array`) holds NaN or
    infinity, saying whether ``source`` had it or the conversion overflowed."""
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0]
        where = ", ".join(str(i) for i in bad)
        source = np.asarray(source)
        src_finite = source.dtype.kind in "iu" or bool(np.isfinite(source).all())
        why = f"a value too large for {out.dtype.name}" if src_finite else "NaN or infinity"
        raise ValueError(f"{name} contains {why} (first at index [{where}]); clean the data first")


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux ``MemAvailable``;
    elsewhere the free physical pages), or None when the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


#: Requests below this size are never refused, so the common search does not read
#: ``/proc/meminfo`` on every call.
ALWAYS_FITS = 64 * 2 ** 20


def check_fits(nbytes: int, what: str, fix: str) -> None:
    """Refuse, before any work, a request whose output alone takes more than half of the
    memory available now (:func:`available_memory`); ``fix`` says what to change."""
    if nbytes < ALWAYS_FITS:
        return
    available = available_memory()
    if available is not None and nbytes > available // 2:
        raise ValueError(f"{what} would take {nbytes / 2**30:.1f} GiB, more than half of "
                          f"the {available / 2**30:.1f} GiB of memory available; {fix}")


def repeated_id(ids: np.ndarray) -> tuple[int, int] | None:
    """``(row, id)`` of the first non-negative id that a row of ``ids`` holds twice, or None
    (``-1`` padding may repeat)."""
    ordered = np.sort(ids, axis=1)
    twice = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if not twice.any():
        return None
    row, j = np.argwhere(twice)[0]
    return int(row), int(ordered[row, j + 1])
