"""Word vectors learned from the training split itself: PPMI + truncated SVD.

``retgen.md`` §3.2 builds every context embedding from ``embed(x_k)``, a vector per word.
No pretrained model is downloaded; the vectors come from the training tokens (Levy,
Goldberg & Dagan 2015):

1. co-occurrence counts ``C[w, c]`` of words within ``window`` positions, weighted by
   ``1 / distance``;
2. positive pointwise mutual information with context-distribution smoothing ``α``:
   ``PPMI[w, c] = max(0, log(C[w, c] · Σ C^α / (C[w, ·] · C[·, c]^α)))``;
3. the rank-``d`` truncated SVD ``PPMI ≈ U S Vᵀ`` (scipy's ``svds``) and vectors
   ``U S^{1/2}``, scaled to unit length.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds


def cooccurrence(stream: np.ndarray, vocab_size: int, window: int) -> sp.csr_matrix:
    """Symmetric ``1/distance``-weighted co-occurrence counts, ``(V, V)`` sparse."""
    stream = np.asarray(stream, np.int64)
    rows, cols, vals = [], [], []
    for dist in range(1, window + 1):
        left, right = stream[:-dist], stream[dist:]
        rows += [left, right]
        cols += [right, left]
        vals += [np.full(2 * len(left), 1.0 / dist)]
    matrix = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(vocab_size, vocab_size))
    return matrix.tocsr()  # duplicates are summed


def ppmi(counts: sp.csr_matrix, alpha: float = 0.75) -> sp.csr_matrix:
    """Positive PMI of a co-occurrence matrix with context smoothing ``alpha``."""
    counts = counts.tocoo()
    row_sums = np.asarray(counts.sum(axis=1)).ravel()
    col_smoothed = np.asarray(counts.sum(axis=0)).ravel() ** alpha
    pmi = np.log(counts.data * col_smoothed.sum()
                 / (row_sums[counts.row] * col_smoothed[counts.col]))
    keep = pmi > 0
    return sp.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape)


def word_vectors(stream: np.ndarray, vocab_size: int, dim: int = 64, window: int = 2,
                 alpha: float = 0.75, seed: int = 0) -> np.ndarray:
    """Unit word vectors ``(V, dim)`` float32 from PPMI + truncated SVD of ``stream``.

    Words that never occur get the zero vector (they match nothing).
    """
    if not 1 <= dim < vocab_size:
        raise ValueError(f"dim={dim} must be between 1 and vocab_size - 1 = {vocab_size - 1}")
    matrix = ppmi(cooccurrence(stream, vocab_size, window), alpha)
    v0 = np.random.default_rng(seed).standard_normal(min(matrix.shape))
    u, s, _ = svds(matrix, k=dim, v0=v0)
    order = np.argsort(s)[::-1]
    vectors = u[:, order] * np.sqrt(s[order])
    # The SVD's signs are arbitrary; fix them so the vectors are reproducible.
    vectors *= np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(dim)])
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)
