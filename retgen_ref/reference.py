"""Slow, obviously-correct pure-NumPy twins of the kernels, used by the tests.

Everything here is computed in float64 with the most direct formula, so a kernel that
agrees with its twin (to float32 rounding) is right.
"""

from __future__ import annotations

import numpy as np


def pairwise_scores(xq: np.ndarray, xb: np.ndarray, metric: str) -> np.ndarray:
    """(nq, n) squared L2 distances, inner products or cosine similarities in float64."""
    q = np.asarray(xq, dtype=np.float64)
    b = np.asarray(xb, dtype=np.float64)
    if metric == "l2":
        return ((q[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), np.finfo(float).tiny)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), np.finfo(float).tiny)
    # summed per pair, as l2 above, not by BLAS: a matrix product may round two equal
    # rows differently by their position in its tiles, turning a tie into a 1-ulp gap
    return np.stack([(b * row).sum(axis=1) for row in q]).reshape(len(q), len(b))


def exact_search(xq: np.ndarray, xb: np.ndarray, k: int, metric: str):
    """Reference k-NN: sort every stored vector by (score, id); pad past n with -1/∓inf."""
    scores = pairwise_scores(xq, xb, metric)
    key = scores if metric == "l2" else -scores
    order = np.lexsort((np.broadcast_to(np.arange(len(xb)), key.shape), key), axis=-1)
    order = order[:, :k]
    D = np.take_along_axis(scores, order, axis=1)
    nq, kept = order.shape
    pad = np.inf if metric == "l2" else -np.inf
    D_out = np.full((nq, k), pad)
    I_out = np.full((nq, k), -1, dtype=np.int64)
    D_out[:, :kept] = D
    I_out[:, :kept] = order
    return D_out, I_out
