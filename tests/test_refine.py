"""DiskRefine: re-ranking from a .npy on disk equals re-ranking in memory; errors."""

from __future__ import annotations

import numpy as np
import pytest

from retgen_ref import FlatIndex, IVFPQIndex
from retgen_ref.index.refine import DiskRefine
from retgen_ref.synthetic import gaussian_mixture


@pytest.fixture(scope="module")
def data():
    both = gaussian_mixture(4050, 16, n_clusters=20, seed=1)
    return both[:4000], both[4000:]


def _ivfpq(x, metric, store_vectors=False):
    index = IVFPQIndex(x.shape[1], 16, m=4, metric=metric, store_vectors=store_vectors)
    index.train(x)
    index.add(x)
    index.nprobe = 4
    return index


@pytest.fixture(scope="module")
def vectors_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("refine") / "x.npy"
    np.save(path, data[0])
    return path


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_same_results_as_in_memory_reranking(data, vectors_file, metric):
    x, xq = data
    in_memory = _ivfpq(x, metric, store_vectors=True)
    in_memory.refine_k = 40
    on_disk = DiskRefine(_ivfpq(x, metric), vectors_file, refine_k=40)
    D_ref, I_ref = in_memory.search(xq, 10)
    D, I = on_disk.search(xq, 10)
    assert np.array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-5)
    assert D.dtype == np.float32 and I.dtype == np.int64
    assert on_disk.nbytes == _ivfpq(x, metric).nbytes < in_memory.nbytes


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_every_candidate_reranked_is_exact_search(data, vectors_file, metric):
    x, xq = data
    base = _ivfpq(x, metric)
    base.nprobe = base.nlist
    D, I = DiskRefine(base, vectors_file, refine_k=len(x)).search(xq, 10)
    exact = FlatIndex(x.shape[1], metric)
    exact.add(x)
    D_ref, I_ref = exact.search(xq, 10)
    assert np.array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-4, atol=1e-4)


def test_fewer_candidates_than_k_are_padded(data, vectors_file):
    x, xq = data
    small = IVFPQIndex(16, 4, m=4)
    small.train(x)
    small.add(x[:3])
    small.nprobe = 4
    D, I = DiskRefine(small, vectors_file, refine_k=2).search(xq[:2], 5)
    assert (I[:, 3:] == -1).all() and np.isinf(D[:, 3:]).all()
    assert sorted(I[0, :3].tolist()) == [0, 1, 2]


def test_errors(data, vectors_file, tmp_path):
    x, xq = data
    base = _ivfpq(x, "l2")
    with pytest.raises(FileNotFoundError, match="no vectors file"):
        DiskRefine(base, tmp_path / "missing.npy")
    np.save(tmp_path / "f64.npy", x.astype(np.float64))
    with pytest.raises(ValueError, match="expected float32"):
        DiskRefine(base, tmp_path / "f64.npy")
    np.save(tmp_path / "narrow.npy", x[:, :8])
    with pytest.raises(ValueError, match="8 columns"):
        DiskRefine(base, tmp_path / "narrow.npy")
    np.save(tmp_path / "short.npy", x[:100])
    with pytest.raises(ValueError, match="100 rows"):
        DiskRefine(base, tmp_path / "short.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="not a .npy"):
        DiskRefine(base, tmp_path / "junk.npy")
    index = DiskRefine(base, vectors_file)
    with pytest.raises(ValueError, match="columns"):
        index.search(xq[:, :8], 10)
    with pytest.raises(ValueError, match="k must be"):
        index.search(xq, 0)
    copy = tmp_path / "copy.npy"
    np.save(copy, x)
    truncated = DiskRefine(base, copy)
    with open(copy, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match="truncated"):
        truncated.search(xq, 10)
    shifted = IVFPQIndex(16, 16, m=4)
    shifted.train(x)
    shifted.add_with_ids(x, np.arange(len(x)) + len(x))  # ids beyond the file's rows
    with pytest.raises(ValueError, match="row numbers"):
        DiskRefine(shifted, vectors_file).search(xq, 10)
