"""One small index of every kind, for the tests that must hold on all of them."""

from __future__ import annotations

import numpy as np

from retgen_ref import (OPQ, FlatIndex, HNSWIndex, IVFFlatIndex, IVFPQIndex, IVFSQIndex,
                        LSHIndex, PreTransformIndex, ShardedIndex, SQIndex)

D_DIM = 8


def data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, D_DIM)).astype(np.float32)


def build(kind: str, tmp_path=None, x=None):
    """An empty index of ``kind`` (trained on ``x`` where it needs training)."""
    x = data() if x is None else x
    if kind == "flat":
        return FlatIndex(D_DIM)
    if kind == "hnsw":
        return HNSWIndex(D_DIM, M=8, ef_construction=32)
    if kind == "lsh":
        return LSHIndex(D_DIM, nbits=4, n_tables=4)
    if kind == "sharded":
        return ShardedIndex(tmp_path / "store", d=D_DIM, shard_size=128)
    if kind == "opq":
        index = PreTransformIndex(OPQ(D_DIM, 2, nbits=4, n_iter=3), IVFPQIndex(D_DIM, 8, 2, 4))
        index.train(x)
        index.nprobe = 8
        return index
    if kind == "sq":
        index = SQIndex(D_DIM)
        index.train(x)
        return index
    index = {"ivfflat": lambda: IVFFlatIndex(D_DIM, 8), "ivfsq": lambda: IVFSQIndex(D_DIM, 8),
             "ivfpq": lambda: IVFPQIndex(D_DIM, 8, m=2, nbits=4, store_vectors=True)}[kind]()
    index.train(x)
    index.nprobe = 8
    if kind == "ivfpq":
        index.refine_k = 32
    return index


KINDS = ["flat", "hnsw", "lsh", "ivfflat", "ivfpq", "sq", "ivfsq", "opq", "sharded"]
