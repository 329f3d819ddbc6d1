"""8-bit scalar quantizer and its indexes: error bound, FAISS parity, NumPy twin, sizes,
persistence, copies, errors (issue 17)."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from retgen_ref import (FlatIndex, IVFFlatIndex, IVFSQIndex, ScalarQuantizer, SQIndex,
                        load_index)
from retgen_ref.distances import normalise_rows
from retgen_ref.reference import exact_search, pairwise_scores

METRICS = ["l2", "ip", "cosine"]
EPS32 = float(np.finfo(np.float32).eps)


def _max_error(x, sq):
    """Per-entry ``|x − decode(encode(x))|`` and the allowed half step plus rounding."""
    err = np.abs(x.astype(np.float64) - sq.decode(sq.encode(x)))
    scale = np.abs(sq.vmin_).astype(np.float64) + sq.vdiff_
    # float32 cannot round finer than its smallest subnormal: a floor for tiny ranges
    tiny = 4 * float(np.finfo(np.float32).smallest_subnormal)
    return err, sq.vdiff_.astype(np.float64) / 510 + 4 * EPS32 * scale + tiny


# -- the quantizer ------------------------------------------------------------------------
def test_hand_computed_codes_and_reconstructions():
    x = np.array([[0.0, -1.0, 5.0], [1.0, 1.0, 5.0], [0.5, 0.0, 5.0], [0.999, -0.999, 5.0]],
                 dtype=np.float32)
    sq = ScalarQuantizer(3).fit(x)
    assert sq.vmin_.tolist() == [0.0, -1.0, 5.0] and sq.vdiff_.tolist() == [1.0, 2.0, 0.0]
    # ⌊255 t⌋: t = 0.5 → 127 (not rounded to 128), t = 0.999 → 254, t = 1 → 255
    assert sq.encode(x).tolist() == [[0, 0, 0], [255, 255, 0], [127, 127, 0], [254, 0, 0]]
    decoded = sq.decode(np.array([[0, 255, 7], [127, 128, 255]]))
    np.testing.assert_allclose(decoded, [[0.5 / 255, -1 + 2 * 255.5 / 255, 5.0],
                                         [127.5 / 255, -1 + 2 * 128.5 / 255, 5.0]], rtol=1e-7)
    # values outside the range are clipped to its ends
    assert sq.encode([[-3.0, 9.0, 4.0]]).tolist() == [[0, 255, 0]]


@pytest.mark.parametrize("shift", [0.0, 1000.0])
def test_round_trip_error_is_at_most_half_a_step(shift):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((3000, 24)) * rng.uniform(0.01, 100, 24) + shift)
    x = x.astype(np.float32)
    x[:, 5] = 3.25  # a constant column: vdiff = 0, decoded exactly
    sq = ScalarQuantizer(24).fit(x)
    err, bound = _max_error(x, sq)
    assert (err <= bound).all(), float((err / bound).max())
    assert (err[:, 5] == 0).all()
    # the bound is tight: half a step is reached (so a decode without the +½ would fail)
    assert (err.max(axis=0)[sq.vdiff_ > 0] > 0.45 * sq.vdiff_[sq.vdiff_ > 0] / 255).all()
    np.testing.assert_allclose(sq.reconstruction_error(x), (err ** 2).sum(1).mean(), rtol=1e-9)


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=40),
                  elements=st.floats(-1e6, 1e6, width=32)))
def test_round_trip_bound_holds_for_any_data(x):
    sq = ScalarQuantizer(x.shape[1]).fit(x)
    err, bound = _max_error(x, sq)
    assert (err <= bound).all()


def test_quantile_ranges_clip_the_tails():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10_000, 8)).astype(np.float32)
    x[:3] = 1e3  # outliers that would waste the minmax range
    sq = ScalarQuantizer(8, range_stat="quantile", quantile=0.01).fit(x)
    s = np.sort(x, axis=0)
    np.testing.assert_array_equal(sq.vmin_, s[100])
    np.testing.assert_array_equal(sq.vdiff_, s[9899] - s[100])
    vmax = sq.vmin_.astype(np.float64) + sq.vdiff_
    outside = np.maximum(sq.vmin_ - x.astype(np.float64), 0) + np.maximum(x - vmax, 0)
    assert 0.015 < (outside > 0).mean() < 0.025  # about 2q of the values are clipped
    err, bound = _max_error(x, sq)
    assert (err <= bound + outside).all()
    assert (err[outside == 0] <= bound[np.nonzero(outside == 0)[1]]).all()
    minmax = ScalarQuantizer(8).fit(x)
    inside = (outside == 0).all(axis=1)
    assert sq.reconstruction_error(x[inside]) < minmax.reconstruction_error(x[inside]) / 1000


def test_quantizer_save_load_and_set_range(tmp_path):
    x = np.random.default_rng(3).standard_normal((500, 6)).astype(np.float32)
    sq = ScalarQuantizer(6, range_stat="quantile", quantile=0.05).fit(x)
    sq.save(tmp_path / "sq.npz")
    back = ScalarQuantizer.load(tmp_path / "sq.npz")
    assert (back.range_stat, back.quantile) == ("quantile", 0.05)
    np.testing.assert_array_equal(back.encode(x), sq.encode(x))
    np.testing.assert_array_equal(back.lut_, sq.lut_)
    other = ScalarQuantizer(6).set_range(sq.vmin_, sq.vdiff_)
    np.testing.assert_array_equal(other.decode(sq.encode(x)), sq.decode(sq.encode(x)))


def test_quantizer_errors():
    with pytest.raises(ValueError, match="unknown range_stat 'optim'"):
        ScalarQuantizer(4, range_stat="optim")
    with pytest.raises(ValueError, match="quantile must lie in"):
        ScalarQuantizer(4, range_stat="quantile", quantile=0.5)
    with pytest.raises(TypeError):
        ScalarQuantizer(4, "quantile")  # keyword-only after d
    sq = ScalarQuantizer(4)
    with pytest.raises(ValueError, match="not fitted; call fit"):
        sq.encode(np.ones((2, 4)))
    with pytest.raises(AttributeError):
        sq.vmin_
    sq.fit(np.random.default_rng(0).standard_normal((10, 4)))
    with pytest.raises(ValueError, match="3 columns"):
        sq.encode(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN or infinity"):
        sq.encode(np.array([[0, np.nan, 0, 0]]))
    with pytest.raises(TypeError, match="integer array"):
        sq.decode(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"values in \[0, 256\]"):
        sq.decode(np.array([[0, 1, 2, 256]]))
    with pytest.raises(ValueError, match="negative"):
        sq.set_range(np.zeros(4), -np.ones(4))


# -- parity with FAISS ----------------------------------------------------------------------
def _correlated(shift: float, n=20_000, nq=200, d=64, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) * (0.9 ** np.arange(d))[:, None]
    z = (rng.standard_normal((n + nq, d)) @ mixing + shift).astype(np.float32)
    return z[:n], z[n:]


def _ground_truth(x, xq, k=10):
    """Exact neighbours by a float64 brute force (centred: no cancellation at +1000)."""
    mean = x.astype(np.float64).mean(axis=0)
    b, q = x - mean, xq - mean
    dist = (q ** 2).sum(1)[:, None] - 2 * q @ b.T + (b ** 2).sum(1)[None]
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def _recall(I, I_ref):
    return np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(I, I_ref)])


@pytest.fixture(scope="module", params=[0.0, 1000.0], ids=["centred", "shifted+1000"])
def faiss_data(request):
    x, xq = _correlated(request.param)
    return x, xq, _ground_truth(x, xq)


def test_codes_and_reconstructions_match_faiss(faiss_data):
    faiss = pytest.importorskip("faiss")
    x, _, _ = faiss_data
    ours = ScalarQuantizer(64).fit(x)
    theirs = faiss.ScalarQuantizer(64, faiss.ScalarQuantizer.QT_8bit)
    theirs.train(x)
    trained = faiss.vector_to_array(theirs.trained)
    np.testing.assert_array_equal(ours.vmin_, trained[:64])
    np.testing.assert_array_equal(ours.vdiff_, trained[64:])
    codes = theirs.compute_codes(x)
    np.testing.assert_array_equal(ours.encode(x), codes)
    decoded = theirs.decode(codes)
    assert (ours.decode(codes) == decoded).mean() > 0.9999  # FAISS rounds as one FMA
    np.testing.assert_allclose(ours.decode(codes), decoded, rtol=2 * EPS32)
    faiss_mse = ((x.astype(np.float64) - decoded) ** 2).sum(1).mean()
    assert abs(ours.reconstruction_error(x) / faiss_mse - 1) < 0.03


def test_quantile_ranges_match_faiss(faiss_data):
    faiss = pytest.importorskip("faiss")
    x = faiss_data[0].copy()
    # FAISS 1.15's RS_quantiles transposes the data from row 1 on (row 0 is read as
    # zeros) and shares one scratch vector across its OpenMP threads; with row 0 zero and
    # one thread its ranges are the order statistics of the data.
    x[0] = 0.0
    ours = ScalarQuantizer(64, range_stat="quantile", quantile=0.001).fit(x)
    theirs = faiss.ScalarQuantizer(64, faiss.ScalarQuantizer.QT_8bit)
    theirs.rangestat, theirs.rangestat_arg = faiss.ScalarQuantizer.RS_quantiles, 0.001
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        theirs.train(x)
    finally:
        faiss.omp_set_num_threads(threads)
    trained = faiss.vector_to_array(theirs.trained)
    np.testing.assert_array_equal(ours.vmin_, trained[:64])
    np.testing.assert_array_equal(ours.vdiff_, trained[64:])
    np.testing.assert_array_equal(ours.encode(x), theirs.compute_codes(x))


def test_recall_matches_faiss_flat_and_ivf(faiss_data):
    faiss = pytest.importorskip("faiss")
    x, xq, truth = faiss_data
    ours = SQIndex(64)
    ours.train(x)
    ours.add(x)
    theirs = faiss.IndexScalarQuantizer(64, faiss.ScalarQuantizer.QT_8bit)
    theirs.train(x)
    theirs.add(x)
    I, I_faiss = ours.search(xq, 10)[1], theirs.search(xq, 10)[1]
    assert abs(_recall(I, truth) - _recall(I_faiss, truth)) <= 0.01
    assert _recall(I, truth) > 0.95

    nlist, nprobe = 64, 8
    ivf = IVFSQIndex(64, nlist)
    ivf.train(x)
    ivf.add(x)
    ivf.nprobe = nprobe
    I = ivf.search(xq, 10)[1]
    recall = _recall(I, truth)
    for centroids in (None, ivf.centroids):  # FAISS's own k-means, then ours
        coarse = faiss.IndexFlatL2(64)
        if centroids is not None:
            coarse.add(centroids)  # a trained quantizer: FAISS trains only the SQ
        other = faiss.IndexIVFScalarQuantizer(coarse, 64, nlist,
                                              faiss.ScalarQuantizer.QT_8bit)
        other.train(x)
        other.add(x)
        other.nprobe = nprobe
        assert abs(recall - _recall(other.search(xq, 10)[1], truth)) <= 0.01
    assert recall > 0.9


# -- agreement with the slow NumPy twin ---------------------------------------------------
def _assert_same_as_twin(D, I, xq, decoded, metric, rtol):
    """``(D, I)`` is the float64 brute force over ``decoded``: ids equal but among ties."""
    twin_metric = "l2" if metric == "l2" else "ip"
    q = normalise_rows(xq) if metric == "cosine" else xq
    D_ref, I_ref = exact_search(q, decoded, I.shape[1], twin_metric)
    scores = pairwise_scores(q, decoded, twin_metric)
    chosen = np.take_along_axis(scores, np.maximum(I, 0), axis=1)
    differ = I != I_ref
    np.testing.assert_allclose(chosen[differ], D_ref[differ], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(D, D_ref.astype(np.float32), rtol=rtol, atol=rtol)
    return differ.mean()


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2000, 16)) @ rng.standard_normal((16, 16))).astype(np.float32)
    return x, (rng.standard_normal((31, 16)) @ rng.standard_normal((16, 16))).astype(np.float32)


@pytest.mark.parametrize("metric,shift", [("l2", 0.0), ("l2", 1000.0), ("ip", 0.0),
                                          ("cosine", 0.0)])
def test_sq_index_equals_twin(small, metric, shift):
    x, xq = small[0] + shift, small[1] + shift
    index = SQIndex(16, metric)
    index.train(x)
    index.add(x)
    decoded = index.sq.decode(index.codes)
    for queries in (xq, xq[:1], xq[:2]):  # batch kernel and single-query kernel
        D, I = index.search(queries, 12)
        assert _assert_same_as_twin(D, I, queries, decoded, metric, rtol=1e-12) == 0
        assert (index.last_search_stats["entries_scanned"] == 2000).all()
    np.testing.assert_array_equal(index.reconstruct_n(0, 2000), decoded)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("by_residual", [True, False])
def test_ivf_sq_index_equals_twin_over_the_probed_lists(small, metric, by_residual):
    x, xq = small
    index = IVFSQIndex(16, 16, metric, by_residual=by_residual)
    index.train(x)
    index.add(x)
    decoded = index.reconstruct_n(0, 2000)  # y_l + r̂ (x̂ without residuals)
    index.nprobe = 16  # every list: the brute force over the reconstructions
    D, I = index.search(xq, 10)
    assert _assert_same_as_twin(D, I, xq, decoded, metric, rtol=2e-5) < 0.02
    assert (index.last_search_stats["entries_scanned"] == 2000).all()
    index.nprobe = 3  # a few lists: the brute force over their entries only
    q = index._prepare(xq, "xq")
    _, probes = index._coarse_search(q, 3)
    assign = index._assign(index._prepare(x, "x"))
    for nq in (len(xq), 1):
        D, I = index.search(xq[:nq], 10)
        for i in range(nq):
            members = np.flatnonzero(np.isin(assign, probes[i]))
            D_ref, I_ref = exact_search(q[i:i + 1], decoded[members], 10,
                                        "l2" if metric == "l2" else "ip")
            np.testing.assert_allclose(D[i], D_ref[0], rtol=2e-5, atol=2e-5)
            assert len(set(I[i]) ^ set(members[I_ref[0]])) <= 2  # near-ties aside
        expected = index.lists.sizes[probes[:nq]].sum(axis=1)
        assert np.array_equal(index.last_search_stats["entries_scanned"], expected)


# -- sizes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", METRICS)
def test_k_beyond_ntotal_pads_and_one_vector(small, metric):
    x, xq = small
    pad = np.inf if metric == "l2" else -np.inf
    index = SQIndex(16, metric)
    index.train(x)
    with pytest.raises(ValueError, match="empty; add vectors"):
        index.search(xq, 3)
    index.add(x[:1])
    D, I = index.search(xq[:4], 3)
    assert (I[:, 0] == 0).all() and (I[:, 1:] == -1).all() and (D[:, 1:] == pad).all()
    index.add(x[1:5])
    for nq in (1, 4):
        D, I = index.search(xq[:nq], 9)
        assert (np.sort(I[:, :5], axis=1) == np.arange(5)).all()
        assert (I[:, 5:] == -1).all() and (D[:, 5:] == pad).all()
        assert D.dtype == np.float32 and I.dtype == np.int64
    ivf = IVFSQIndex(16, 8, metric)
    ivf.train(x)
    with pytest.raises(ValueError, match="empty; add vectors"):
        ivf.search(xq, 3)
    ivf.add(x[:3])
    ivf.nprobe = 8
    for nq in (1, 4):
        D, I = ivf.search(xq[:nq], 5)
        assert (np.sort(I[:, :3], axis=1) == np.arange(3)).all()
        assert (I[:, 3:] == -1).all() and (D[:, 3:] == pad).all()
    ivf.reset()
    assert ivf.ntotal == 0 and ivf.is_trained
    index.reset()
    assert index.ntotal == 0 and index.is_trained


def test_ivf_sq_own_ids_and_removal(small):
    x, xq = small
    index = IVFSQIndex(16, 8)
    index.train(x)
    index.add_with_ids(x[:100], np.arange(1000, 1100))
    index.nprobe = 8
    assert index.search(x[:5], 1)[1][:, 0].tolist() == [1000, 1001, 1002, 1003, 1004]
    assert index.remove_ids(np.arange(1000, 1050)) == 50 and index.ntotal == 50
    I = index.search(xq, 60)[1]
    assert set(I[I >= 0].tolist()) == set(range(1050, 1100))
    np.testing.assert_allclose(index.reconstruct(1060), x[60], atol=float(index.sq.vdiff_.max()))


def test_compression():
    x = np.random.default_rng(5).standard_normal((1000, 32)).astype(np.float32)
    index, flat = SQIndex(32), FlatIndex(32)
    index.train(x)
    index.add(x)
    flat.add(x)
    assert index.nbytes == 1000 * 32 + 2 * 4 * 32
    assert flat.nbytes == 4 * (index.nbytes - 2 * 4 * 32)


# -- persistence and copies -----------------------------------------------------------------
def _built(kind, x, metric="l2"):
    if kind == "sq":
        index = SQIndex(16, metric, range_stat="quantile", quantile=0.01)
    else:
        index = IVFSQIndex(16, 8, metric, by_residual=kind == "ivfsq", seed=2)
    index.train(x)
    index.add(x)
    if kind != "sq":
        index.nprobe = 3
    return index


@pytest.mark.parametrize("kind", ["sq", "ivfsq", "ivfsq-direct"])
def test_save_load_round_trip_and_copies(small, tmp_path, kind):
    x, xq = small
    index = _built(kind, x, "ip")
    D, I = index.search(xq, 10)
    index.save(tmp_path / "index.npz")
    loaded = load_index(tmp_path / "index.npz")
    assert type(loaded) is type(index) and loaded.metric == "ip"
    assert loaded.sq.range_stat == index.sq.range_stat
    np.testing.assert_array_equal(loaded.sq.lut_, index.sq.lut_)
    np.testing.assert_array_equal(loaded.reconstruct_n(0, 2000), index.reconstruct_n(0, 2000))
    for other in (loaded, pickle.loads(pickle.dumps(index)), copy.deepcopy(index)):
        D2, I2 = other.search(xq, 10)
        np.testing.assert_array_equal(D2, D)
        np.testing.assert_array_equal(I2, I)
        assert other.nbytes == index.nbytes
    twin = copy.deepcopy(index)
    twin.add(x[:10])  # a copy is independent of the original
    assert twin.ntotal == 2010 and index.ntotal == 2000
    untrained = SQIndex(16) if kind == "sq" else IVFSQIndex(16, 8)
    untrained.save(tmp_path / "untrained.npz")
    assert not load_index(tmp_path / "untrained.npz").is_trained


def test_damaged_file_is_a_clear_error(small, tmp_path):
    index = _built("sq", small[0])
    index.save(tmp_path / "index.npz")
    raw = bytearray((tmp_path / "index.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "index.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError):
        load_index(tmp_path / "index.npz")


# -- errors ---------------------------------------------------------------------------------
def _message(call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return str(info.value)


@pytest.mark.parametrize("kind", ["sq", "ivfsq"])
def test_bad_input_gives_the_same_errors_as_other_indexes(small, kind):
    x, xq = small
    index = SQIndex(16) if kind == "sq" else IVFSQIndex(16, 8)
    peer = FlatIndex(16) if kind == "sq" else IVFFlatIndex(16, 8)
    name, peer_name = type(index).__name__, type(peer).__name__
    untrained = _message(lambda: index.add(x))
    assert untrained == f"{name} must be trained before add(); call train(x)"
    if kind != "sq":  # (a FlatIndex needs no training)
        assert untrained == _message(lambda: peer.add(x)).replace(peer_name, name)
    assert "empty; add vectors" in _message(lambda: index.search(xq, 1))
    nan = x[:5].copy()
    nan[2, 3] = np.nan
    for bad in (np.ones((5, 17)), nan, x[0], np.ones((0, 16))):
        peer_call = peer.add if kind == "sq" else peer.train
        assert _message(lambda: index.train(bad)) == _message(lambda: peer_call(bad))
    index.train(x)
    if kind == "sq":
        peer.add(x)
    else:
        peer.train(x)
    for bad in (np.ones((5, 17)), nan, x[0], np.array([["a"] * 16])):
        assert _message(lambda: index.add(bad)) == _message(lambda: peer.add(bad))
    index.add(x)
    if kind != "sq":
        peer.add(x)
    for bad_k in (0, -1, 2.5, True):
        assert _message(lambda: index.search(xq, bad_k)) == _message(
            lambda: peer.search(xq, bad_k))
    for bad in (np.ones((5, 17)), nan):
        assert _message(lambda: index.search(bad, 3)) == _message(lambda: peer.search(bad, 3))
    assert "17 columns; expected d (this index's dimension)=16" in _message(
        lambda: index.search(np.ones((2, 17)), 1))
    assert "NaN or infinity" in _message(lambda: index.add(nan))
    assert "not in this" in _message(lambda: index.reconstruct(5000))
    with pytest.raises(TypeError):
        SQIndex(16, "l2", "quantile")  # keyword-only after metric
    with pytest.raises(ValueError, match="unknown metric"):
        SQIndex(16, "hamming")
