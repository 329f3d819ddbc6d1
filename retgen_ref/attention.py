"""Softmax attention as retrieval (``retgen.md`` §2.1–2.2, Theorem 2.1).

Parametric attention (Theorem 2.1, Step 1)

    A(q) = Σ_i softmax_i(q·k_i / √d) v_i

equals retrieval attention over the database ``{(k_i, v_i)}`` with similarity
``s(q, k) = q·k`` and temperature ``τ = √d`` (Steps 2–4). :func:`softmax_attention`
computes the former; :func:`retrieval_attention` the latter, over every stored key (exact)
or over the top-k keys an index returns. :func:`dropped_mass` and
:func:`topk_error_bound` bound how far the top-k answer can be from the exact one.

Everything is float64, with the row maximum subtracted before ``exp``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validation import as_array, check_int, check_positive_float, repeated_id
from .index import FlatIndex

__all__ = [
    "RetrievalResult",
    "attention_weights",
    "dropped_mass",
    "multi_head_attention",
    "retrieval_attention",
    "softmax_attention",
    "topk_error_bound",
]


# -- validation helpers ---------------------------------------------------------------
def _stack(x, name: str) -> np.ndarray:
    """Validate ``x`` as a finite float64 array of shape ``(..., rows, columns)``."""
    try:
        ndim = np.ndim(x)
    except ValueError:  # ragged nested lists: as_array explains
        ndim = 2
    if ndim < 2:
        raise ValueError(f"{name} must have shape (..., rows, columns), got {ndim} dimension(s); "
                         "use x.reshape(1, -1) for a single vector")
    return as_array(x, name, ndim=ndim, dtype=np.float64)


def _broadcast_batch(**arrays: np.ndarray) -> None:
    """Raise ``ValueError`` unless the leading (batch) dimensions broadcast together."""
    try:
        np.broadcast_shapes(*(a.shape[:-2] for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{name} {a.shape}" for name, a in arrays.items())
        raise ValueError(
            f"batch dimensions (all but the last two) do not broadcast: {shapes}") from None


def _check_qkv(Q, K, V=None):
    Q, K = _stack(Q, "Q"), _stack(K, "K")
    if Q.shape[-1] != K.shape[-1]:
        raise ValueError(f"Q has {Q.shape[-1]} columns but K has {K.shape[-1]}; "
                         "queries and keys must have the same dimension d")
    if V is None:
        _broadcast_batch(Q=Q, K=K)
        return Q, K, None
    V = _stack(V, "V")
    if V.shape[-2] != K.shape[-2]:
        raise ValueError(f"K has {K.shape[-2]} rows (keys) but V has {V.shape[-2]}; "
                         "every key needs exactly one value")
    _broadcast_batch(Q=Q, K=K, V=V)
    return Q, K, V


def _scale(scale, d: int) -> float:
    """The score multiplier: ``scale``, ``1/√d`` by default."""
    return 1.0 / np.sqrt(d) if scale is None else check_positive_float(scale, "scale")


def _inverse_temperature(tau, d: int) -> float:
    """``1/τ``, with ``τ = √d`` by default (Theorem 2.1, Step 3), so it equals ``_scale``."""
    return 1.0 / np.sqrt(d) if tau is None else 1.0 / check_positive_float(tau, "tau")


def _check_ids(ids, nq: int, n: int, k: int | None = None) -> np.ndarray:
    """Validate an ``(nq, k)`` id array: rows of K or ``-1``, no repeats, ≥ 1 id per row."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers (rows of K, -1 for padding); got dtype {ids.dtype}")
    if ids.ndim != 2 or ids.shape[0] != nq or (k is not None and ids.shape[1] != k):
        want = f"({nq}, {k})" if k is not None else f"({nq}, k)"
        raise ValueError(f"ids must have shape {want} (one row per query), got {ids.shape}")
    ids = ids.astype(np.int64)
    bad = (ids < -1) | (ids >= n)
    if bad.any():
        q, j = np.argwhere(bad)[0]
        raise ValueError(f"ids[{q}, {j}] = {ids[q, j]} is neither a row of K (0..{n - 1}) "
                         "nor -1 padding; the index must be built over exactly the rows of K")
    empty = (ids < 0).all(axis=1)
    if empty.any():
        raise ValueError(f"query {np.argmax(empty)} has no ids (all -1); "
                         "at least one key per query is needed")
    repeated = repeated_id(ids)
    if repeated:
        raise ValueError(f"ids row {repeated[0]} selects key {repeated[1]} more than once; "
                         "each key may be selected at most once")
    return ids


