"""Online learning (``retgen.md`` §9.1) gives exactly the model built from all text at once.

The pattern tables' byte keys once came out in native byte order for arrays under NumPy's
256 KiB buffer and big-endian above it, so once a table passed 256 KiB the contexts of a
small update were not found in it: on the full Austen model every update appended stored
patterns again as "new" rows. These tests reach those sizes: tables up to the whole Austen
training split (785k tokens, 667k patterns at r = 4), updated by documents cut at random
points, against an independent path: the store counted from all the text in one sort.

The model's word vectors come from the whole training split, as in a model trained on it:
every word then has its own vector, and no two stored patterns tie in similarity by
accident (words never seen share the zero vector, and ties at the k-th neighbour would be
broken by row order, which online and batch building legitimately differ in).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.lm.embed import ContextEncoder
from retgen_ref.lm.ngram import UnigramLM
from retgen_ref.lm.patterns import PatternTable, extract_patterns, pattern_ids
from retgen_ref.lm.word_vectors import word_vectors

SCORED = slice(0, 300)  # test tokens whose probabilities are compared


@pytest.fixture(scope="module")
def austen():
    """The bundled corpus and a flat-index model with full-corpus word vectors."""
    corpus = load_corpus("austen")
    model = RetgenLM(index="flat", k_max=32).fit(corpus.with_train_prefix(20_000))
    cfg = model.config
    model.word_vectors = word_vectors(corpus.train, len(model.vocab), cfg.word_dim,
                                      cfg.window, seed=cfg.seed)
    model.encoder = ContextEncoder(model.word_vectors, dict(cfg.embedding), cfg.decay,
                                   cfg.history)
    return corpus, model


def store(model: RetgenLM, segments: list) -> RetgenLM:
    """A copy of ``model`` whose pattern stores and unigram floor count ``segments``."""
    out = copy.copy(model)
    out._build_levels(segments)
    out.unigram = UnigramLM().fit(np.concatenate(segments), len(model.vocab))
    return out


def canonical(table: PatternTable):
    """``(contexts, row lengths, tokens, counts)`` with rows in lexicographic order."""
    order = np.lexsort(table.contexts.T[::-1]) if table.resolution else np.arange(len(table))
    rows = [table.next_token_counts(i) for i in order]
    return (table.contexts[order], np.array([len(t) for t, _ in rows]),
            np.concatenate([t for t, _ in rows]), np.concatenate([c for _, c in rows]))


def assert_same_model(online: RetgenLM, batch: RetgenLM, test: np.ndarray) -> None:
    for r, level in batch.levels.items():
        table = online.levels[r].table
        assert len(np.unique(table.contexts, axis=0)) == len(table), f"r={r}: repeated rows"
        assert online.levels[r].index.ntotal == len(table)
        for got, want in zip(canonical(table), canonical(level.table)):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(online.unigram.counts_, batch.unigram.counts_)
    np.testing.assert_allclose(online.log_prob(test[SCORED]), batch.log_prob(test[SCORED]),
                               rtol=0, atol=1e-9)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@example(size=1.0, base=0.97, cuts=[0.5], one_call=True)     # the full split, a small update
@example(size=0.2, base=0.999, cuts=[], one_call=False)      # 150k tokens, 157 added
@given(size=st.floats(0.01, 1.0), base=st.floats(0.05, 0.999),
       cuts=st.lists(st.floats(0.0, 1.0), max_size=3), one_call=st.booleans())
def test_online_update_equals_batch_build(austen, size, base, cuts, one_call):
    corpus, model = austen
    train = corpus.train[:max(2_000, int(size * len(corpus.train)))]
    start = int(base * len(train))
    bounds = sorted({start, len(train), *(start + int(c * (len(train) - start)) for c in cuts)})
    documents = [train[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    online = store(model, [train[:start]])
    if one_call:
        online.add_token_streams(documents)
    else:
        for document in documents:
            online.add_token_streams([document])
    assert_same_model(online, store(model, [train[:start], *documents]), corpus.test)


def test_known_contexts_are_found_in_a_table_past_256_kib(austen):
    """Every stored context is found from a one-row query, in a table of 1.2 MiB."""
    corpus, _ = austen
    table = extract_patterns(corpus.train[:100_000], 4)
    assert table.contexts.nbytes > 4 * 2 ** 18
    rows = np.random.default_rng(3).choice(len(table), 50, replace=False)
    for row in rows:
        assert pattern_ids(table, table.contexts[row][None])[0] == row
    np.testing.assert_array_equal(pattern_ids(table, table.contexts[rows]), rows)


def test_the_same_document_twice_adds_no_pattern_the_second_time(austen):
    corpus, model = austen
    online = store(model, [corpus.train[:100_000]])
    document = corpus.test[:19]
    first = online.add_token_streams([document])["new_patterns"]
    second = online.add_token_streams([document])["new_patterns"]
    assert sum(first.values()) > 0 and second == {r: 0 for r in online.levels}
