"""TF-IDF and BM25 retrievers (``retgen_ref.rag.sparse``) against the formulas by hand."""

import math

import numpy as np
import pytest

from retgen_ref.rag import BM25Retriever, TfidfRetriever

DOCS = [[1, 2, 2, 3], [2, 4], [5, 5, 5, 1, 6, 7]]
V = 8


def test_bm25_scores_equal_the_formula_by_hand():
    k1, b = 1.5, 0.75
    bm25 = BM25Retriever(k1, b).fit(DOCS, V)
    avgdl = (4 + 2 + 6) / 3

    def by_hand(query, d):
        score = 0.0
        for t in query:
            n = sum(t in doc for doc in DOCS)
            idf = math.log(1 + (3 - n + 0.5) / (n + 0.5))
            f = DOCS[d].count(t)
            score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(DOCS[d]) / avgdl))
        return score

    queries = [[2], [1, 5], [2, 2, 7], [0]]
    expected = [[by_hand(q, d) for d in range(3)] for q in queries]
    np.testing.assert_allclose(bm25.scores(queries), expected, rtol=1e-12)
    scores, ids = bm25.search(queries, 2)
    assert ids[0].tolist() == [0, 1]  # "2" twice in a doc of 4 beats once in a doc of 2
    assert ids[3].tolist() == [0, 1] and (scores[3] == 0).all()  # unseen term: ties by id


def test_bm25_saturates_in_term_frequency_and_never_goes_negative():
    docs = [[1] * f + [9] * (10 - f) for f in range(1, 10)] + [[2] * 10] * 20
    scores = BM25Retriever().fit(docs, 10).scores([[1], [2]])
    gains = np.diff(scores[0, :9])
    assert (gains > 0).all() and (np.diff(gains) < 0).all()
    assert (scores >= 0).all()  # term 2 is in 20 of 29 documents: the classic IDF is < 0


def test_tfidf_is_the_cosine_of_tf_times_idf_vectors():
    tfidf = TfidfRetriever().fit(DOCS, V)

    def vector(doc):
        out = np.zeros(V)
        for t in set(doc):
            n = sum(t in d for d in DOCS)
            out[t] = doc.count(t) / len(doc) * math.log(3 / n)
        return out

    query = [2, 5, 7, 0]
    expected = []
    for doc in DOCS:
        a, b = vector([t for t in query if t != 0]), vector(doc)  # 0 never seen: dropped
        expected.append(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    np.testing.assert_allclose(tfidf.scores([query])[0], expected, rtol=1e-12)


def test_k_beyond_the_collection_pads_with_minus_one():
    scores, ids = BM25Retriever().fit(DOCS, V).search([[5]], 5)
    assert ids[0].tolist()[:3] == [2, 0, 1] and ids[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(scores[0, 3:]).all()


@pytest.mark.parametrize("call,message", [
    (lambda: BM25Retriever(b=1.5), "b="),
    (lambda: BM25Retriever(k1=-1), "k1="),
    (lambda: BM25Retriever().fit([], V), "no documents"),
    (lambda: BM25Retriever().fit([[1, 99]], V), r"token ids must be in \[0, 8\)"),
    (lambda: TfidfRetriever().scores([[1]]), "not fitted"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
