"""Retrieval-augmented generation on the bundled corpus (``rag_math_foundations.md``,
``rag_math_notes_part5.md``): so far the retrieval metrics and the sparse retrievers
(issue 9, in progress)."""

from .metrics import mrr, ndcg_at_k, recall_at_k
from .sparse import BM25Retriever, TfidfRetriever, term_matrix

__all__ = ["BM25Retriever", "TfidfRetriever", "mrr", "ndcg_at_k", "recall_at_k", "term_matrix"]
