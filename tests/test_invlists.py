"""InvertedLists: lists in one pool, amortised growth, removal, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retgen_ref.index.invlists import InvertedLists


def _contents(lists):
    out = {}
    for l in range(lists.nlist):
        rows, ids = lists.list_entries(l, "rows")
        out[l] = sorted(zip(ids.tolist(), rows[:, 0].tolist()))
    return out


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.lists(st.integers(0, 6), min_size=0, max_size=40), min_size=1,
                        max_size=25),
       removals=st.lists(st.integers(0, 600), max_size=30))
def test_property_lists_hold_exactly_what_was_added_minus_removed(batches, removals):
    lists = InvertedLists(7, {"rows": (2, np.float32)})
    expected = {l: [] for l in range(7)}
    next_id = 0
    for batch in batches:
        ids = np.arange(next_id, next_id + len(batch), dtype=np.int64)
        rows = np.stack([ids, ids], axis=1).astype(np.float32) if batch else np.empty((0, 2), np.float32)
        lists.add(np.array(batch, dtype=np.int64), {"rows": rows, "ids": ids})
        for l, i in zip(batch, ids.tolist()):
            expected[l].append((i, float(i)))
        next_id += len(batch)
    removed = lists.remove_ids(np.array(removals, dtype=np.int64))
    gone = set(removals)
    assert removed == sum(i in gone for l in expected for i, _ in expected[l])
    expected = {l: sorted(e for e in v if e[0] not in gone) for l, v in expected.items()}
    assert _contents(lists) == expected
    assert lists.ntotal == sum(len(v) for v in expected.values())
    # blocks never overlap
    spans = sorted((lists.offsets[l], lists.offsets[l] + lists.capacities[l]) for l in range(7)
                   if lists.capacities[l])
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize("nlist", [1, 4, 64])
def test_growth_is_amortised_not_quadratic(nlist):
    lists = InvertedLists(nlist, {"rows": (1, np.float32)})
    n = 5000
    for step in range(n):  # one row at a time: the worst case for re-copying
        lists.add(np.array([step % nlist]), {"rows": np.zeros((1, 1), np.float32),
                                             "ids": np.array([step])})
    assert lists.ntotal == n
    assert lists.rows_moved <= 12 * n  # geometric growth: O(n) rows copied in all (quadratic: ~n²/nlist)
    assert len(lists.ids) <= 4 * n + 64 * nlist


def test_state_round_trip():
    fields = {"rows": (2, np.uint8)}
    lists = InvertedLists(3, fields)
    lists.add(np.array([0, 2, 2, 1]), {"rows": np.arange(8, dtype=np.uint8).reshape(4, 2),
                                       "ids": np.array([10, 11, 12, 13])})
    again = InvertedLists.from_state(3, fields, lists.state("x_"), "x_")
    assert _contents(again) == _contents(lists)
