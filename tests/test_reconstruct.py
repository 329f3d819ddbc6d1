"""``reconstruct``, ``reconstruct_n`` and ``reconstruct_batch`` on every index kind (issue 17).

Exact kinds give back the stored float32 rows (unit rows for cosine); quantized ones the
decoded code, which FAISS's ``reconstruct`` also returns. Checked against the data itself
and, for IVF-PQ, against FAISS's ``IndexIVFPQ.reconstruct`` on the same trained model.
"""

from __future__ import annotations

import numpy as np
import pytest

from index_kinds import D_DIM, KINDS, build, data
from retgen_ref import IVFPQIndex, ShardedIndex


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_gives_back_what_it_stored(kind, tmp_path):
    x = data(600, seed=5) + 100.0   # far from the origin: rows are returned, not rebuilt
    index = build(kind, tmp_path, x=x)
    index.add(x)
    ids = np.array([599, 0, 17, 17, 300])
    got = index.reconstruct_batch(ids)
    assert got.shape == (5, D_DIM) and got.dtype == np.float32
    if kind in ("ivfpq", "opq", "sq", "ivfsq"):  # decoded, not stored
        error = np.abs(got - x[ids]).max()
        bound = 0.01 if "sq" in kind else 0.5   # SQ8: half a step of the value range
        assert 0 < error < bound * np.abs(x - x.mean(axis=0)).max(), error
    elif index.metric == "cosine":
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        assert np.allclose(got, unit[ids], atol=1e-7)
    else:
        assert np.array_equal(got, x[ids])
    # the same id gives the same vector in any batch; a rotation's float32 product may
    # round the last bit differently with the batch size (BLAS blocking)
    same = (lambda a, b: np.allclose(a, b, rtol=1e-6)) if kind == "opq" else np.array_equal
    assert same(index.reconstruct(17), got[2])
    assert same(index.reconstruct_n(298, 3), index.reconstruct_batch([298, 299, 300]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [600, -1, 10**12])
def test_an_id_not_stored_is_named(kind, bad, tmp_path):
    index = build(kind, tmp_path)
    index.add(data(600, seed=5))
    with pytest.raises(ValueError, match=f"id {bad} is not in this"):
        index.reconstruct_batch([3, bad])


def test_ivf_reconstructs_by_id_after_removals_and_own_ids(tmp_path):
    index = build("ivfflat", tmp_path)
    x = data(300, seed=6)
    index.add_with_ids(x, np.arange(300) * 7 + 1000)
    index.remove_ids(np.arange(0, 300, 2) * 7 + 1000)
    assert np.array_equal(index.reconstruct_batch([1007, 3093]), x[[1, 299]])
    with pytest.raises(ValueError, match="id 1000 is not in this index"):
        index.reconstruct(1000)


def test_ivfpq_reconstruction_is_faiss_s_decoding_of_the_same_codes():
    faiss = pytest.importorskip("faiss")
    x = data(4_000, seed=7) * 3.0
    ours = IVFPQIndex(D_DIM, 16, 4, 8)
    ours.train(x)
    ours.add(x)
    quantizer = faiss.IndexFlatL2(D_DIM)
    theirs = faiss.IndexIVFPQ(quantizer, D_DIM, 16, 4, 8)
    quantizer.add(ours.centroids)                          # the same coarse model ...
    theirs.is_trained = True
    faiss.copy_array_to_vector(ours.pq.codebooks_.ravel(), theirs.pq.centroids)  # ... and PQ
    theirs.precompute_table()
    theirs.add(x)
    theirs.make_direct_map()
    ids = np.arange(0, 4_000, 97)
    expected = np.stack([theirs.reconstruct(int(i)) for i in ids])
    assert np.allclose(ours.reconstruct_batch(ids), expected, atol=1e-5)


def test_sharded_reconstruct_reads_each_shard_once_it_is_asked(tmp_path):
    store = ShardedIndex(tmp_path / "s", d=D_DIM, shard_size=256, kind="ivfpq", nlist=4, m=2,
                         nbits=4)
    x = data(600, seed=8)
    store.add(x)
    assert np.array_equal(store.reconstruct_batch([599, 530]), x[[599, 530]])  # raw tail
    decoded = store.reconstruct_batch([0, 300])                                # PQ shards
    assert decoded.shape == (2, D_DIM) and not np.array_equal(decoded, x[[0, 130]])
