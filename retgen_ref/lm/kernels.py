"""Numba kernels of the retrieval next-token distribution (``retgen.md`` §4.4, §11.1).

For one query at one resolution, the ``k`` retrieved patterns ``p_i`` with similarity
``s_i`` and counts ``n(p_i, y)`` give, with the weight ``n(p_i) · exp(s_i / τ)`` of the
issue (pattern frequency times the kernel of Theorem 4.4),

    P_r(y | x) = Σ_i exp(s_i/τ) n(p_i, y) / Σ_i exp(s_i/τ) n(p_i)        (kernel estimate)

computed as ``exp((s_i − s_max)/τ)`` so that small ``τ`` cannot overflow. The kernels also
return the soft count ``M = Σ_i exp((s_i − 1)/τ) n(p_i)`` (the retrieval's confidence:
the count of an exact match, plus the near matches' counts discounted by their distance).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _lookup(tokens, lo, hi, y):
    """Index of ``y`` in the sorted ``tokens[lo:hi]``, or -1."""
    end = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if tokens[mid] < y:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < end and tokens[lo] == y else -1


@njit(cache=True, inline="always")
def _kernel_weight(sim, best, tau):
    return np.exp((sim - best) / tau)


@njit(cache=True, parallel=True)
def target_probabilities(ids, sims, k, tau, offsets, next_tokens, next_counts, totals,
                         targets, out_prob, out_mass):
    """``P_r(target_t | x_t)`` and the soft count for every query ``t``.

    ``ids``/``sims`` are the search results ``(n, ≥k)`` (``-1`` marks a missing neighbour);
    only the first ``k`` columns are used. A query with no neighbour gets probability 0
    and mass 0 (the mixture then relies on the other resolutions).
    """
    for t in prange(ids.shape[0]):
        best = -np.inf
        for j in range(k):
            if ids[t, j] >= 0 and sims[t, j] > best:
                best = sims[t, j]
        num = 0.0
        den = 0.0
        for j in range(k):
            p = ids[t, j]
            if p < 0:
                continue
            w = _kernel_weight(sims[t, j], best, tau)
            den += w * totals[p]
            at = _lookup(next_tokens, offsets[p], offsets[p + 1], targets[t])
            if at >= 0:
                num += w * next_counts[at]
        out_prob[t] = num / den if den > 0 else 0.0
        out_mass[t] = den * np.exp((best - 1.0) / tau) if den > 0 else 0.0


@njit(cache=True)
def full_distribution(ids, sims, tau, offsets, next_tokens, next_counts, totals, out):
    """The whole ``P_r(· | x)`` of one query into ``out`` (length V); returns the soft count."""
    best = -np.inf
    for j in range(len(ids)):
        if ids[j] >= 0 and sims[j] > best:
            best = sims[j]
    weights = np.zeros(len(ids))
    den = 0.0
    for j in range(len(ids)):
        if ids[j] >= 0:
            weights[j] = _kernel_weight(sims[j], best, tau) * totals[ids[j]]
            den += weights[j]
    if den > 0:
        weights /= den
    weighted_distribution(ids, weights, offsets, next_tokens, next_counts, totals, out)
    return den * np.exp((best - 1.0) / tau) if den > 0 else 0.0


@njit(cache=True)
def weighted_distribution(ids, weights, offsets, next_tokens, next_counts, totals, out):
    """``out = Σ_j a_j P_emp(· | p_{ids[j]})`` for given pattern weights ``a`` (length V).

    The kernel estimate is the case ``a_j ∝ n(p_j) exp(s_j/τ)``; a reranker or retrieval
    policy (:mod:`retgen_ref.v2`) supplies other weights. Ids ``< 0`` are skipped.
    """
    out[:] = 0.0
    for j in range(len(ids)):
        p = ids[j]
        if p < 0 or weights[j] == 0.0:
            continue
        scale = weights[j] / totals[p]
        for at in range(offsets[p], offsets[p + 1]):
            out[next_tokens[at]] += scale * next_counts[at]


@njit(cache=True, parallel=True)
def pattern_probabilities(ids, targets, offsets, next_tokens, next_counts, totals, out):
    """``out[t, j] = P_emp(targets[t] | p_{ids[t, j]}) = n(p, y) / n(p)``; 0 where id < 0."""
    for t in prange(ids.shape[0]):
        for j in range(ids.shape[1]):
            p = ids[t, j]
            out[t, j] = 0.0
            if p >= 0:
                at = _lookup(next_tokens, offsets[p], offsets[p + 1], targets[t])
                if at >= 0:
                    out[t, j] = next_counts[at] / totals[p]
