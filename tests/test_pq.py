"""ProductQuantizer: exact identities of PQ (hypothesis), brute-force agreement, FAISS parity."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retgen_ref import FlatIndex, KMeans, num_threads, persist
from retgen_ref.pq import ProductQuantizer, _SubspaceKMeans
from retgen_ref.synthetic import gaussian_mixture


def _random_pq(m, dsub, nbits, seed):
    """A quantizer with Gaussian codebooks (no training needed) and its RNG."""
    rng = np.random.default_rng(seed)
    pq = ProductQuantizer(m * dsub, m, nbits)
    pq.codebooks_ = rng.standard_normal((m, 2 ** nbits, dsub)).astype(np.float32)
    return pq, rng


def _subspace_sq_dists(pq, x):
    """(n, m, ksub) float64 ‖x_j − C_{j,c}‖², by direct differences."""
    xs = np.asarray(x, np.float64).reshape(len(x), pq.m, 1, pq.dsub)
    return ((xs - pq.codebooks_.astype(np.float64)[None]) ** 2).sum(-1)


shapes = st.tuples(st.integers(1, 5), st.integers(1, 9), st.integers(1, 8),
                   st.integers(0, 2 ** 32 - 1))  # m, dsub, nbits, seed


# -- construction and validation ----------------------------------------------------------
def test_parameters_and_their_errors():
    pq = ProductQuantizer(12, 3, nbits=5)
    assert (pq.dsub, pq.ksub, pq.code_size) == (4, 32, 2)
    with pytest.raises(ValueError,
                       match=r"m=5 does not divide d=12; use one of \[1, 2, 3, 4, 6, 12\]"):
        ProductQuantizer(12, 5)
    for nbits in (0, 9):
        with pytest.raises(ValueError, match="nbits"):
            ProductQuantizer(12, 3, nbits)
    with pytest.raises(TypeError, match="nbits"):
        ProductQuantizer(12, 3, 4.0)


def test_unfitted_use_is_a_clear_error(tmp_path):
    pq = ProductQuantizer(8, 2, 4)
    x = np.zeros((3, 8), np.float32)
    for call in (lambda: pq.encode(x), lambda: pq.decode(np.zeros((3, 2), np.uint8)),
                 lambda: pq.compute_distance_tables(x), pq.sdc_table,
                 lambda: pq.reconstruction_error(x), lambda: pq.save(tmp_path / "pq.npz")):
        with pytest.raises(ValueError, match=r"not fitted; call fit\(x\) first"):
            call()
    assert not hasattr(pq, "codebooks_")
    assert pq.unpack_codes(pq.pack_codes([[1, 15]])).tolist() == [[1, 15]]  # needs no fit


def test_bad_inputs_are_clear_errors():
    pq, rng = _random_pq(2, 3, 4, 0)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="x has 5 columns; expected d"):
        pq.encode(x[:, :5])
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pq.encode(x)
    with pytest.raises(ValueError, match="cannot train ksub=16 codewords .* 10 vectors"):
        ProductQuantizer(6, 2, 4).fit(np.ones((10, 6)))
    with pytest.raises(ValueError,
                       match=r"codes holds values in \[0, 16\]; each must lie in \[0, 16\)"):
        pq.decode([[0, 16]])
    with pytest.raises(ValueError, match=r"\[-1, 3\]"):
        pq.decode(np.array([[-1, 3]]))
    with pytest.raises(TypeError, match="integer array"):
        pq.decode(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="expected m=2"):
        pq.sdc_distances(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    with pytest.raises(ValueError, match="expected code_size=1"):
        pq.unpack_codes(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="unknown metric 'cosine'"):
        pq.compute_distance_tables(np.ones((1, 6)), metric="cosine")
    with pytest.raises(ValueError, match="float32 or float64"):
        pq.compute_distance_tables(np.ones((1, 6)), dtype=np.float16)
    with pytest.raises(ValueError, match=r"shape \(nq, m, ksub\)"):
        pq.adc_distances(np.zeros((1, 2, 8)), np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match=r"expected \(m, ksub, dsub\) = \(2, 16, 3\)"):
        pq.codebooks_ = np.zeros((2, 8, 3))
    with pytest.raises(ValueError, match="read-only"):
        pq.codebooks_[0, 0, 0] = 1.0  # a stale transposed copy is impossible


# -- training -------------------------------------------------------------------------------
def test_fit_is_deterministic_and_thread_independent():
    x = gaussian_mixture(3000, 12, n_clusters=20, seed=4)
    a = ProductQuantizer(12, 3, 5, seed=7).fit(x)
    with num_threads(1):
        b = ProductQuantizer(12, 3, 5, seed=7).fit(x)
    c = ProductQuantizer(12, 3, 5, seed=8).fit(x)
    assert a.codebooks_.shape == (3, 32, 4) and a.codebooks_.dtype == np.float32
    assert np.array_equal(a.codebooks_, b.codebooks_)
    assert not np.array_equal(a.codebooks_, c.codebooks_)


def test_large_training_sets_are_subsampled_with_one_warning():
    x = gaussian_mixture(1500, 8, seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ProductQuantizer(8, 4, nbits=2).fit(x)  # 256 · ksub = 1024 < 1500
        ProductQuantizer(8, 4, nbits=3).fit(x)  # 2048 ≥ 1500: no warning
    assert [str(w.message) for w in caught] == [
        "ProductQuantizer: training each subspace on 1024 of 1500 vectors (256 × ksub, as FAISS)"]


def test_subspace_kmeans_is_kmeans_with_a_faster_assignment():
    x = gaussian_mixture(4000, 5, n_clusters=30, seed=2)
    ours = _SubspaceKMeans(64, seed=3).fit(x)
    ref = KMeans(64, seed=3).fit(x)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, atol=1e-5)
    np.testing.assert_allclose(ours.objective_history_, ref.objective_history_, rtol=1e-5)
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 4), dsub=st.integers(1, 5), nbits=st.integers(1, 4),
       extra=st.integers(0, 100), seed=st.integers(0, 1000))
def test_distortion_is_the_sum_of_subspace_distortions(m, dsub, nbits, extra, seed):
    pq = ProductQuantizer(m * dsub, m, nbits, seed=seed)
    x = np.random.default_rng(seed).standard_normal((pq.ksub + extra, pq.d)).astype(np.float32)
    pq.fit(x)
    per_subspace = _subspace_sq_dists(pq, x).min(axis=2).mean(axis=0)  # (m,), independently
    assert pq.reconstruction_error(x) == pytest.approx(per_subspace.sum(), rel=1e-6, abs=1e-9)


# -- encoding ---------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(shape=shapes, n=st.integers(1, 150))
def test_encode_is_the_nearest_codeword(shape, n):
    m, dsub, nbits, seed = shape
    pq, rng = _random_pq(m, dsub, nbits, seed)
    x = rng.standard_normal((n, pq.d)).astype(np.float32)
    codes = pq.encode(x)
    assert codes.dtype == np.uint8 and codes.shape == (n, m)
    dist = _subspace_sq_dists(pq, x)
    chosen = np.take_along_axis(dist, codes[:, :, None].astype(np.int64), axis=2)[:, :, 0]
    best = dist.min(axis=2)
    np.testing.assert_allclose(chosen, best, rtol=1e-5, atol=1e-6)  # float32 near-ties only
    assert (codes == dist.argmin(axis=2)).mean() >= 0.99


@settings(max_examples=40, deadline=None)
@given(shape=shapes, n=st.integers(1, 60))
def test_encode_of_decode_returns_the_first_equal_codeword(shape, n):
    """``encode(decode(c)) = c`` for distinct codewords; equal ones give the smallest code."""
    m, dsub, nbits, seed = shape
    pq, rng = _random_pq(m, dsub, nbits, seed)
    values = np.array([-1.5, 0.0, 0.5, 2.0], np.float32)  # few values: many equal codewords
    pq.codebooks_ = values[rng.integers(0, 4, size=pq.codebooks_.shape)]
    codes = rng.integers(0, pq.ksub, size=(n, m)).astype(np.uint8)
    xhat = pq.decode(codes)
    assert xhat.dtype == np.float32 and xhat.shape == (n, pq.d)
    cb = pq.codebooks_
    first_equal = np.array([[np.flatnonzero((cb[j] == cb[j, c]).all(axis=1))[0]
                             for j, c in enumerate(row)] for row in codes])
    np.testing.assert_array_equal(pq.encode(xhat), first_equal)
    distinct = [len(np.unique(cb[j], axis=0)) == pq.ksub for j in range(m)]
    np.testing.assert_array_equal(pq.encode(xhat)[:, distinct], codes[:, distinct])


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 12), nbits=st.integers(1, 8), n=st.integers(1, 30),
       seed=st.integers(0, 1000))
def test_pack_unpack_round_trip(m, nbits, n, seed):
    pq = ProductQuantizer(m, m, nbits)
    codes = np.random.default_rng(seed).integers(0, 2 ** nbits, size=(n, m)).astype(np.uint8)
    packed = pq.pack_codes(codes)
    assert packed.dtype == np.uint8 and packed.shape == (n, pq.code_size)
    assert pq.code_size == -(-m * nbits // 8)
    if m * nbits % 8 == 0:
        assert pq.code_size == m * nbits // 8
    # the bit stream, least significant bit first, read back as one integer per row
    stream = [sum(int(b) << (8 * k) for k, b in enumerate(row)) for row in packed]
    assert stream == [sum(int(c) << (nbits * j) for j, c in enumerate(row)) for row in codes]
    np.testing.assert_array_equal(pq.unpack_codes(packed), codes)


def test_pack_codes_by_hand():
    # 5 + 3·8 + 7·64 = 477 = 0x01DD, little-endian bytes
    assert ProductQuantizer(3, 3, 3).pack_codes([[5, 3, 7]]).tolist() == [[0xDD, 0x01]]
    assert ProductQuantizer(2, 2, 4).pack_codes([[1, 2]]).tolist() == [[0x21]]


# -- distances -------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(shape=shapes, n=st.integers(1, 40), nq=st.integers(1, 5))
def test_adc_is_the_distance_to_the_reconstruction(shape, n, nq):
    m, dsub, nbits, seed = shape
    pq, rng = _random_pq(m, dsub, nbits, seed)
    x = rng.standard_normal((n, pq.d)).astype(np.float32)
    q = rng.standard_normal((nq, pq.d))  # float64: float64 tables must use every bit of it
    codes = pq.encode(x)
    xhat, q64, x64 = pq.decode(codes).astype(np.float64), q, x.astype(np.float64)
    l2 = ((q64[:, None] - xhat[None]) ** 2).sum(-1)
    ip = q64 @ xhat.T

    tables = pq.compute_distance_tables(q, "l2", dtype=np.float64)
    assert tables.shape == (nq, m, pq.ksub) and tables.dtype == np.float64
    np.testing.assert_allclose(tables, _subspace_sq_dists(pq, q), rtol=1e-12, atol=1e-12)
    adc = pq.adc_distances(tables, codes)
    assert adc.dtype == np.float64 and adc.shape == (nq, n)
    np.testing.assert_allclose(adc, l2, rtol=1e-12, atol=1e-12)
    scale = np.linalg.norm(q64, axis=1)[:, None] * np.linalg.norm(xhat, axis=1)[None]
    adc_ip = pq.adc_distances(pq.compute_distance_tables(q, "ip", dtype=np.float64), codes)
    np.testing.assert_allclose(adc_ip, ip, rtol=0, atol=1e-12 * (1 + scale.max()))

    adc32 = pq.adc_distances(pq.compute_distance_tables(q), codes)
    assert adc32.dtype == np.float32 and (adc32 >= 0).all()
    np.testing.assert_allclose(adc32, l2, rtol=1e-5, atol=1e-5)

    # triangle inequality: |‖q − x̂‖ − ‖q − x‖| ≤ ‖x − x̂‖
    exact = np.sqrt(((q64[:, None] - x64[None]) ** 2).sum(-1))
    err = np.sqrt(((x64 - xhat) ** 2).sum(-1))
    assert (np.abs(np.sqrt(adc) - exact) <= err[None] + 1e-9).all()


@settings(max_examples=30, deadline=None)
@given(shape=shapes, na=st.integers(1, 20), nb=st.integers(1, 20))
def test_sdc_table_and_distances(shape, na, nb):
    m, dsub, nbits, seed = shape
    pq, rng = _random_pq(m, dsub, nbits, seed)
    cb = pq.codebooks_.astype(np.float64)
    S = pq.sdc_table()
    assert S.shape == (m, pq.ksub, pq.ksub) and S.dtype == np.float32
    pairwise = ((cb[:, :, None] - cb[:, None, :]) ** 2).sum(-1)
    np.testing.assert_allclose(S, pairwise, rtol=1e-6, atol=0)
    assert np.array_equal(S, S.transpose(0, 2, 1))
    assert (np.diagonal(S, axis1=1, axis2=2) == 0).all()
    a = rng.integers(0, pq.ksub, size=(na, m))
    b = rng.integers(0, pq.ksub, size=(nb, m)).astype(np.uint8)
    xa, xb = pq.decode(a).astype(np.float64), pq.decode(b).astype(np.float64)
    D = pq.sdc_distances(a, b)
    assert D.dtype == np.float32 and D.shape == (na, nb)
    np.testing.assert_allclose(D, ((xa[:, None] - xb[None]) ** 2).sum(-1), rtol=1e-5, atol=1e-6)


# -- persistence -----------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    x = gaussian_mixture(2000, 12, seed=5)
    pq = ProductQuantizer(12, 4, 6, seed=3).fit(x)
    pq.save(tmp_path / "pq.npz")
    back = ProductQuantizer.load(tmp_path / "pq.npz")
    assert (back.d, back.m, back.nbits, back.seed) == (12, 4, 6, 3)
    assert back.codebooks_.dtype == np.float32
    assert np.array_equal(back.codebooks_, pq.codebooks_)
    assert np.array_equal(back.encode(x), pq.encode(x))


def test_load_rejects_damaged_foreign_and_inconsistent_files(tmp_path):
    pq, _ = _random_pq(2, 3, 4, 0)
    path = tmp_path / "pq.npz"
    pq.save(path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged"):
        ProductQuantizer.load(tmp_path / "bad.npz")
    index = FlatIndex(4)
    index.add(np.eye(4))
    index.save(tmp_path / "flat.npz")
    with pytest.raises(ValueError, match="holds a 'FlatIndex', not a 'ProductQuantizer'"):
        ProductQuantizer.load(tmp_path / "flat.npz")
    persist.save_state(tmp_path / "odd.npz", "ProductQuantizer",
                       {"d": 6, "m": 2, "nbits": 4, "seed": 0},
                       {"codebooks": np.zeros((2, 8, 3), np.float32)})
    with pytest.raises(ValueError, match="inconsistent ProductQuantizer: .*expected"):
        ProductQuantizer.load(tmp_path / "odd.npz")


# -- FAISS parity -----------------------------------------------------------------------------
@pytest.mark.parametrize("m,nbits", [(8, 8), (4, 6)])
def test_reconstruction_error_matches_faiss(m, nbits):
    faiss = pytest.importorskip("faiss")
    x = gaussian_mixture(20_000, 32, seed=11)
    ref = faiss.ProductQuantizer(32, m, nbits)
    ref.verbose = False
    ref.train(x)
    faiss_error = ((x.astype(np.float64) - ref.decode(ref.compute_codes(x))) ** 2).sum(1).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbits=6 subsamples, like FAISS
        pq = ProductQuantizer(32, m, nbits).fit(x)
    assert pq.reconstruction_error(x) == pytest.approx(faiss_error, rel=0.03)

    # FAISS's codebooks in our quantizer: the same codes, in the same packed layout
    pq.codebooks_ = faiss.vector_to_array(ref.centroids).reshape(m, 2 ** nbits, 32 // m)
    faiss_packed = ref.compute_codes(x[:2000])
    ours = pq.encode(x[:2000])
    faiss_codes = pq.unpack_codes(faiss_packed)
    np.testing.assert_array_equal(pq.pack_codes(faiss_codes), faiss_packed)
    assert (faiss_codes == ours).mean() >= 0.999  # any difference is a float32 near-tie
