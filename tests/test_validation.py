"""Bad input at the public boundary gets a clear error that says what to fix."""

from __future__ import annotations

import numpy as np
import pytest

from retgen_ref import FlatIndex


@pytest.fixture
def index():
    index = FlatIndex(4)
    index.add(np.eye(4))
    return index


@pytest.mark.parametrize("bad,match", [
    (np.array([[1.0, np.nan, 0, 0]]), r"NaN or infinity \(first at index \[0, 1\]\)"),
    (np.array([[1.0, 0, 0, np.inf]]), "NaN or infinity"),
    (np.array([[1e300, 0, 0, 0]]), "too large for float32"),
    (np.ones((2, 3)), r"3 columns; expected d \(this index's dimension\)=4"),
    (np.ones(4), r"must be 2-D, got shape \(4,\).*reshape\(1, -1\)"),
    (np.ones((1, 2, 4)), "must be 2-D"),
    (np.ones((0, 4)), "is empty"),
])
def test_bad_arrays_raise_value_error(index, bad, match):
    with pytest.raises(ValueError, match=match):
        index.search(bad, 1)
    with pytest.raises(ValueError, match=match):
        index.add(bad)


@pytest.mark.parametrize("bad", [
    np.array([["a", "b", "c", "d"]]),
    np.ones((1, 4), dtype=bool),
    np.ones((1, 4), dtype=complex),
    np.array([[object(), 1, 2, 3]], dtype=object),
    [[1, 2], [3]],
])
def test_non_numeric_data_raises_type_error(index, bad):
    with pytest.raises(TypeError, match="numeric|real numbers"):
        index.search(bad, 1)


@pytest.mark.parametrize("k,exc,match", [
    (0, ValueError, "k must be >= 1, got 0"),
    (-3, ValueError, "k must be >= 1"),
    (2.0, TypeError, "k must be an integer, got float"),
    (True, TypeError, "k must be an integer, got bool"),
    ("5", TypeError, "k must be an integer"),
])
def test_bad_k(index, k, exc, match):
    with pytest.raises(exc, match=match):
        index.search(np.ones((1, 4)), k)


def test_numpy_integer_k_is_accepted(index):
    assert index.search(np.ones((1, 4)), np.int64(2))[1].shape == (1, 2)


@pytest.mark.parametrize("metric", ["L2", "euclidean", None, 2])
def test_unknown_metric(metric):
    with pytest.raises(ValueError, match="unknown metric .*use one of 'l2', 'ip', 'cosine'"):
        FlatIndex(4, metric)


@pytest.mark.parametrize("d,exc", [(0, ValueError), (-1, ValueError), (2.5, TypeError)])
def test_bad_dimension(d, exc):
    with pytest.raises(exc, match="d must be"):
        FlatIndex(d)


def test_searching_an_empty_index_says_add_first():
    with pytest.raises(ValueError, match="empty; add vectors before searching"):
        FlatIndex(3).search(np.ones((1, 3)), 1)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("bad, message", [
    (np.nan, r"NaN or infinity \(first at index \[2, 3\]\)"),
    (-np.inf, r"NaN or infinity \(first at index \[2, 3\]\)"),
    (1e300, r"a value too large for float32 \(first at index \[2, 3\]\)"),
    (1e20, "row 2 has norm 1e\\+20"),
])
def test_an_index_names_the_first_bad_value_whatever_the_metric(metric, bad, message):
    """Outside cosine, ``Index._prepare`` finds NaN and infinity through the norm check
    rather than a pass of its own: the message must stay the one ``as_array`` gives."""
    index = FlatIndex(4, metric)
    x = np.ones((4, 4))
    x[2, 3] = bad
    if metric == "cosine" and bad == 1e20:  # cosine rows are normalised: no overflow
        index.add(x)
        return
    for call in (index.add, lambda v: index.search(v, 1)):
        with pytest.raises(ValueError, match=message):
            call(x)
