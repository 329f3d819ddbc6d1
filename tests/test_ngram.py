"""Kneser–Ney and unigram baselines: agreement with a brute-force twin written from the
equations, normalisation, scoring consistency, persistence and input errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retgen_ref import persist
from retgen_ref.lm import EOS, load_corpus
from retgen_ref.lm.ngram import KneserNeyLM, UnigramLM, modified_kn_discounts

TOY_V = 8  # id 7 never occurs in training; id 0 (<unk>) occurs once
TOY = np.array([2, 3, 4, 1,
                2, 3, 5, 3, 4, 1,
                0, 3, 4, 2, 1,
                5, 5, 3, 2, 3, 4, 1,
                2, 3, 4, 6, 1,
                4, 2, 3, 4, 1,
                3, 5, 2, 1,
                5, 2, 3, 1], dtype=np.int32)


# -- brute-force twin, straight from Chen & Goodman (1998) with plain dicts ---------------
def reference_discounts(values):
    n = {k: sum(1 for v in values if v == k) for k in (1, 2, 3, 4)}
    if 0 in n.values():
        return [0.5, 1.0, 1.5]
    y = n[1] / (n[1] + 2 * n[2])
    d = [1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3]]
    return d if min(d) > 0 else [0.5, 1.0, 1.5]


class ReferenceKN:
    """Interpolated modified KN: raw counts on top, continuation counts below, uniform 1/V
    under the unigram, every stream read after ``order − 1`` EOS."""

    def __init__(self, train, vocab_size, order):
        self.V, self.N = vocab_size, order
        padded = [EOS] * (order - 1) + [int(t) for t in train]
        raw = {n: {} for n in range(1, order + 1)}
        for j in range(order - 1, len(padded)):
            for n in range(1, order + 1):
                gram = tuple(padded[j - n + 1:j + 1])
                raw[n][gram] = raw[n].get(gram, 0) + 1
        self.counts = {order: raw[order]}
        for n in range(1, order):  # N1+(• x): distinct words seen before x
            self.counts[n] = {}
            for gram in raw[n + 1]:
                self.counts[n][gram[1:]] = self.counts[n].get(gram[1:], 0) + 1
        self.discounts = {n: reference_discounts(list(self.counts[n].values()))
                          for n in range(1, order + 1)}
        self.total = {n: {} for n in range(1, order + 1)}
        self.n_k = {n: {} for n in range(1, order + 1)}
        for n in range(1, order + 1):
            for gram, c in self.counts[n].items():
                h = gram[:-1]
                self.total[n][h] = self.total[n].get(h, 0) + c
                nk = self.n_k[n].setdefault(h, [0, 0, 0])
                nk[min(c, 3) - 1] += 1

    def prob(self, context, w):
        history = tuple([EOS] * (self.N - 1) + [int(t) for t in context])
        p = 1.0 / self.V
        for n in range(1, self.N + 1):
            h = history[len(history) - (n - 1):] if n > 1 else ()
            total = self.total[n].get(h, 0)
            if total == 0:
                continue  # unseen history: back off fully
            d1, d2, d3 = self.discounts[n]
            n1, n2, n3 = self.n_k[n][h]
            c = self.counts[n].get(h + (w,), 0)
            discount = 0.0 if c == 0 else (d1, d2, d3)[min(c, 3) - 1]
            gamma = (d1 * n1 + d2 * n2 + d3 * n3) / total
            p = (c - discount) / total + gamma * p
        return p

    def distribution(self, context):
        return np.array([self.prob(context, w) for w in range(self.V)])

    def log_prob(self, stream):
        stream = [int(t) for t in stream]
        return np.array([math.log(self.prob(stream[:i], w)) for i, w in enumerate(stream)])


# -- agreement with the twin ---------------------------------------------------------------
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distribution_matches_brute_force_for_every_context(order):
    lm = KneserNeyLM(order).fit(TOY, TOY_V)
    ref = ReferenceKN(TOY, TOY_V, order)
    np.testing.assert_allclose(lm.discounts_, [ref.discounts[n] for n in range(1, order + 1)],
                               rtol=1e-15)
    contexts = itertools.product(range(TOY_V), repeat=order - 1)  # seen and unseen
    for context in itertools.chain(contexts, [(), (3,), (7, 7)]):  # and EOS-padded ones
        np.testing.assert_allclose(lm.distribution(np.array(context, dtype=np.int32)),
                                   ref.distribution(context), rtol=1e-12, atol=0)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_log_prob_matches_brute_force(order):
    lm = KneserNeyLM(order).fit(TOY, TOY_V)
    ref = ReferenceKN(TOY, TOY_V, order)
    stream = np.array([2, 3, 4, 7, 1, 0, 3, 5, 5, 3, 2, 6, 6, 1], dtype=np.int32)
    for s in (stream, TOY):
        np.testing.assert_allclose(lm.log_prob(s), ref.log_prob(s), rtol=1e-12, atol=0)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_toy_exercises_estimated_and_fallback_discounts(order):
    fallback = (KneserNeyLM(order).fit(TOY, TOY_V).discounts_ == [0.5, 1.0, 1.5]).all(axis=1)
    assert fallback.any() and not fallback.all()


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_random_streams_match_brute_force(data):
    vocab_size = data.draw(st.integers(2, 6), label="V")
    order = data.draw(st.integers(1, 4), label="order")
    ids = st.integers(0, vocab_size - 1)
    train = data.draw(st.lists(ids, min_size=1, max_size=30), label="train")
    lm = KneserNeyLM(order).fit(np.array(train), vocab_size)
    ref = ReferenceKN(train, vocab_size, order)
    for context in data.draw(st.lists(st.lists(ids, max_size=5), min_size=1, max_size=4)):
        np.testing.assert_allclose(lm.distribution(np.array(context, dtype=np.int64)),
                                   ref.distribution(context), rtol=1e-12, atol=0)


# -- hand-computed discounts ---------------------------------------------------------------
def test_discounts_from_count_of_counts():
    # n1 = 3, n2 = 2, n3 = 1, n4 = 1: Y = 3/7, D1 = Y, D2 = 2 − 3Y/2, D3+ = 3 − 4Y.
    counts = np.array([0, 1, 1, 1, 2, 2, 3, 4])
    np.testing.assert_allclose(modified_kn_discounts(counts), [3 / 7, 19 / 14, 9 / 7])
    train = np.repeat(np.arange(1, 8), counts[1:])  # an order-1 model uses raw counts
    np.testing.assert_allclose(KneserNeyLM(1).fit(train, 8).discounts_[0],
                               [3 / 7, 19 / 14, 9 / 7])


@pytest.mark.parametrize("counts", [
    [1, 1, 2, 3],                 # n4 = 0
    [2, 2, 3, 4, 5],              # n1 = 0
    [1, 2] + [3] * 10 + [4],      # D2 = 2 − 3·(1/3)·10 < 0
])
def test_discount_fallback(counts):
    np.testing.assert_array_equal(modified_kn_discounts(np.array(counts)), [0.5, 1.0, 1.5])


# -- invariants ----------------------------------------------------------------------------
@given(st.data())
@settings(max_examples=60, deadline=None)
def test_distributions_are_normalised_and_positive(data):
    vocab_size = data.draw(st.integers(2, 12), label="V")
    order = data.draw(st.integers(1, 5), label="order")
    ids = st.integers(0, vocab_size - 1)
    train = np.array(data.draw(st.lists(ids, min_size=1, max_size=60), label="train"))
    context = np.array(data.draw(st.lists(ids, max_size=7), label="context"), dtype=np.int64)
    for lm in (KneserNeyLM(order).fit(train, vocab_size), UnigramLM().fit(train, vocab_size)):
        p = lm.distribution(context)
        assert p.shape == (vocab_size,) and (p > 0).all()
        assert abs(p.sum() - 1.0) < 1e-9


@pytest.mark.parametrize("lm", [KneserNeyLM(1), KneserNeyLM(3), KneserNeyLM(5), UnigramLM()],
                         ids=["kn1", "kn3", "kn5", "unigram"])
def test_log_prob_is_log_of_distribution_at_every_position(lm):
    lm.fit(TOY, TOY_V)
    stream = np.array([3, 4, 7, 1, 2, 3, 0, 5, 5, 6, 1], dtype=np.int32)
    expected = [math.log(lm.distribution(stream[:i])[w]) for i, w in enumerate(stream)]
    np.testing.assert_allclose(lm.log_prob(stream), expected, rtol=1e-14, atol=0)
    assert lm.perplexity(stream) == pytest.approx(math.exp(-np.mean(expected)), rel=1e-14)


def test_distribution_uses_the_last_order_minus_one_ids():
    lm = KneserNeyLM(3).fit(TOY, TOY_V)
    np.testing.assert_array_equal(lm.distribution([6, 0, 2, 3]), lm.distribution([2, 3]))
    np.testing.assert_array_equal(lm.distribution([]), lm.distribution([EOS, EOS]))


def test_unigram_is_add_one():
    lm = UnigramLM().fit(TOY, TOY_V)
    counts = np.bincount(TOY, minlength=TOY_V)
    np.testing.assert_allclose(lm.distribution([]), (counts + 1) / (TOY.size + TOY_V),
                               rtol=1e-15)


def markov_chain(vocab_size, n, seed):
    """A random order-2 Markov chain with peaked transitions (Dirichlet(0.1) rows)."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(vocab_size, 0.1), size=(vocab_size, vocab_size)).cumsum(-1)
    out = [EOS, EOS]
    for u in rng.random(n):
        out.append(min(int(np.searchsorted(table[out[-2], out[-1]], u)), vocab_size - 1))
    return np.array(out[2:], dtype=np.int32)


