"""Pattern tables (retgen.md §4.1) against brute-force counting."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retgen_ref.lm.patterns import (add_to_table, context_windows, extract_patterns,
                                    pattern_ids)

streams = st.lists(st.integers(0, 5), min_size=1, max_size=60).map(
    lambda xs: np.array(xs, np.int32))


def brute_force_counts(stream, r):
    padded = [1] * r + list(stream)
    return Counter((tuple(padded[t:t + r]), padded[t + r]) for t in range(len(stream)))


def table_counts(table):
    out = Counter()
    for i, ctx in enumerate(table.contexts):
        for y, c in zip(*table.next_token_counts(i)):
            out[(tuple(int(v) for v in ctx), int(y))] = float(c)
    return out


def test_hand_computed_bigram_table():
    table = extract_patterns(np.array([2, 3, 2, 3, 2, 4], np.int32), 1)
    # contexts: <eos>=1 before the first token, then 2, 3, 2, 3, 2
    assert table.contexts.ravel().tolist() == [1, 2, 3]
    assert table.next_token_counts(1)[0].tolist() == [3, 4]
    assert table.next_token_counts(1)[1].tolist() == [2.0, 1.0]
    assert table.totals.tolist() == [1.0, 3.0, 2.0]


@settings(max_examples=60, deadline=None)
@given(streams, st.integers(0, 4))
def test_table_equals_brute_force_counts(stream, r):
    table = extract_patterns(stream, r)
    assert table_counts(table) == brute_force_counts(stream, r)
    assert table.totals.sum() == len(stream)
    for i in range(len(table)):  # next tokens ascending within a row: binary search relies on it
        assert np.all(np.diff(table.next_token_counts(i)[0]) > 0)


@settings(max_examples=40, deadline=None)
@given(streams, streams, st.integers(1, 3), st.sampled_from([1.0, 0.25]))
def test_adding_a_table_adds_counts_and_keeps_stored_rows_in_place(a, b, r, scale):
    old = extract_patterns(a, r)
    merged, appended = add_to_table(old, extract_patterns(b, r), scale)
    expected = Counter({key: c * scale for key, c in brute_force_counts(a, r).items()})
    expected.update(brute_force_counts(b, r))
    assert table_counts(merged) == pytest.approx(expected)
    np.testing.assert_array_equal(merged.contexts[:len(old)], old.contexts)
    assert len(merged) == len(old) + len(appended)
    if scale == 1.0:  # the same counts as extracting both segments at once
        assert table_counts(merged) == pytest.approx(table_counts(extract_patterns([a, b], r)))


def test_pattern_ids_find_stored_contexts_and_flag_others():
    stream = np.array([5, 6, 7, 5, 6, 8], np.int32)
    table = extract_patterns(stream, 2)
    queries = np.array([[5, 6], [6, 7], [7, 7], [1, 5]], np.int32)
    ids = pattern_ids(table, queries)
    assert ids[2] == -1
    for q, i in zip(queries[[0, 1, 3]], ids[[0, 1, 3]]):
        assert table.contexts[i].tolist() == q.tolist()


def test_context_windows_pad_with_eos():
    assert context_windows(np.array([7, 8, 9], np.int32), 2).tolist() == [[1, 1], [1, 7], [7, 8]]


def test_damaged_table_arrays_are_refused():
    table = extract_patterns(np.array([2, 3, 2], np.int32), 1)
    arrays = table.arrays("r1_")
    arrays["r1_offsets"] = arrays["r1_offsets"][:-1]
    with pytest.raises(ValueError, match="inconsistent"):
        type(table).from_arrays(arrays, "r1_")
