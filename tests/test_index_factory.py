"""``index_factory`` reads FAISS's description strings as FAISS does (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from retgen_ref import (FlatIndex, HNSWIndex, IVFFlatIndex, IVFPQIndex, IVFSQIndex, LSHIndex,
                        PreTransformIndex, SQIndex, index_factory)

faiss = pytest.importorskip("faiss")

D = 32


def _data(n, seed):
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def _recall(I, truth):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(I, truth)])


@pytest.mark.parametrize("description,cls,faiss_cls,params", [
    ("Flat", FlatIndex, "IndexFlat", {}),
    ("HNSW24", HNSWIndex, "IndexHNSWFlat", {"M": 24}),
    ("HNSW12,Flat", HNSWIndex, "IndexHNSWFlat", {"M": 12}),
    ("IVF16,Flat", IVFFlatIndex, "IndexIVFFlat", {"nlist": 16}),
    ("IVF16,PQ8x4", IVFPQIndex, "IndexIVFPQ", {"nlist": 16, "m": 8, "nbits": 4}),
    ("IVF16,PQ4", IVFPQIndex, "IndexIVFPQ", {"nlist": 16, "m": 4, "nbits": 8}),
    ("PQ8x6", IVFPQIndex, "IndexPQ", {"nlist": 1, "m": 8, "nbits": 6}),
    ("SQ8", SQIndex, "IndexScalarQuantizer", {}),
    ("IVF16,SQ8", IVFSQIndex, "IndexIVFScalarQuantizer", {"nlist": 16}),
    ("OPQ8,IVF16,PQ8", PreTransformIndex, "IndexPreTransform", {}),
    ("OPQ4_32,PQ4", PreTransformIndex, "IndexPreTransform", {}),
    ("IVF16,PQ8,Refine(Flat)", IVFPQIndex, "IndexRefine",
     {"nlist": 16, "m": 8, "nbits": 8, "refine_k": 1}),
])
def test_a_string_builds_what_faiss_builds_from_it(description, cls, faiss_cls, params):
    ours, theirs = index_factory(D, description), faiss.index_factory(D, description)
    assert type(ours) is cls and type(theirs).__name__ == faiss_cls
    found = {"M": getattr(ours, "M", None), "nlist": getattr(ours, "nlist", None),
             "m": getattr(getattr(ours, "pq", None), "m", None),
             "nbits": getattr(getattr(ours, "pq", None), "nbits", None),
             "refine_k": getattr(ours, "refine_k", None)}
    assert {k: found[k] for k in params} == params
    assert ours.is_trained == theirs.is_trained


@pytest.mark.parametrize("description", ["PQ8x8", "IVF16,PQ8x8", "IVF16,PQ8x8,Refine(Flat)",
                                         "SQ8", "IVF16,SQ8", "OPQ8,IVF16,PQ8x8"])
def test_the_built_indexes_reach_faiss_s_recall(description):
    """Same data, same string, same nprobe: recall@10 against the exact neighbours."""
    x, xq = _data(5_000, 0), _data(100, 1)
    truth = _exact(x, xq)
    ours, theirs = index_factory(D, description), faiss.index_factory(D, description)
    for index in (ours, theirs):
        index.train(x)
        index.add(x)
    if "IVF" in description:
        ours.nprobe = 4
        faiss.extract_index_ivf(theirs).nprobe = 4
    recall_ours = _recall(ours.search(xq, 10)[1], truth)
    recall_theirs = _recall(theirs.search(xq, 10)[1], truth)
    assert abs(recall_ours - recall_theirs) <= 0.03, (recall_ours, recall_theirs)


def _exact(x, xq):
    d2 = ((xq.astype(np.float64)[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    return np.argsort(d2, axis=1, kind="stable")[:, :10]


def test_refine_ranks_the_pq_candidates_by_their_exact_distance():
    x, xq = _data(3_000, 2), _data(20, 3)
    index = index_factory(D, "IVF8,PQ4x4,Refine(Flat)")
    index.train(x)
    index.add(x)
    D_, I = index.search(xq, 5)
    exact = ((xq[:, None, :].astype(np.float64) - x[I]) ** 2).sum(axis=2)
    assert np.allclose(D_, exact, rtol=1e-5) and np.all(np.diff(D_, axis=1) >= 0)


def test_metric_and_lsh():
    assert index_factory(D, "HNSW16", "ip").metric == "ip"
    lsh = index_factory(D, "LSH16x8", "cosine")
    assert type(lsh) is LSHIndex and (lsh.nbits, lsh.n_tables) == (16, 8)


@pytest.mark.parametrize("description,message", [
    ("IVF", "cannot read the index description 'IVF'"),
    ("HNSW", "cannot read"),
    ("IVF16,PQ5", "does not divide"),
    ("Flat,Refine(Flat)", "Refine(Flat) is supported after IVF<nlist>,PQ<m>"),
    ("LSH", "FAISS's LSH"),
    ("IVF16_HNSW32,Flat", "cannot read"),
    ("OPQ8_16,IVF16,PQ8", "not implemented"),
    ("OPQ8", "cannot read"),
])
def test_strings_we_cannot_read_are_clear_errors(description, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        index_factory(D, description)
    with pytest.raises(TypeError, match="description must be a string"):
        index_factory(D, 16)


def test_an_opq_string_trains_as_long_as_faiss_does():
    faiss = pytest.importorskip("faiss")
    ours = index_factory(16, "OPQ4,IVF8,PQ4")
    assert ours.transform.n_iter == faiss.OPQMatrix(16, 4).niter