def test_kn5_beats_unigram_on_a_markov_chain():
    stream = markov_chain(30, 24_000, seed=0)
    train, test = stream[:20_000], stream[20_000:]
    kn = KneserNeyLM(5).fit(train, 30).perplexity(test)
    unigram = UnigramLM().fit(train, 30).perplexity(test)
    assert kn < 0.5 * unigram


# -- persistence ---------------------------------------------------------------------------
@pytest.mark.parametrize("lm", [KneserNeyLM(1), KneserNeyLM(4), UnigramLM()],
                         ids=["kn1", "kn4", "unigram"])
def test_state_round_trip_through_persist(lm, tmp_path):
    lm.fit(TOY, TOY_V)
    params, arrays = lm.state()
    persist.save_state(tmp_path / "lm.npz", lm.kind, params, arrays)
    kind, params, arrays = persist.load_state(tmp_path / "lm.npz")
    loaded = type(lm).from_state(params, arrays)
    assert kind == lm.kind
    stream = np.array([2, 3, 7, 0, 4, 1, 5], dtype=np.int32)
    np.testing.assert_array_equal(loaded.log_prob(stream), lm.log_prob(stream))
    np.testing.assert_array_equal(loaded.distribution([7, 3]), lm.distribution([7, 3]))


def test_inconsistent_state_is_refused():
    params, arrays = KneserNeyLM(3).fit(TOY, TOY_V).state()
    with pytest.raises(ValueError, match="inconsistent KneserNeyLM state"):
        KneserNeyLM.from_state(params, {k: v for k, v in arrays.items() if k != "keys_3"})
    with pytest.raises(ValueError, match="level 2"):
        KneserNeyLM.from_state(params, {**arrays, "counts_2": arrays["counts_2"][:-1]})
    with pytest.raises(ValueError, match="inconsistent UnigramLM state"):
        UnigramLM.from_state({"vocab_size": TOY_V}, {"counts": np.ones(TOY_V + 1, np.int64)})


