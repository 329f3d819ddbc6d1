"""benchmarks/datasets.py: ann-benchmarks HDF5 files, exact ground truth, corpus-made datasets."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

ROOT = Path(__file__).resolve().parent.parent


def _load(name, filename):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bd = _load("bench_datasets", "datasets.py")


def tiny(metric="l2", seed=0, n=60, nq=7, d=5, k=10, distances=True):
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((n, d)).astype(np.float32)
    test = rng.standard_normal((nq, d)).astype(np.float32)
    ids, values = bd.exact_knn(train, test, k, metric)
    return bd.Dataset(f"tiny-{metric}", metric, train, test, ids,
                      bd.file_distances(values, metric) if distances else None,
                      '{"made by": "test", "seed": 0}')


def raw_file(path, attrs=None, **arrays):
    """An HDF5 file with exactly these datasets and attributes (no checks)."""
    with h5py.File(path, "w") as f:
        for key, a in arrays.items():
            f.create_dataset(key, data=a)
        f.attrs.update({"distance": "euclidean"} if attrs is None else attrs)
    return path


def good_arrays(n=20, nq=4, d=3, k=5):
    rng = np.random.default_rng(1)
    return {"train": rng.standard_normal((n, d)).astype(np.float32),
            "test": rng.standard_normal((nq, d)).astype(np.float32),
            "neighbors": np.tile(np.arange(k, dtype=np.int32), (nq, 1))}


# -- round trip -------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
@pytest.mark.parametrize("with_distances", [True, False])
def test_write_read_round_trip_is_exact(tmp_path, metric, with_distances):
    ds = tiny(metric, distances=with_distances)
    path = bd.write_hdf5(tmp_path / "tiny.hdf5", ds)
    back = bd.read_hdf5(path)
    assert (back.name, back.metric, back.provenance) == (ds.name, ds.metric, ds.provenance)
    for key in ("train", "test", "neighbors"):
        a, b = getattr(ds, key), getattr(back, key)
        assert a.dtype == b.dtype and np.array_equal(a, b) and b.flags.c_contiguous
    assert back.train.dtype == np.float32 and back.neighbors.dtype == np.int64
    if with_distances:
        assert back.distances.dtype == np.float32 and np.array_equal(back.distances, ds.distances)
    else:
        assert back.distances is None
    with h5py.File(path, "r") as f:  # the ann-benchmarks layout, readable by its tools
        assert f.attrs["distance"] == {"l2": "euclidean", "ip": "dot", "cosine": "angular"}[metric]
        assert f.attrs["dimension"] == 5 and f["neighbors"].dtype == np.int32
        assert sorted(f) == sorted(["train", "test", "neighbors"]
                                   + (["distances"] if with_distances else []))
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.hdf5"]  # no temp file left


def test_write_is_atomic_and_leaves_no_temp_file_on_failure(tmp_path):
    path = bd.write_hdf5(tmp_path / "d.hdf5", tiny())
    before = path.read_bytes()
    bad = tiny()
    bad.neighbors = bad.neighbors + 1000  # refused before anything is written
    with pytest.raises(ValueError, match="outside"):
        bd.write_hdf5(path, bad)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["d.hdf5"]


def test_file_distances_follow_ann_benchmarks_conventions():
    ds = tiny("l2")
    diff = ds.train[ds.neighbors].astype(np.float64) - ds.test[:, None].astype(np.float64)
    np.testing.assert_allclose(ds.distances, np.linalg.norm(diff, axis=2), rtol=1e-6)
    ds = tiny("cosine")
    x = ds.train / np.linalg.norm(ds.train, axis=1, keepdims=True)
    q = ds.test / np.linalg.norm(ds.test, axis=1, keepdims=True)
    np.testing.assert_allclose(ds.distances, 1 - np.einsum("qkd,qd->qk", x[ds.neighbors], q),
                               rtol=1e-5, atol=1e-6)


# -- validation: one bad input each, the message names the file and the problem ----------------
def _replace(arrays, **changes):
    out = {**arrays, **changes}
    return {k: v for k, v in out.items() if v is not None}


BAD = {
    "missing neighbors": (dict(neighbors=None), None, "no dataset 'neighbors'"),
    "missing train": (dict(train=None), None, "no dataset 'train'"),
    "train rank 1": (dict(train=np.zeros(20, np.float32)), None, "'train' has rank 1"),
    "neighbors rank 3": (dict(neighbors=np.zeros((4, 5, 1), np.int32)), None,
                         "'neighbors' has rank 3"),
    "train integer": (dict(train=np.zeros((20, 3), np.int64)), None,
                      "'train' has dtype int64, not float"),
    "test bytes": (dict(test=np.zeros((4, 3), np.uint8)), None, "'test' has dtype uint8"),
    "neighbors float": (dict(neighbors=np.zeros((4, 5), np.float32)), None,
                        "'neighbors' has dtype float32"),
    "dimension mismatch": (dict(test=np.zeros((4, 4), np.float32)), None,
                           "'test' has 4 columns but 'train' has 3"),
    "neighbors rows": (dict(neighbors=np.zeros((3, 5), np.int32)), None,
                       "'neighbors' has 3 rows but 'test' has 4"),
    "id too large": (dict(neighbors=np.full((4, 5), 20, np.int32)), None,
                     r"ids from 20 to 20, outside \[0, 20\)"),
    "id negative": (dict(neighbors=np.full((4, 5), -1, np.int32)), None,
                    r"ids from -1 to -1, outside \[0, 20\)"),
    "NaN in train": (dict(train=np.where(np.eye(20, 3) > 0, np.nan, 0).astype(np.float32)),
                     None, "'train' holds NaN or infinity \\(first at row 0, column 0\\)"),
    "inf in test": (dict(test=np.array([[0, 0, 0]] * 3 + [[0, np.inf, 0]], np.float32)), None,
                    "'test' holds NaN or infinity \\(first at row 3, column 1\\)"),
    "NaN in distances": (dict(distances=np.full((4, 5), np.nan, np.float32)), None,
                         "'distances' holds NaN"),
    "distances shape": (dict(distances=np.zeros((4, 4), np.float32)), None,
                        "'distances' has shape \\(4, 4\\) but 'neighbors' \\(4, 5\\)"),
    "unknown distance": ({}, {"distance": "hamming"}, "unknown distance 'hamming'"),
    "no distance attribute": ({}, {}, "no 'distance' attribute"),
    "empty train": (dict(train=np.zeros((0, 3), np.float32)), None, "'train' is empty"),
    "empty test": (dict(test=np.zeros((0, 3), np.float32),
                        neighbors=np.zeros((0, 5), np.int32)), None, "'test' is empty"),
    "no neighbour columns": (dict(neighbors=np.zeros((4, 0), np.int32)), None,
                             "'neighbors' has 0 columns"),
    "zero dimensions": (dict(train=np.zeros((20, 0), np.float32),
                             test=np.zeros((4, 0), np.float32)), None, "0 dimensions"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_bad_input_is_a_clear_error(tmp_path, case):
    changes, attrs, message = BAD[case]
    path = raw_file(tmp_path / "bad.hdf5", attrs, **_replace(good_arrays(), **changes))
    with pytest.raises(ValueError, match=message) as err:
        bd.read_hdf5(path)
    assert str(err.value).startswith(str(path))


def test_the_good_arrays_pass(tmp_path):
    ds = bd.read_hdf5(raw_file(tmp_path / "ok.hdf5", {"distance": b"angular"}, **good_arrays()))
    assert ds.metric == "cosine" and ds.name == "ok" and "read from" in ds.provenance
    x, q, metric = ds.for_search()
    assert metric == "ip" and np.allclose(np.linalg.norm(x, axis=1), 1)
    for name in ("dot", "ip"):
        assert bd.read_hdf5(raw_file(tmp_path / f"{name}.hdf5", {"distance": name},
                                     **good_arrays())).metric == "ip"


def test_missing_corrupt_and_truncated_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        bd.read_hdf5(tmp_path / "absent.hdf5")
    junk = tmp_path / "junk.hdf5"
    junk.write_bytes(b"this is not an HDF5 file\n" * 100)
    with pytest.raises(ValueError, match="junk.hdf5: not a readable HDF5 file"):
        bd.read_hdf5(junk)
    full = bd.write_hdf5(tmp_path / "full.hdf5", tiny(n=2000, d=16)).read_bytes()
    for cut in (len(full) // 2, len(full) - 100, 1000):
        truncated = tmp_path / f"cut{cut}.hdf5"
        truncated.write_bytes(full[:cut])
        with pytest.raises(ValueError, match=f"cut{cut}.hdf5: not a readable HDF5 file"):
            bd.read_hdf5(truncated)


# -- exact ground truth -----------------------------------------------------------------------
def brute_force(train, test, metric):
    """Every distance in float64, directly; ids sorted nearest first, ties by smaller id."""
    x, q = train.astype(np.float64), test.astype(np.float64)
    if metric == "l2":
        score = ((x[None, :, :] - q[:, None, :]) ** 2).sum(axis=2)
    else:
        score = -(x[None, :, :] * q[:, None, :]).sum(axis=2)
    order = np.argsort(score, axis=1, kind="stable")
    values = np.take_along_axis(score, order, 1)
    return order, values if metric == "l2" else -values


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_exact_knn_matches_full_brute_force(metric, seed):
    rng = np.random.default_rng(seed)
    n, d, k = 700, 12, 25
    train = (rng.standard_normal((n, d)) + 1000).astype(np.float32)
    train[rng.integers(0, n, 150)] = train[rng.integers(0, n, 150)]  # duplicates: exact ties
    test = (rng.standard_normal((40, d)) + 1000).astype(np.float32)
    test[:8] = train[rng.integers(0, n, 8)]  # queries sitting on base vectors
    order, values = brute_force(train, test, metric)
    for block_bytes in (2 ** 12, 2 ** 24):  # many small tiles, and one tile
        ids, vals = bd.exact_knn(train, test, k, metric, block_bytes=block_bytes)
        assert ids.dtype == np.int64 and ids.shape == (40, k)
        np.testing.assert_array_equal(ids, order[:, :k])
        np.testing.assert_allclose(vals, values[:, :k], rtol=1e-13)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_knn_with_more_ties_than_candidates(metric, seed):
    rng = np.random.default_rng(seed)
    train = (rng.standard_normal((3000, 6)) + 1000).astype(np.float32)
    tied = rng.choice(3000, 300, replace=False)  # 300 equal vectors, the nearest to the
    train[tied] = train[tied[0]] * np.float32(1.01)  # query in both metrics: more than
    test = np.repeat(train[tied[:1]], 3, axis=0)  # the 2k candidates kept per query
    ids, _ = bd.exact_knn(train, test, 10, metric)
    np.testing.assert_array_equal(ids, brute_force(train, test, metric)[0][:, :10])
    assert set(ids[0]) <= set(tied)


# -- corpus-made datasets ---------------------------------------------------------------------
def small_recipe(name):
    """The recipe on the first 20,000 training tokens, small word vectors: a second's build."""
    return {**bd.recipes()[name], "train_tokens": 20_000, "n_queries": 30, "k": 10,
            "word_dim": 16}


