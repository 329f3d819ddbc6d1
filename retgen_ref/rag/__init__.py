"""Retrieval-augmented generation on the bundled corpus (``rag_math_foundations.md``,
``rag_math_notes_part5.md``): sparse (TF-IDF, BM25) and dense retrievers over passages,
the retrieval metrics, and RAG-Sequence / RAG-Token with the RETGEN language model as
generator (:mod:`.retgen_rag`)."""

from .dense import DenseRetriever
from .metrics import mrr, ndcg_at_k, recall_at_k
from .passage_store import PassageStore
from .retgen_rag import RetgenRAG, retriever_distribution
from .sparse import BM25Retriever, TfidfRetriever, term_matrix

__all__ = ["BM25Retriever", "DenseRetriever", "PassageStore", "RetgenRAG", "TfidfRetriever",
           "mrr", "ndcg_at_k", "recall_at_k", "retriever_distribution", "term_matrix"]
