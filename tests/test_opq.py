"""OPQ (Ge et al. 2013) and PreTransformIndex: the rotation is orthogonal, lowers PQ's error
on correlated data with a non-increasing objective, matches FAISS's ``OPQMatrix`` and
``index_factory("OPQm,IVFn,PQm")``, survives save/load and copies, and refuses bad input."""

from __future__ import annotations

import copy
import pickle
from contextlib import contextmanager

import numpy as np
import pytest

from retgen_ref import FlatIndex, HNSWIndex, IVFPQIndex, load_index, num_threads
from retgen_ref.distances import normalise_rows
from retgen_ref.index.pretransform import PreTransformIndex
from retgen_ref.opq import OPQ, procrustes, random_rotation
from retgen_ref.pq import ProductQuantizer

SEEDS = (0, 1, 2)


def correlated(n, d, seed):
    """Gaussian rows with covariance ``Qᵀ diag(1/i) Q``, ``Q`` a random rotation: variance
    decays over directions that are spread over every coordinate (and every subspace)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d)) / np.sqrt(np.arange(1, d + 1))
    return (z @ random_rotation(d, rng)).astype(np.float32)


def exact_knn(xb, xq, k):
    """Ground truth in float64."""
    xb, xq = xb.astype(np.float64), xq.astype(np.float64)
    dist = (xq ** 2).sum(1)[:, None] - 2.0 * xq @ xb.T + (xb ** 2).sum(1)[None]
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


@contextmanager
def faiss_threads(faiss):
    """FAISS on 2 threads with Numba's pool at 1 meanwhile: the two OpenMP pools otherwise
    compete for the 2 cores and FAISS's training time varies 5x from run to run."""
    with num_threads(1):
        faiss.omp_set_num_threads(2)
        yield


def recall(I, truth):
    return float(np.mean([len(set(a) & set(b)) for a, b in zip(I, truth)]) / truth.shape[1])


@pytest.fixture(scope="module")
def fitted():
    """Per seed: training and held-out rows (d=32), OPQ(m=4, nbits=6) and plain PQ."""
    out = {}
    for seed in SEEDS:
        x = correlated(10000, 32, seed)
        train, held_out = x[:8000], x[8000:]
        opq = OPQ(32, 4, nbits=6, n_iter=15, seed=seed).fit(train)
        pq = ProductQuantizer(32, 4, 6, seed=seed).fit(train)
        out[seed] = train, held_out, opq, pq
    return out


