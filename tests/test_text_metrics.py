"""Generation metrics: distinct-n, repetition, suffix array and copied spans."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from retgen_ref.lm.text_metrics import copied_spans, distinct_n, repetition_rate, suffix_array


def test_hand_computed_distinct_and_repetition():
    ids = [1, 2, 1, 2, 1, 3]
    assert distinct_n(ids, 1) == 3 / 6
    assert distinct_n(ids, 2) == 3 / 5          # (1,2) (2,1) (1,3)
    assert repetition_rate(ids, 2) == 2 / 5     # (1,2) and (2,1) seen again
    assert distinct_n([4], 2) == 0.0 and repetition_rate([4], 4) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=40))
def test_suffix_array_sorts_every_suffix(xs):
    sa = suffix_array(np.array(xs))
    assert sorted(range(len(xs)), key=lambda i: xs[i:]) == sa.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=40),
       st.lists(st.integers(0, 3), min_size=1, max_size=12))
def test_copied_spans_equal_brute_force(train, generated):
    def occurs(seq):
        return any(train[i:i + len(seq)] == seq for i in range(len(train) - len(seq) + 1))

    expected = []
    for i in range(len(generated)):
        n = 0
        while i + n < len(generated) and occurs(generated[i:i + n + 1]):
            n += 1
        expected.append(n)
    assert copied_spans(np.array(generated), np.array(train)).tolist() == expected