# -- kernels (inputs already validated) ----------------------------------------------
def _softmax_rows(S: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of ``S``, in place; ``-inf`` scores get weight 0."""
    S -= S.max(axis=-1, keepdims=True)
    np.exp(S, out=S)
    S /= S.sum(axis=-1, keepdims=True)
    return S


def _weights(Q: np.ndarray, K: np.ndarray, scale: float) -> np.ndarray:
    S = np.matmul(Q, np.swapaxes(K, -1, -2))
    S *= scale
    return _softmax_rows(S)


# -- public API -----------------------------------------------------------------------
def attention_weights(Q, K, scale=None) -> np.ndarray:
    """Attention weights ``P = softmax(Q Kᵀ · scale)`` (``retgen.md`` §2.2, Step 1).

    Parameters
    ----------
    Q : array_like, shape (..., nq, d)
        Queries.
    K : array_like, shape (..., n, d)
        Keys; batch dimensions broadcast against those of ``Q``.
    scale : float > 0, optional
        Score multiplier; ``1/√d`` by default.

    Returns
    -------
    ndarray, shape (..., nq, n), float64
        ``P[..., j, i] = exp(q_j·k_i·scale) / Σ_l exp(q_j·k_l·scale)``; every row sums to 1.
    """
    Q, K, _ = _check_qkv(Q, K)
    return _weights(Q, K, _scale(scale, Q.shape[-1]))


def softmax_attention(Q, K, V, scale=None) -> np.ndarray:
    """Scaled dot-product attention ``softmax(Q Kᵀ · scale) V`` (``retgen.md`` §2.2, Step 1).

    ``A(q) = Σ_i exp(q·k_i/√d) v_i / Σ_j exp(q·k_j/√d)``, computed in float64 with the row
    maximum subtracted before ``exp``, so large scores neither overflow nor lose precision.

    Parameters
    ----------
    Q : array_like, shape (..., nq, d)
        Queries.
    K : array_like, shape (..., n, d)
        Keys.
    V : array_like, shape (..., n, dv)
        Values, one per key. Batch dimensions of ``Q``, ``K`` and ``V`` broadcast.
    scale : float > 0, optional
        Score multiplier; ``1/√d`` by default.

    Returns
    -------
    ndarray, shape (..., nq, dv), float64
    """
    Q, K, V = _check_qkv(Q, K, V)
    return _weights(Q, K, _scale(scale, Q.shape[-1])) @ V


def multi_head_attention(X_q, X_kv, Wq, Wk, Wv, Wo, n_heads: int) -> np.ndarray:
    """Multi-head attention: project, split into heads, attend per head, concat, project.

    With row vectors, ``Q = X_q Wq``, ``K = X_kv Wk``, ``V = X_kv Wv``; head ``h`` uses
    columns ``h·d_head … (h+1)·d_head − 1`` of ``Q`` and ``K`` (and the matching block of
    ``d_v`` columns of ``V``), computes ``softmax(Q_h K_hᵀ / √d_head) V_h``, and the heads'
    outputs, concatenated in head order, are multiplied by ``Wo``. Self-attention is
    ``X_kv = X_q``.

    Parameters
    ----------
    X_q : array_like, shape (..., nq, d_q)
        Inputs the queries come from.
    X_kv : array_like, shape (..., n, d_kv)
        Inputs the keys and values come from; batch dimensions broadcast with ``X_q``.
    Wq : array_like, shape (d_q, n_heads · d_head)
    Wk : array_like, shape (d_kv, n_heads · d_head)
    Wv : array_like, shape (d_kv, n_heads · d_v)
    Wo : array_like, shape (n_heads · d_v, d_out)
    n_heads : int
        Number of heads; must divide the column counts of ``Wq`` and ``Wv``.

    Returns
    -------
    ndarray, shape (..., nq, d_out), float64
    """
    n_heads = check_int(n_heads, "n_heads")
    X_q, X_kv = _stack(X_q, "X_q"), _stack(X_kv, "X_kv")
    _broadcast_batch(X_q=X_q, X_kv=X_kv)
    Wq, Wk, Wv, Wo = (as_array(W, name, ndim=2, dtype=np.float64)
                      for W, name in ((Wq, "Wq"), (Wk, "Wk"), (Wv, "Wv"), (Wo, "Wo")))
    for W, name, rows, source in ((Wq, "Wq", X_q.shape[-1], "X_q"),
                                  (Wk, "Wk", X_kv.shape[-1], "X_kv"),
                                  (Wv, "Wv", X_kv.shape[-1], "X_kv"),
                                  (Wo, "Wo", Wv.shape[1], "Wv")):
        if W.shape[0] != rows:
            raise ValueError(f"{name} has {W.shape[0]} rows but {source} has {rows} columns")
    if Wk.shape[1] != Wq.shape[1]:
        raise ValueError(f"Wq has {Wq.shape[1]} columns but Wk has {Wk.shape[1]}; "
                         "queries and keys must have the same dimension")
    for W, name in ((Wq, "Wq"), (Wv, "Wv")):
        if W.shape[1] % n_heads:
            raise ValueError(f"{name} has {W.shape[1]} columns, not divisible by n_heads={n_heads}")

    def split(X):  # (..., rows, n_heads·c) -> (..., n_heads, rows, c)
        return np.moveaxis(X.reshape(*X.shape[:-1], n_heads, -1), -2, -3)

    Q, K, V = split(X_q @ Wq), split(X_kv @ Wk), split(X_kv @ Wv)
    heads = _weights(Q, K, 1.0 / np.sqrt(Q.shape[-1])) @ V  # (..., n_heads, nq, d_v)
    concat = np.moveaxis(heads, -3, -2)                     # (..., nq, n_heads, d_v)
    return concat.reshape(*concat.shape[:-2], -1) @ Wo


class RetrievalResult(NamedTuple):
    """What :func:`retrieval_attention` returns; unpacks as ``output, ids``.

    Attributes
    ----------
    output : ndarray, shape (nq, dv), float64
        The attention output of every query.
    ids : ndarray, shape (nq, k), int64
        The rows of ``K`` each query attended over, in the index's order, ``-1`` where the
        index returned fewer than ``k`` keys. With ``k=None``: every row, ``0 … n−1``
        (a read-only view). Pass to :func:`dropped_mass` for the neglected softmax mass.
    """

    output: np.ndarray
    ids: np.ndarray


def retrieval_attention(Q, K, V, k=None, index=None, tau=None) -> RetrievalResult:
    """Retrieval attention over the database ``{(k_i, v_i)}`` (``retgen.md`` §2.2).

    ``A_ret(q) = Σ_{i∈S} exp(s(q, k_i)/τ) v_i / Σ_{j∈S} exp(s(q, k_j)/τ)`` with
    ``s(q, k) = q·k`` and ``τ = √d`` by default (Theorem 2.1, Step 3). With ``k=None``, ``S``
    is every key and the result equals :func:`softmax_attention` (Theorem 2.1, Step 4).
    With ``k`` given, ``S`` is the top-k keys by inner product that ``index`` returns and the
    softmax is renormalised over ``S``. The index only selects: scores are recomputed
    exactly in float64 from ``K``, whatever precision or metric the index uses.

    Parameters
    ----------
    Q : array_like, shape (nq, d)
        Queries (a single head).
    K : array_like, shape (n, d)
        Keys.
    V : array_like, shape (n, dv)
        Values, one per key.
    k : int >= 1, optional
        Number of keys to retrieve per query; ``None`` scores every key. ``k > n`` is
        allowed: the index pads with ``-1``, which gets weight 0.
    index : object, optional
        Anything with ``search(Q, k) -> (D, I)`` whose ids ``I`` (``(nq, k)``, ``-1`` for
        padding) are rows of ``K``, e.g. an approximate index built over ``K``. If it has
        ``d`` or ``ntotal`` attributes they must match ``K``. Default: an exact
        ``FlatIndex(d, "ip")`` over ``K`` (stored as float32, so keys whose scores tie to
        float32 precision may be swapped at the boundary of ``S``).
    tau : float > 0, optional
        Temperature; ``√d`` by default.

    Returns
    -------
    RetrievalResult
        ``(output (nq, dv), ids (nq, k))``.

    Notes
    -----
    The dropped mass ``ε`` is not returned: it needs every score, which retrieval exists to
    avoid. Compute it with ``dropped_mass(Q, K, result.ids, tau)``; then
    ``topk_error_bound(ε, V)`` bounds ``‖A − A_k‖`` per query.
    """
    Q = as_array(Q, "Q", ndim=2, dtype=np.float64)
    K = as_array(K, "K", ndim=2, dtype=np.float64, d=Q.shape[1],
                 d_name="d (the columns of Q)")
    V = as_array(V, "V", ndim=2, dtype=np.float64)
    (nq, d), n = Q.shape, K.shape[0]
    if V.shape[0] != n:
        raise ValueError(f"K has {n} rows (keys) but V has {V.shape[0]}; "
                         "every key needs exactly one value")
    inv_tau = _inverse_temperature(tau, d)
    if k is None:
        if index is not None:
            raise ValueError("index only selects the top-k keys; pass k as well, "
                             "or drop index to score every key")
        return RetrievalResult(_weights(Q, K, inv_tau) @ V,
                               np.broadcast_to(np.arange(n, dtype=np.int64), (nq, n)))
    k = check_int(k, "k")
    if index is None:
        index = FlatIndex(d, "ip")
        index.add(K)
    else:
        index_d, ntotal = getattr(index, "d", d), getattr(index, "ntotal", n)
        if index_d != d:
            raise ValueError(f"index was built for d={index_d} but K has {d} columns; "
                             "build the index over K")
        if ntotal != n:
            raise ValueError(f"index holds {ntotal} vectors but K has {n} rows; "
                             "its ids must be the rows of K")
    ids = _check_ids(index.search(Q, k)[1], nq, n, k)
    valid = ids >= 0
    rows = np.where(valid, ids, 0)
    S = np.einsum("qd,qkd->qk", Q, K[rows]) * inv_tau
    S[~valid] = -np.inf
    W = _softmax_rows(S)
    return RetrievalResult(np.einsum("qk,qkv->qv", W, V[rows]), ids)


def dropped_mass(Q, K, ids, tau=None) -> np.ndarray:
    """Softmax mass ``ε = 1 − Σ_{i∈S} p_i`` that the selected keys ``S`` leave out.

    ``p_i = exp(q·k_i/τ) / Σ_j exp(q·k_j/τ)`` over all ``n`` keys (``retgen.md`` §2.2).
    Computed as ``Σ_{i∉S} e_i / Σ_j e_j`` with ``e_i = exp(q·k_i/τ − max_j q·k_j/τ)``, not as
    ``1 − Σ_S p_i``, so a tiny ``ε`` keeps its relative precision instead of cancelling.

    Parameters
    ----------
    Q : array_like, shape (nq, d)
        Queries.
    K : array_like, shape (n, d)
        Keys.
    ids : array_like of int, shape (nq, k)
        The keys kept for each query (e.g. ``retrieval_attention(...).ids``); ``-1`` is
        padding. Each row needs at least one key and no repeats.
    tau : float > 0, optional
        Temperature; ``√d`` by default.

    Returns
    -------
    ndarray, shape (nq,), float64
        ``ε`` per query, in ``[0, 1]``.
    """
    Q = as_array(Q, "Q", ndim=2, dtype=np.float64)
    K = as_array(K, "K", ndim=2, dtype=np.float64, d=Q.shape[1],
                 d_name="d (the columns of Q)")
    ids = _check_ids(ids, Q.shape[0], K.shape[0])
    S = (Q @ K.T) * _inverse_temperature(tau, Q.shape[1])
    S -= S.max(axis=1, keepdims=True)
    E = np.exp(S)
    kept = np.zeros(E.shape, dtype=bool)
    q, j = np.nonzero(ids >= 0)
    kept[q, ids[q, j]] = True
    return np.where(kept, 0.0, E).sum(axis=1) / E.sum(axis=1)


def topk_error_bound(eps, V):
    """Bound ``2ε · maxᵢ‖vᵢ‖`` on ``‖A − A_k‖``, the error of attending over a subset only.

    Derivation. Let ``p_i`` be the softmax weights over all keys, ``S`` the kept keys, ``D``
    the dropped ones and ``ε = Σ_{i∈D} p_i``. With ``m_S = Σ_{i∈S} p_i v_i / (1−ε)`` (the
    renormalised attention over ``S``, i.e. ``A_k``) and ``m_D = Σ_{i∈D} p_i v_i / ε``,

        A = Σ_i p_i v_i = (1−ε) m_S + ε m_D,   so   A − A_k = ε (m_D − m_S).

    ``m_S`` and ``m_D`` are convex combinations of the ``v_i``, so each has norm at most
    ``max_i‖v_i‖`` and

        ‖A − A_k‖ = ε ‖m_D − m_S‖ ≤ 2ε · max_i ‖v_i‖.

    (If ``ε = 0``, ``m_D`` is undefined but ``A = A_k``.) Both means lie in the convex hull
    of the values, so also ``‖A − A_k‖ ≤ ε · diam{v_i}``, which is sharper when the values
    share a large common offset; it is not computed here (``O(n²)``). The bound holds for
    any ``S``, hence also for the keys an approximate index returns. It is tight: two keys
    with values ``±u`` and ``S`` the first give ``‖A − A_k‖ = 2ε‖u‖`` exactly.

    Parameters
    ----------
    eps : float or array_like, shape (nq,)
        Dropped mass per query, in ``[0, 1]`` (see :func:`dropped_mass`).
    V : array_like, shape (n, dv)
        Values.

    Returns
    -------
    float or ndarray, shape (nq,)
        The bound, shaped like ``eps``.
    """
    scalar = np.ndim(eps) == 0
    e = as_array(np.atleast_1d(eps), "eps", ndim=1, dtype=np.float64)
    if ((e < 0) | (e > 1)).any():
        bad = e[(e < 0) | (e > 1)][0]
        raise ValueError(f"eps must lie in [0, 1] (a softmax mass); got {bad}")
    V = as_array(V, "V", ndim=2, dtype=np.float64)
    bound = 2.0 * e * np.linalg.norm(V, axis=1).max()
    return float(bound[0]) if scalar else bound