@pytest.mark.parametrize("name", bd.CORPUS_DATASETS)
def test_corpus_recipe_is_deterministic_and_cached(tmp_path, name):
    recipe = small_recipe(name)
    first = bd.load(name, folder=tmp_path / "a", recipe=recipe)
    second = bd.load(name, folder=tmp_path / "b", recipe=recipe, rebuild=True)
    path_a, path_b = (bd.cached_path(name, recipe, tmp_path / f) for f in "ab")
    assert path_a.name == path_b.name and path_a.exists() and path_b.exists()
    for key in ("train", "test", "neighbors", "distances"):
        assert np.array_equal(getattr(first, key), getattr(second, key)), key
    assert first.provenance == second.provenance and '"seed": 0' in first.provenance
    assert first.metric == "ip" and first.neighbors.shape == (30, 10)
    assert np.allclose(np.linalg.norm(first.train, axis=1), 1, atol=1e-5)
    cached = bd.load(name, folder=tmp_path / "a", recipe=recipe)  # read back, not rebuilt
    assert np.array_equal(cached.neighbors, first.neighbors)
    for key, value in (("n_queries", 31), ("seed", 1), ("train_tokens", 20_001)):
        assert bd.cached_path(name, {**recipe, key: value}, tmp_path).name != path_a.name
    ids, _ = bd.exact_knn(first.train, first.test, 10, "ip")
    np.testing.assert_array_equal(first.neighbors, ids)


