"""Retrieval metrics (``retgen_ref.rag.metrics``) against cases computed by hand."""

import math

import numpy as np
import pytest

from retgen_ref.rag import mrr, ndcg_at_k, recall_at_k

RANKED = np.array([[3, 1, 4, 2, 5],
                   [9, 2, 6, -1, -1],
                   [5, 3, 6, 8, 9]])


def test_recall_at_k_by_hand():
    relevant = [{1, 5}, {7}, {8, 3, 0}]
    # query 0: top-2 = {3, 1} holds 1 of {1, 5}; top-5 holds both
    # query 1: 7 never ranked; query 2: top-2 = {5, 3} holds 3 (1 of 3), top-5 holds 3, 8
    assert recall_at_k(RANKED, relevant, 2, per_query=True).tolist() == [0.5, 0.0, 1 / 3]
    assert recall_at_k(RANKED, relevant, 5) == pytest.approx((1 + 0 + 2 / 3) / 3)


def test_mrr_by_hand():
    # first relevant at ranks 2, none (padding is skipped), 4
    assert mrr(RANKED, [1, 7, 8], per_query=True).tolist() == [0.5, 0.0, 0.25]
    assert mrr(RANKED, [1, 7, 8]) == pytest.approx(0.25)


def test_ndcg_by_hand():
    relevant = [{4: 2, 5: 1, 0: 3}]
    # ranked 3, 1, 4, 2, 5: gains 0, 0, 2^2 − 1 = 3 at rank 3, 0, 1 at rank 5
    dcg = 3 / math.log2(4) + 1 / math.log2(6)
    # ideal over every judged id: 3, 2, 1 -> 7, 3, 1 at ranks 1, 2, 3
    idcg = 7 / math.log2(2) + 3 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED[:1], relevant, 5) == pytest.approx(dcg / idcg)
    # at k = 2 nothing relevant is ranked, and the ideal keeps its best two
    assert ndcg_at_k(RANKED[:1], relevant, 2) == 0.0


def test_the_ideal_ranking_scores_one_and_metrics_stay_in_unit_interval():
    rng = np.random.default_rng(0)
    for _ in range(50):
        ranked = rng.permutation(20)[None, :10]
        judged = {int(i): int(rng.integers(0, 4)) for i in rng.choice(20, 6, replace=False)}
        for metric in (lambda r, j: ndcg_at_k(r, j, 10), mrr, lambda r, j: recall_at_k(r, j, 10)):
            assert 0.0 <= metric(ranked, [judged]) <= 1.0
        ideal = np.array([sorted(judged, key=judged.get, reverse=True)])
        if max(judged.values()) > 0:
            assert ndcg_at_k(ideal, [judged], 10) == pytest.approx(1.0)


@pytest.mark.parametrize("call,message", [
    (lambda: mrr(RANKED, [1, 2]), "one per query"),
    (lambda: mrr(np.array([1, 2, 3]), [1]), "2-D integer"),
    (lambda: recall_at_k(RANKED, [1, 2, 3], 0), "k"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("metric", [lambda r, j: recall_at_k(r, j, 3), mrr,
                                    lambda r, j: ndcg_at_k(r, j, 3)])
def test_a_ranking_that_lists_an_id_twice_is_refused(metric):
    # counted twice, id 4 would give NDCG@3 = 2.13 > 1
    with pytest.raises(ValueError, match="twice"):
        metric(np.array([[4, 4, 4]]), [{4: 1}])
