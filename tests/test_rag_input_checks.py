"""RAG's input checks at the Python boundary (issue 15): the query is checked like a
generation prompt, and a ``k`` above the number of passages costs nothing for the excess."""

import numpy as np
import pytest

from retgen_ref import _validation
from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.rag import BM25Retriever, RetgenRAG


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A model of a three-word corpus and a RAG over its ~100 training paragraphs."""
    rng = np.random.default_rng(0)
    words = np.array(["a", "b", "c"])
    paragraphs = [" ".join(rng.choice(words, rng.integers(3, 9))) for _ in range(120)]
    folder = tmp_path_factory.mktemp("toy")
    (folder / "toy.txt").write_text("\n".join(paragraphs) + "\n")
    corpus = load_corpus(folder)
    model = RetgenLM(index="flat", resolutions=(1, 2)).fit(corpus)
    passages = corpus.paragraphs("train")
    retriever = BM25Retriever().fit(passages, len(corpus.vocab))
    rag = RetgenRAG(model, retriever, passages, k=3, query_window=8, chunk=4).fit()
    return model, rag


def _with_k(rag, k):
    """``rag`` with another ``k`` and the same fitted mixture and τ_η."""
    other = RetgenRAG(rag.model, rag.retriever, rag.passages, k=k, query_window=8, chunk=4)
    other.mixture_, other.tau_eta_ = rag.mixture_, rag.tau_eta_
    return other


@pytest.mark.parametrize("query,message", [
    ("", "the query is empty"), (" \n ", "the query is empty"), ([], "the query is empty"),
    ("zz yy", "no word of the query is in the model's vocabulary \\('zz', 'yy'\\)"),
])
def test_empty_or_unknown_query_is_refused(toy, query, message):
    _, rag = toy
    with pytest.raises(ValueError, match=message):
        rag.retrieve(query)
    with pytest.raises(ValueError, match=message):
        rag.generate(query, 2)


def test_query_with_some_unknown_words_lists_them(toy):
    _, rag = toy
    generation, ids, _ = rag.generate("a zz b", 2)
    assert generation.unknown_words == ["zz"] and len(ids) == rag.k


def test_k_above_the_passages_is_capped_so_no_padding_is_scored(toy):
    model, rag = toy
    n = len(rag.passages)
    everything, huge = _with_k(rag, n), _with_k(rag, 100_000)
    assert huge.k == n
    x, y = model.vocab.encode(["a", "c"]), model.vocab.encode(["b", "a"])
    scored = huge.score_chunks(np.concatenate([x, y]), [2], [4])
    assert scored.passage_P.shape[2] == n and scored.scores.shape == (1, n)
    assert huge.log_marginals(x, y) == everything.log_marginals(x, y)
    assert sorted(huge.retrieve("a b")[0]) == list(range(n))


def test_scoring_that_would_not_fit_in_memory_is_refused_before_work(toy, monkeypatch):
    _, rag = toy
    monkeypatch.setattr(_validation, "available_memory", lambda: 2 ** 20)
    monkeypatch.setattr(_validation, "ALWAYS_FITS", 0)  # the check is skipped under 64 MiB
    with pytest.raises(ValueError, match="retrieve fewer passages \\(k\\) or score fewer"):
        _with_k(rag, 50).fit(max_tokens=500)
