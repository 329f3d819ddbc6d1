"""Dense retrieval over paragraph embeddings (``rag_math_notes_part5.md`` §2, DPR).

The note's bi-encoder maps a query and a passage into one space, ``v_q = E_Q(x)``,
``v_z = E_D(z)``, and scores them by the inner product ``v_qᵀ v_z``, found by MIPS. Here
both encoders are the same untrained map built from the language model's word vectors
(:mod:`retgen_ref.lm.word_vectors`): a text's embedding is the weighted mean of its words'
vectors, scaled to unit length,

    v(d) = u / ‖u‖,      u = Σ_{t ∈ d} a_t v(t),

with ``a_t = 1`` (``weighting="mean"``) or ``a_t = idf(t) = log(N / n_t)`` over the
collection (``weighting="idf"``, the default, chosen on valid in ``bench_rag.py``: frequent
words say little about a passage). A query word that no passage contains still has a word
vector, so it gets the largest idf, ``log N``, rather than none: matching across words the
passages do not share is what a dense retriever is for. ``<unk>`` and ``<eos>`` get
weight 0. The passage vectors go into one of the project's
inner-product indexes (``flat`` exact, ``hnsw``, ``ivf``, ``ivfpq``;
:func:`retgen_ref.lm.pattern_index.build_index`), so the score is the cosine of the two
embeddings.
"""

from __future__ import annotations

import numpy as np

from .._validation import check_int
from ..lm.pattern_index import INDEX_KINDS, build_index
from ..lm.tokenize import EOS, UNK
from .sparse import document_idf, term_matrix

WEIGHTINGS = ("idf", "mean")


class DenseRetriever:
    """Paragraph embeddings from word vectors, searched in a project index by inner product.

    Parameters
    ----------
    word_vectors : (V, d) float array, e.g. ``RetgenLM.word_vectors``.
    index : ``"flat"``, ``"hnsw"``, ``"ivf"`` or ``"ivfpq"``.
    weighting : ``"idf"`` or ``"mean"`` (module docstring).
    seed, index_params : passed to the index (e.g. ``ef_search=128`` for hnsw).
    """

    def __init__(self, word_vectors, index: str = "flat", weighting: str = "idf",
                 seed: int = 0, **index_params):
        word_vectors = np.asarray(word_vectors, np.float32)
        if word_vectors.ndim != 2 or not np.isfinite(word_vectors).all():
            raise ValueError("word_vectors must be a finite (vocab_size, dim) array")
        if index not in INDEX_KINDS:
            raise ValueError(f"index={index!r}; choose one of {INDEX_KINDS}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={weighting!r}; choose one of {WEIGHTINGS}")
        self.word_vectors, self.index_kind, self.weighting = word_vectors, index, weighting
        self.seed, self.index_params = seed, index_params

    def fit(self, docs, vocab_size: int | None = None) -> "DenseRetriever":
        """Embed ``docs`` (token-id sequences) and index them."""
        if not len(docs):
            raise ValueError("no documents to index")
        vocab_size = len(self.word_vectors) if vocab_size is None else vocab_size
        if vocab_size != len(self.word_vectors):
            raise ValueError(f"vocab_size={vocab_size} but there are {len(self.word_vectors)} "
                             "word vectors")
        counts = term_matrix(docs, vocab_size)
        self.n_docs_ = counts.shape[0]
        doc_freq = np.bincount(counts.indices, minlength=vocab_size)
        self.term_weights_ = document_idf(doc_freq, self.n_docs_) \
            if self.weighting == "idf" else np.ones(vocab_size)
        self.term_weights_[[UNK, EOS]] = 0.0
        self.index_ = build_index(self.index_kind, self._embed_counts(counts), self.seed,
                                  **self.index_params)
        return self

    def _embed_counts(self, counts) -> np.ndarray:
        u = np.asarray(counts.multiply(self.term_weights_[None, :]).tocsr() @ self.word_vectors,
                       np.float32)
        norms = np.linalg.norm(u, axis=1, keepdims=True)
        return u / np.where(norms > 0, norms, 1)

    def embed(self, texts) -> np.ndarray:
        """Unit embeddings ``(n, d)`` of token-id sequences (zero for a text with no known word)."""
        if not hasattr(self, "index_"):
            raise ValueError("the retriever is not fitted; call fit(docs) first")
        return self._embed_counts(term_matrix(texts, len(self.word_vectors)))

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of the ``k`` best documents per token-id query, best first."""
        return self.index_.search(self.embed(queries), check_int(k, "k"))