# -- the math ----------------------------------------------------------------------------
def test_procrustes_recovers_a_known_rotation():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 12))
    q = random_rotation(12, rng)
    assert np.allclose(procrustes(x, x @ q), q, atol=1e-10)
    r = random_rotation(12, rng)  # and it is the best rotation: no other does better
    y = x @ q + 0.3 * rng.standard_normal((500, 12))
    best = np.sum((x @ procrustes(x, y) - y) ** 2)
    assert best <= np.sum((x @ q - y) ** 2) and best <= np.sum((x @ r - y) ** 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_rotation_is_orthogonal_and_transforms_invert(fitted, seed):
    train, held_out, opq, _ = fitted[seed]
    R = opq.rotation_.astype(np.float64)
    assert opq.rotation_.dtype == np.float32 and R.shape == (32, 32)
    assert np.abs(R.T @ R - np.eye(32)).max() < 1e-5
    assert np.abs(R @ R.T - np.eye(32)).max() < 1e-5
    z = opq.transform(held_out)
    assert z.dtype == np.float32
    assert np.allclose(z, held_out @ opq.rotation_, atol=1e-6)
    assert np.allclose(opq.reverse_transform(z), held_out, atol=1e-5)
    # distances survive the rotation, so the error is the same in both spaces
    zhat = opq.pq_.decode(opq.pq_.encode(z))
    in_x = np.mean(np.sum((held_out - opq.reverse_transform(zhat)) ** 2, axis=1))
    assert in_x == pytest.approx(opq.reconstruction_error(held_out), rel=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_opq_lowers_the_error_of_pq_on_correlated_data(fitted, seed):
    train, held_out, opq, pq = fitted[seed]
    history = opq.objective_history_
    assert history.shape == (16,)
    assert (np.diff(history) <= 1e-6 * history[0]).all(), history  # non-increasing
    assert history[-1] < 0.9 * history[0]
    plain, rotated = pq.reconstruction_error(held_out), opq.reconstruction_error(held_out)
    assert rotated < 0.88 * plain, (rotated, plain)


def test_identity_start_begins_at_plain_pq():
    x = correlated(3000, 16, 5)
    opq = OPQ(16, 4, nbits=4, n_iter=3, init="identity", seed=5).fit(x)
    pq = ProductQuantizer(16, 4, 4, seed=5).fit(x)
    assert opq.objective_history_[0] == pytest.approx(pq.reconstruction_error(x), rel=1e-6)
    assert opq.objective_history_[-1] < opq.objective_history_[0]


def test_same_seed_same_rotation():
    x = correlated(3000, 16, 7)
    a, b = (OPQ(16, 4, nbits=4, n_iter=4, seed=3).fit(x) for _ in range(2))
    assert np.array_equal(a.rotation_, b.rotation_)
    assert not np.array_equal(a.rotation_, OPQ(16, 4, nbits=4, n_iter=4, seed=4).fit(x).rotation_)


# -- parity with FAISS -----------------------------------------------------------------------
def test_reconstruction_error_matches_faiss_opq():
    faiss = pytest.importorskip("faiss")
    d, m, ours, theirs, plain = 32, 4, [], [], []
    for seed in SEEDS:
        x = correlated(12000, d, 10 + seed)
        train, held_out = x[:10000], x[10000:]
        opq = OPQ(d, m, n_iter=20, seed=seed).fit(train)
        # like FAISS's IndexPreTransform: a fresh PQ trained on the rotated data
        z = opq.transform(train)
        ours.append(ProductQuantizer(d, m, 8, seed=seed).fit(z)
                    .reconstruction_error(opq.transform(held_out)))
        plain.append(ProductQuantizer(d, m, 8, seed=seed).fit(train)
                     .reconstruction_error(held_out))
        with faiss_threads(faiss):
            matrix = faiss.OPQMatrix(d, m)
            matrix.niter, matrix.niter_pq_0 = 20, 25  # ours: 20 alternations, first PQ 25
            matrix.train(train)
            fpq = faiss.ProductQuantizer(d, m, 8)
            fpq.train(matrix.apply(train))
            zq = matrix.apply(held_out)
        theirs.append(np.mean(np.sum((zq - fpq.decode(fpq.compute_codes(zq))) ** 2, axis=1,
                                     dtype=np.float64)))
    ours, theirs, plain = np.mean(ours), np.mean(theirs), np.mean(plain)
    assert abs(ours / theirs - 1) < 0.03, (ours, theirs)
    assert ours < 0.9 * plain


def test_opq_ivfpq_recall_matches_faiss_index_factory():
    faiss = pytest.importorskip("faiss")
    d, m, nlist, nprobe, k, n_iter = 32, 8, 32, 4, 10, 10
    ours, theirs, plain = [], [], []
    for seed in SEEDS:
        x = correlated(11000, d, 20 + seed)
        xb, xq = x[:10000], x[10000:]
        truth = exact_knn(xb, xq, k)
        index = PreTransformIndex(OPQ(d, m, n_iter=n_iter, seed=seed),
                                  IVFPQIndex(d, nlist, m, seed=seed))
        index.train(xb)
        index.add(xb)
        index.nprobe = nprobe
        ours.append(recall(index.search(xq, k)[1], truth))
        base = IVFPQIndex(d, nlist, m, seed=seed)
        base.train(xb)
        base.add(xb)
        base.nprobe = nprobe
        plain.append(recall(base.search(xq, k)[1], truth))
        with faiss_threads(faiss):
            # "np": no polysemous training, which only permutes codewords (same ADC results)
            factory = faiss.index_factory(d, f"OPQ{m},IVF{nlist},PQ{m}np")
            matrix = faiss.downcast_VectorTransform(factory.chain.at(0))
            matrix.niter, matrix.niter_pq_0 = n_iter, 25
            factory.train(xb)
            factory.add(xb)
            faiss.extract_index_ivf(factory).nprobe = nprobe
            theirs.append(recall(factory.search(xq, k)[1], truth))
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.01, (ours, theirs)
    assert np.mean(ours) > np.mean(plain), (ours, plain)


# -- the index -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    x = correlated(3000, 16, 3)
    return x[:2500], x[2500:2550]


def _opq_ivfpq(xb, metric="l2"):
    index = PreTransformIndex(OPQ(16, 4, nbits=4, n_iter=5, seed=1),
                              IVFPQIndex(16, 8, 4, nbits=4, metric=metric, seed=1))
    index.train(xb)
    index.add(xb)
    index.nprobe = 3
    return index


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_in_front_of_flat_search_is_unchanged(small, metric):
    xb, xq = small
    opq = OPQ(16, 4, nbits=4, n_iter=3, seed=0)
    rotated = PreTransformIndex(opq, FlatIndex(16, metric))
    rotated.train(xb)
    rotated.add(xb)
    plain = FlatIndex(16, metric)
    plain.add(xb)
    (D, I), (D0, I0) = rotated.search(xq, 5), plain.search(xq, 5)
    assert rotated.metric == metric and rotated.ntotal == len(xb)
    assert np.allclose(D, D0, atol=1e-4)
    assert (I == I0).mean() > 0.99  # only near-ties may swap under rounding


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_in_front_of_ivfpq_every_metric_searches(small, metric):
    xb, xq = small
    index = _opq_ivfpq(xb, metric)
    D, I = index.search(xq, 10)
    assert D.dtype == np.float32 and I.dtype == np.int64 and (I >= 0).all()
    unit = normalise_rows(xq) if metric == "cosine" else xq
    assert np.array_equal(I, index.index.search(index.transform.transform(unit), 10)[1])


def test_save_load_pickle_deepcopy_give_identical_results(small, tmp_path):
    xb, xq = small
    index = _opq_ivfpq(xb)
    D, I = index.search(xq, 10)
    index.save(tmp_path / "opq.npz")
    copies = [load_index(tmp_path / "opq.npz"), pickle.loads(pickle.dumps(index)),
              copy.deepcopy(index)]
    for other in copies:
        assert type(other) is PreTransformIndex and other.nprobe == 3
        assert np.array_equal(other.transform.rotation_, index.transform.rotation_)
        D2, I2 = other.search(xq, 10)
        assert np.array_equal(I, I2) and np.array_equal(D, D2)
    copies[2].add(xb[:10])  # a copy is independent
    assert index.ntotal == len(xb) and copies[2].ntotal == len(xb) + 10
    opq = index.transform
    opq.save(tmp_path / "rotation.npz")
    again = OPQ.load(tmp_path / "rotation.npz")
    assert np.array_equal(again.transform(xq), opq.transform(xq))
    assert np.array_equal(again.objective_history_, opq.objective_history_)
    untrained = PreTransformIndex(OPQ(16, 4), FlatIndex(16))
    untrained.save(tmp_path / "empty.npz")
    assert not load_index(tmp_path / "empty.npz").is_trained


def test_ids_reset_and_delegation(small):
    xb, xq = small
    index = _opq_ivfpq(xb)
    index.reset()
    assert index.ntotal == 0 and index.is_trained
    index.add_with_ids(xb[:100], np.arange(1000, 1100))
    assert index.search(xq[:1], 3)[1].min() >= 1000
    assert index.remove_ids(np.arange(1000, 1050)) == 50 and index.ntotal == 50
    assert index.last_search_stats is not None and index.nbytes > 16 * 16 * 4
    # an already fitted rotation is kept by train()
    opq = index.transform
    other = PreTransformIndex(opq, IVFPQIndex(16, 8, 4, nbits=4, seed=2))
    other.train(xb)
    assert other.transform.rotation_ is opq.rotation_


# -- errors ------------------------------------------------------------------------------------
def test_bad_parameters_are_clear_errors():
    with pytest.raises(ValueError, match=r"m=5 does not divide d=32"):
        OPQ(32, 5)
    with pytest.raises(TypeError):
        OPQ(32, 4, 8)  # nbits is keyword-only
    with pytest.raises(ValueError, match="n_iter must be >= 0"):
        OPQ(32, 4, n_iter=-1)
    with pytest.raises(ValueError, match="nbits must be <= 8"):
        OPQ(32, 4, nbits=9)
    with pytest.raises(ValueError, match="unknown init 'pca'"):
        OPQ(32, 4, init="pca")


def test_bad_data_are_clear_errors(small):
    xb, _ = small
    opq = OPQ(16, 4, nbits=4, n_iter=2)
    with pytest.raises(ValueError, match=r"not fitted; call fit\(x\) first"):
        opq.transform(xb)
    with pytest.raises(AttributeError, match="not fitted"):
        opq.rotation_
    with pytest.raises(ValueError, match="at least 16 rows"):
        opq.fit(xb[:10])
    bad = xb.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        opq.fit(bad)
    with pytest.raises(ValueError, match="expected d=16"):
        opq.fit(xb[:, :8])
    opq.fit(xb)
    with pytest.raises(ValueError, match="15 columns; expected d"):
        opq.transform(xb[:, :15])
    with pytest.raises(ValueError, match="must be 2-D"):
        opq.reverse_transform(xb[0])


def test_bad_index_compositions_are_clear_errors(small):
    xb, xq = small
    with pytest.raises(ValueError, match="transform has d=32 but the index d=16"):
        PreTransformIndex(OPQ(32, 4), FlatIndex(16))
    with pytest.raises(TypeError, match="transform must be one of OPQ"):
        PreTransformIndex(np.eye(16), FlatIndex(16))
    with pytest.raises(TypeError, match="index must be an index"):
        PreTransformIndex(OPQ(16, 4), ProductQuantizer(16, 4))
    filled = FlatIndex(16)
    filled.add(xb)
    with pytest.raises(ValueError, match="already holds 2500 vectors"):
        PreTransformIndex(OPQ(16, 4), filled)
    trained = IVFPQIndex(16, 8, 4, nbits=4)
    trained.train(xb)
    with pytest.raises(ValueError, match="trained on unrotated data"):
        PreTransformIndex(OPQ(16, 4), trained)
    index = PreTransformIndex(OPQ(16, 4, nbits=4, n_iter=2), FlatIndex(16))
    with pytest.raises(ValueError, match=r"must be trained before add\(\)"):
        index.add(xb)
    with pytest.raises(ValueError, match="empty"):
        index.search(xq, 3)
    index.train(xb)
    index.add(xb)
    with pytest.raises(ValueError, match="12 columns"):
        index.search(xq[:, :12], 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.search(xq, 0)
    with pytest.raises(AttributeError, match="FlatIndex has no 'nprobe'"):
        index.nprobe = 4
    graph = PreTransformIndex(OPQ(16, 4, nbits=4, n_iter=2), HNSWIndex(16, 8))
    graph.train(xb)
    graph.add_with_ids(xb, np.arange(len(xb)) + 10 ** 6)  # forwarded, ids kept
    assert graph.search(xb[:3], 1)[1][:, 0].tolist() == [10 ** 6, 10 ** 6 + 1, 10 ** 6 + 2]
