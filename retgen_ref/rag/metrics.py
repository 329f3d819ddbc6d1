"""Retrieval metrics of ``rag_math_foundations.md`` ("Evaluation Metrics"): recall@k, MRR
and NDCG@k over ranked result lists.

``ranked`` is ``(n_queries, m)`` integer ids, best first, each at most once per row
(``-1`` pads a short list, as the indexes return it). ``relevant`` gives, per query, the
relevant ids with their graded relevance: a dict ``{id: rel}``, a set or list of ids
(relevance 1 each), or one id.

    recall@k = |top-k ∩ R| / |R|                      (0 when R is empty)
    MRR      = mean_q 1 / rank_q                       (0 when no relevant id is ranked)
    DCG@k    = Σ_{i=1..k} (2^{rel_i} − 1) / log2(i + 1)
    NDCG@k   = DCG@k / IDCG@k,  IDCG@k from all judged ids in their best order (0 if 0)

Each function returns the mean over queries (``per_query=True``: the array of values).
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int, repeated_id


def _judgements(relevant, n_queries: int) -> list[dict]:
    if len(relevant) != n_queries:
        raise ValueError(f"{len(relevant)} relevance judgements for {n_queries} ranked lists; "
                         "give one per query")
    out = []
    for item in relevant:
        if isinstance(item, dict):
            out.append({int(k): float(v) for k, v in item.items()})
        elif isinstance(item, (set, frozenset, list, tuple, np.ndarray)):
            out.append({int(k): 1.0 for k in item})
        else:
            out.append({int(item): 1.0})
    return out


def _ranked(ranked) -> np.ndarray:
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or not np.issubdtype(ranked.dtype, np.integer):
        raise ValueError("ranked must be a 2-D integer array (n_queries, m), best first")
    repeated = repeated_id(ranked)
    if repeated:
        raise ValueError(f"ranked list {repeated[0]} holds id {repeated[1]} twice; a ranking "
                         "lists each result once")
    return ranked


def _mean(values: list, per_query: bool):
    values = np.asarray(values, dtype=np.float64)
    return values if per_query else float(values.mean()) if len(values) else 0.0


def recall_at_k(ranked, relevant, k: int, per_query: bool = False):
    """Fraction of each query's relevant ids found in its first ``k`` results."""
    ranked, k = _ranked(ranked), check_int(k, "k")
    values = []
    for row, judged in zip(ranked, _judgements(relevant, len(ranked))):
        hits = {int(i) for i in row[:k] if i >= 0 and judged.get(int(i), 0) > 0}
        n_relevant = sum(v > 0 for v in judged.values())
        values.append(len(hits) / n_relevant if n_relevant else 0.0)
    return _mean(values, per_query)


def mrr(ranked, relevant, per_query: bool = False):
    """Mean reciprocal rank of the first relevant id (0 for a query with none ranked)."""
    ranked = _ranked(ranked)
    values = []
    for row, judged in zip(ranked, _judgements(relevant, len(ranked))):
        rank = next((i + 1 for i, doc in enumerate(row)
                     if doc >= 0 and judged.get(int(doc), 0) > 0), None)
        values.append(1.0 / rank if rank else 0.0)
    return _mean(values, per_query)


def _dcg(gains: np.ndarray) -> float:
    return float(((2.0 ** gains - 1) / np.log2(np.arange(2, len(gains) + 2))).sum())


def ndcg_at_k(ranked, relevant, k: int, per_query: bool = False):
    """NDCG@k with gain ``2^rel − 1``; the ideal order is over every judged id."""
    ranked, k = _ranked(ranked), check_int(k, "k")
    values = []
    for row, judged in zip(ranked, _judgements(relevant, len(ranked))):
        gains = np.array([judged.get(int(doc), 0.0) if doc >= 0 else 0.0 for doc in row[:k]])
        ideal = _dcg(np.sort(np.array(list(judged.values()), dtype=np.float64))[::-1][:k])
        values.append(_dcg(gains) / ideal if ideal > 0 else 0.0)
    return _mean(values, per_query)
