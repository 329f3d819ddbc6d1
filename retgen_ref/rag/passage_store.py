"""RETGEN's retrieval restricted to one passage: the passage's own pattern store.

RAG's generator reads a retrieved passage ``z`` (``rag_math_notes_part5.md`` §1). RETGEN
reads text only through its pattern stores (``retgen.md`` §11.1), so the passage becomes
one: for each resolution ``r`` its contexts with the next-token counts ``n_z(p, y)`` seen
in ``z`` (the paragraph followed by ``<eos>``, as in the corpus stream), embedded by the
model's context encoder into an exact inner-product index. Retrieval in it is the model's
kernel estimate (``retgen.md`` §4.4, :mod:`retgen_ref.lm.kernels`) with the model's ``k``
and ``τ``:

    P_{r,z}(y | x) = Σ_{p ∈ top-k of z} n_z(p) e^{s_p/τ} P_emp,z(y | p) / Σ_p n_z(p) e^{s_p/τ},

with the soft count ``M_{r,z} = Σ_p n_z(p) e^{(s_p − 1)/τ}`` (large when the current
context occurs in ``z``). At ``r = 0`` the one pattern is the empty context, which every
query matches with ``s = 1``: ``P_{0,z}`` is the passage's word frequencies (a cache
model) and ``M_{0,z} = |z| + 1``.
"""

from __future__ import annotations

import numpy as np

from ..index import FlatIndex
from ..lm.pattern_index import Resolution
from ..lm.patterns import extract_patterns
from ..lm.tokenize import EOS


class _EmptyContextIndex:
    """The index of resolution 0: its one pattern, the empty context, matches every query."""

    ntotal = 1

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return np.ones((len(queries), 1), np.float32), np.zeros((len(queries), 1), np.int64)


def context_queries(model, stream: np.ndarray, r: int) -> np.ndarray:
    """The model's query embeddings of every position at resolution ``r`` (none for r = 0)."""
    return np.zeros((len(stream), 0), np.float32) if r == 0 else \
        model.context_queries(stream, r)


def last_context_query(model, ids: np.ndarray, r: int) -> np.ndarray:
    """The query embedding ``(1, dim)`` of the context at the end of ``ids``."""
    return np.zeros((1, 0), np.float32) if r == 0 else model.last_context_query(ids, r)


class PassageStore:
    """The pattern stores of one passage at the given resolutions (module docstring).

    Parameters
    ----------
    model : a fitted :class:`~retgen_ref.lm.RetgenLM` (its encoder, ``k_`` and ``tau_``).
    passage : 1-D token ids, without the trailing ``<eos>``.
    resolutions : the context lengths ``r ≥ 0`` to build.
    """

    def __init__(self, model, passage, resolutions):
        stream = np.append(np.asarray(passage, np.int32), np.int32(EOS))
        self.model, self.levels = model, {}
        for r in resolutions:
            table = extract_patterns(stream, r)
            if r == 0:
                index = _EmptyContextIndex()
            else:
                vectors = model.encoder.encode(
                    table.contexts, model.pattern_history_vectors(table, [stream]))
                index = FlatIndex(vectors.shape[1], "ip")
                index.add(vectors)
            self.levels[r] = Resolution(table, index)

    def _search(self, level: Resolution, queries: np.ndarray):
        k = min(self.model.k_, len(level.table))
        sims, ids = level.search(queries, k)
        return sims, ids, k

    def target_components(self, queries: dict, targets: np.ndarray):
        """``(P, M)``, each ``(R_z, n)``: ``P_{r,z}(targets[t] | x_t)`` and its soft count.

        ``queries[r]`` are the ``n`` positions' query embeddings (:func:`context_queries`).
        """
        P, M = [], []
        for r, level in self.levels.items():
            sims, ids, k = self._search(level, queries[r])
            prob, mass = level.target_probabilities(sims, ids, k, self.model.tau_,
                                                    np.asarray(targets, np.int32))
            P.append(prob)
            M.append(mass)
        return np.array(P), np.array(M)

    def distributions(self, queries: dict) -> tuple[np.ndarray, np.ndarray]:
        """``(P, M)``: every ``P_{r,z}(· | x)`` ``(R_z, V)`` and soft count ``(R_z,)`` of
        one query (``queries[r]`` of shape ``(1, dim)``, :func:`last_context_query`)."""
        P, M = [], []
        for r, level in self.levels.items():
            sims, ids, _ = self._search(level, queries[r])
            dist, mass = level.distribution(sims[0], ids[0], self.model.tau_,
                                            len(self.model.vocab))
            P.append(dist)
            M.append(mass)
        return np.array(P), np.array(M)