def test_a_changed_recipe_replaces_the_cached_file(tmp_path):
    recipe = small_recipe("austen-sentences")
    bd.load("austen-sentences", folder=tmp_path, recipe=recipe)
    changed = {**recipe, "n_queries": 31}
    assert len(bd.load("austen-sentences", folder=tmp_path, recipe=changed).test) == 31
    assert [p.name for p in tmp_path.glob("*.hdf5")] == [
        bd.cached_path("austen-sentences", changed, tmp_path).name]


def test_pattern_vectors_are_those_the_lm_indexes_and_searches():
    from retgen_ref.lm import RetgenLM
    from retgen_ref.lm.embed import ContextEncoder

    recipe = small_recipe("retgen-patterns")
    corpus = bd._corpus(recipe["train_tokens"])
    keys, queries, metric, _ = bd._pattern_vectors(corpus, recipe)
    model = RetgenLM(index="flat", resolutions=(2,))
    # fit's first steps, then the LM's own store builder
    model.word_vectors = bd._word_vectors(corpus, recipe)
    cfg = model.config
    model.encoder = ContextEncoder(model.word_vectors, dict(cfg.embedding), cfg.decay, cfg.history)
    model._build_levels([corpus.train])
    assert metric == "ip" and model.levels[2].index.metric == "ip"
    np.testing.assert_array_equal(model.levels[2].index.reconstruct_n(0, len(keys)), keys)
    np.testing.assert_array_equal(model.context_queries(corpus.test, 2), queries)


