"""One resolution of the RETGEN store: pattern table + embedding index (``retgen.md`` §11.1).

``Index(C) = ∪ {(e_context(p), P_emp(· | p))}``: each distinct pattern's unit embedding
goes into a vector index of the project (``flat`` exact, ``hnsw``, ``ivf`` or ``ivfpq``) whose row
``i`` is row ``i`` of the :class:`~retgen_ref.lm.patterns.PatternTable`. Retrieval is a
maximum inner product search, which on unit vectors is the cosine similarity ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int
from ..index import FlatIndex, HNSWIndex, Index, IVFFlatIndex, IVFPQIndex
from .kernels import (full_distribution, pattern_probabilities, target_probabilities,
                      weighted_distribution)
from .patterns import PatternTable

INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfpq")


INDEX_PARAMS = {  # the settings each kind accepts in RetgenConfig.index_params
    "flat": (),
    "hnsw": ("M", "ef_construction", "ef_search"),
    "ivf": ("nlist", "nprobe"),
    "ivfpq": ("nlist", "m", "nbits", "nprobe", "refine_k"),
}
#: The range of each setting, (minimum, maximum or None), as the index classes check it.
PARAM_RANGES = {"M": (2, None), "ef_construction": (1, None), "ef_search": (1, None),
                "nlist": (1, None), "nprobe": (1, None), "m": (1, None), "nbits": (1, 8),
                "refine_k": (0, None)}


def check_index_params(kind: str, params: dict) -> dict:
    """``params`` if every key is a setting of ``kind`` and every value an integer in its
    range (:data:`PARAM_RANGES`); else a ValueError, before any index is built."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"index={kind!r}; choose one of {INDEX_KINDS}")
    unknown = sorted(set(params) - set(INDEX_PARAMS[kind]))
    if unknown:
        raise ValueError(f"index_params {unknown} do not apply to a {kind} index; it takes "
                         f"{list(INDEX_PARAMS[kind]) or 'none'}")
    for key, value in params.items():
        low, high = PARAM_RANGES[key]
        check_int(value, key, minimum=low, maximum=high)
    return dict(params)


def build_index(kind: str, vectors: np.ndarray, seed: int = 0, **params) -> Index:
    """An inner-product index of ``kind`` over unit ``vectors``.

    Defaults, overridden by ``params`` (see :data:`INDEX_PARAMS`): ``hnsw`` M = 16,
    ef_construction = 64, ef_search = 96. ``ivfpq`` (``retgen_v2.md`` §2, §4): nlist ≈
    4√n, ``d/8`` sub-quantizers of 8 bits (fewer bits for tiny tables), nprobe = 16, and
    ``refine_k > 0`` keeps the float vectors too and re-ranks the best ``refine_k``
    candidates by their exact inner product. ``ivf`` is the same inverted file holding
    the float vectors (IVF-Flat: v2's index without PQ).
    """
    params = check_index_params(kind, params)
    n, d = vectors.shape
    if kind == "flat":
        index = FlatIndex(d, "ip")
    elif kind == "hnsw":
        index = HNSWIndex(d, M=params.get("M", 16),
                          ef_construction=params.get("ef_construction", 64), metric="ip",
                          seed=seed)
        index.ef_search = params.get("ef_search", 96)
    else:
        nlist = params.get("nlist", int(np.clip(4 * np.sqrt(n), 1, max(1, n // 39))))
        if kind == "ivf":
            index = IVFFlatIndex(d, nlist, metric="ip", seed=seed)
        else:
            nbits = params.get("nbits", int(np.clip(np.log2(max(n, 2) / 4), 1, 8)))
            m = params.get("m", max(1, d // 8) if d % 8 == 0 else d)
            index = IVFPQIndex(d, nlist, m, nbits, metric="ip",
                               store_vectors=params.get("refine_k", 0) > 0, seed=seed)
        index.train(vectors)
        index.nprobe = min(params.get("nprobe", 16), nlist)
        if kind == "ivfpq":
            index.refine_k = params.get("refine_k", 0)
    index.add(vectors)
    return index


@dataclass
class Resolution:
    """Patterns of one length ``r`` with their index; ``totals[i] = n(p_i)``."""

    table: PatternTable
    index: Index

    def __post_init__(self):
        self.set_table(self.table)

    def set_table(self, table: PatternTable) -> None:
        """Use ``table`` (same rows first, maybe more appended) from now on."""
        if len(table) != self.index.ntotal:
            raise ValueError(f"the table has {len(table)} patterns but the index holds "
                             f"{self.index.ntotal} vectors")
        self.table = table
        self.totals = table.totals

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(sims, ids)`` of the ``k`` nearest patterns of each unit query."""
        return self.index.search(queries, k)

    def target_probabilities(self, sims, ids, k: int, tau: float, targets: np.ndarray):
        """``(P_r(target), soft count)`` per query from search results (kernels module)."""
        prob = np.empty(len(targets))
        mass = np.empty(len(targets))
        target_probabilities(ids, sims, k, tau, self.table.offsets, self.table.next_tokens,
                             self.table.next_counts, self.totals, targets, prob, mass)
        return prob, mass

    def pattern_probabilities(self, ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """``P_emp(targets[t] | p_{ids[t, j]})`` for ids ``(n, k)`` (0 where id is -1)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        out = np.empty(ids.shape)
        pattern_probabilities(ids, np.asarray(targets, np.int64), self.table.offsets,
                              self.table.next_tokens, self.table.next_counts, self.totals, out)
        return out

    def distribution(self, sims, ids, tau: float, vocab_size: int):
        """``(P_r(· | x), soft count)`` for one query's ``k`` results."""
        out = np.zeros(vocab_size)
        mass = full_distribution(ids, sims, tau, self.table.offsets, self.table.next_tokens,
                                 self.table.next_counts, self.totals, out)
        return out, mass

    def weighted_distribution(self, ids, weights, vocab_size: int) -> np.ndarray:
        """``Σ_j a_j P_emp(· | p_j)`` for one query's results and pattern weights ``a``."""
        out = np.empty(vocab_size)
        weighted_distribution(np.asarray(ids, np.int64), np.asarray(weights, np.float64),
                              self.table.offsets, self.table.next_tokens,
                              self.table.next_counts, self.totals, out)
        return out