# -- input errors --------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [KneserNeyLM, UnigramLM])
def test_input_errors(cls):
    lm = cls()
    with pytest.raises(ValueError, match="not fitted"):
        lm.log_prob([2, 3])
    with pytest.raises(TypeError, match="integer token ids"):
        lm.fit(np.array([2.0, 3.0]), 8)
    with pytest.raises(ValueError, match="1-D"):
        lm.fit(np.array([[2, 3]]), 8)
    with pytest.raises(ValueError, match="empty"):
        lm.fit(np.array([], dtype=np.int32), 8)
    with pytest.raises(ValueError, match="id 8, outside \\[0, 8\\).*<unk>"):
        lm.fit(np.array([2, 8]), 8)
    with pytest.raises(ValueError, match="id -1"):
        lm.fit(np.array([2, -1]), 8)
    with pytest.raises(ValueError, match="vocab_size must be >= 2"):
        lm.fit(np.array([0, 0]), 1)
    with pytest.raises(TypeError, match="vocab_size must be an integer"):
        lm.fit(np.array([0, 1]), 8.0)
    lm.fit(TOY, TOY_V)
    with pytest.raises(ValueError, match="stream holds id 9"):
        lm.log_prob([2, 9])
    with pytest.raises(ValueError, match="stream is empty"):
        lm.perplexity([])
    with pytest.raises(ValueError, match="context must be a 1-D"):
        lm.distribution(np.zeros((1, 2), dtype=np.int64))


@pytest.mark.parametrize("order, error", [(0, ValueError), (2.5, TypeError), (True, TypeError)])
def test_order_must_be_a_positive_integer(order, error):
    with pytest.raises(error, match="order"):
        KneserNeyLM(order)


# -- the bundled corpus (corpora/README.md: KN-5 about 105, add-one unigram about 429) -----
def test_austen_baselines_match_the_corpus_recipe():
    corpus = load_corpus("austen")
    vocab_size = len(corpus.vocab)
    kn = KneserNeyLM(5).fit(corpus.train, vocab_size).perplexity(corpus.test)
    unigram = UnigramLM().fit(corpus.train, vocab_size).perplexity(corpus.test)
    assert kn == pytest.approx(105, rel=0.1)
    assert unigram == pytest.approx(429, rel=0.1)