def test_sentences_follow_the_library_rule():
    vocab = bd._corpus(20_000).vocab
    para = vocab.encode('" i am sure , mr . darcy , it is so ! " said she . " yes . "'.split())
    got = [" ".join(vocab.decode(s)) for s in bd.sentences([para], vocab)]
    # no cut after "mr ."; the closing quote alone has no word and is dropped
    assert got == ['" i am sure , mr . darcy , it is so !', '" said she .', '" yes .']


def test_properties_on_a_known_dataset():
    ds = tiny("l2", n=500, nq=20, k=100)
    ds.train[1] = ds.train[0]
    p = bd.properties(ds, n_queries=20)
    assert p["n"] == 500 and p["d"] == 5 and p["duplicate_rate"] == pytest.approx(1 / 500)
    assert 0 < p["ratio_10_100"] < 1 and p["relative_contrast"] > 1 and p["lid_100"] > 0


# -- bench_ann's use of a file ----------------------------------------------------------------
def test_bench_ann_reads_a_file_and_measures_against_its_neighbors(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    bench_ann = _load("bench_ann_under_test", "bench_ann.py")
    assert bench_ann.ivf_params(200_000, 128) == (1024, 16)  # the old gmm-200k-128 values
    assert bench_ann.ivf_params(3_056, 64) == (64, 8)  # at least 39 points per list
    assert bench_ann.ivf_params(1_000_000, 100) == (2048, 10)  # no listed m divides 100
    ds = tiny("cosine", n=400, nq=30, k=20)
    ds.train *= np.linspace(0.5, 3, 400, dtype=np.float32)[:, None]  # norms must not matter
    path = bd.write_hdf5(tmp_path / "toy.hdf5", ds)
    data = bench_ann.load_dataset(str(path), quick=False, n_queries=25)
    assert data.metric == "ip" and data.xq.shape == (25, 5)
    np.testing.assert_allclose(np.linalg.norm(data.x, axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(data.truth, ds.neighbors[:25, :10])
    quick = bench_ann.load_dataset(str(path), quick=True, n_queries=25)
    assert len(quick.x) == 40  # 10% of the base, truth recomputed on it
    np.testing.assert_array_equal(quick.truth, bd.exact_knn(quick.x, quick.xq, 10, "ip")[0])


def test_sentence_vectors_are_unit_sif_sums():
    recipe = small_recipe("austen-sentences")
    corpus = bd._corpus(recipe["train_tokens"])
    base, queries, metric, _ = bd._sentence_vectors(corpus, recipe)
    wv = bd._word_vectors(corpus, recipe).astype(np.float64)
    counts = np.bincount(corpus.train, minlength=len(corpus.vocab))
    first = bd.sentences(corpus.paragraphs("train"), corpus.vocab)[0]  # "sense and sensibility"
    p = counts[first] / counts.sum()
    v = ((1e-3 / (1e-3 + p))[:, None] * wv[first]).sum(axis=0)
    np.testing.assert_allclose(base[0], v / np.linalg.norm(v), atol=1e-6)
    assert metric == "ip" and len(np.unique(base, axis=0)) == len(base)
