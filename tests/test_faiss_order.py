"""A call in FAISS's argument order fails loudly where ours differs (issue 17).

FAISS's ``Kmeans(d, k, niter=...)`` read as our ``KMeans(n_clusters, n_iter)`` ran
``KMeans(384, 256)`` with 384 clusters and 256 iterations, without a word. Arguments after
the ones both libraries share in the same order are keyword-only.
"""

from __future__ import annotations

import pytest

from retgen_ref import (HNSWIndex, IVFFlatIndex, IVFPQIndex, KMeans, LSHIndex,
                        ProductQuantizer)


@pytest.mark.parametrize("call", [
    lambda: KMeans(384, 256),                      # faiss.Kmeans(d, k)
    lambda: HNSWIndex(16, 32, "ip"),               # faiss.IndexHNSWFlat(d, M, metric)
    lambda: HNSWIndex(16, 32, 100),                # hnswlib's (M, ef_construction) order
    lambda: ProductQuantizer(16, 4, 8, 1),
    lambda: IVFFlatIndex(16, 8, "l2", 1),
    lambda: IVFPQIndex(16, 8, 4, 8, "l2", False),
    lambda: LSHIndex(16, 8, 4, "l2"),
], ids=["KMeans(d,k)", "HNSW(d,M,metric)", "HNSW(d,M,ef)", "PQ(..,seed)", "IVFFlat(..,seed)",
        "IVFPQ(..,by_residual)", "LSH(..,metric)"])
def test_positional_arguments_beyond_the_shared_order_are_refused(call):
    with pytest.raises(TypeError, match="positional argument"):
        call()


def test_the_shared_order_and_keywords_still_work():
    assert KMeans(8, n_iter=3).n_iter == 3
    assert HNSWIndex(16, 32, ef_construction=64, metric="ip").M == 32
    assert ProductQuantizer(16, 4, 8, seed=1).seed == 1
    assert IVFPQIndex(16, 8, 4, 8, "ip", by_residual=False).by_residual is False
    assert LSHIndex(16, 8, 4, metric="l2").metric == "l2"
