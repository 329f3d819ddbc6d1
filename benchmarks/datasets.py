"""Benchmark datasets: ann-benchmarks HDF5 files, and real embeddings made from our corpus.

An ann-benchmarks file (``glove-100-angular.hdf5`` ...) holds the datasets ``train``
``(n, d)``, ``test`` ``(nq, d)``, ``neighbors`` ``(nq, k)`` (ids into ``train``, nearest
first) and optionally ``distances`` ``(nq, k)``, and the attribute ``distance``.
:func:`read_hdf5` checks all of it before the data are used and returns a
:class:`Dataset`; :func:`write_hdf5` writes one back (atomically) in the same layout.

Metric names: the file's ``euclidean`` is our ``"l2"``, ``angular`` our ``"cosine"``,
``dot`` (or ``ip``) our ``"ip"``. ``distances`` follow the file's convention: Euclidean
distance (not squared) for ``euclidean``, ``1 - cos`` for ``angular``, the inner product
itself (larger is nearer) for ``dot``. :meth:`Dataset.for_search` gives the arrays an index
searches: for cosine the rows scaled to unit length and ``"ip"``, which ranks alike.

Two datasets are made from the bundled Austen corpus with the library's own functions
(``docs/datasets.md`` is their dataset card):

``retgen-patterns``
    the key vectors of the RETGEN LM's pattern store at resolution 2 (every distinct
    2-token context of the training split, embedded by the LM's ``ContextEncoder`` over its
    PPMI-SVD word vectors: the vectors the LM searches), queries = the LM's query vectors
    of contexts of the test split; inner product on unit vectors, as the LM searches.
``austen-sentences``
    one vector per distinct sentence of the training split: the SIF-weighted mean of its
    word vectors (weight ``a / (a + p(w))``, ``a = 1e-3``, no common-component removal),
    unit length; queries = the test split's sentences; inner product.

Ground truth is the exact top 100 in float64 (:func:`exact_knn`). Made files are cached
as ``benchmarks/data/NAME-HASH.hdf5``, ``HASH`` from the recipe (parameters, checksums of
the corpus files and of the library modules that make the vectors), so a changed recipe
makes a new file::

    python benchmarks/datasets.py build [--rebuild] [NAME ...]   # make / refresh the cache
    python benchmarks/datasets.py stats NAME_OR_PATH ...          # the card's measured properties
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / "data"
RECIPE_VERSION = 1
K_TRUTH = 100
FILE_METRIC = {"l2": "euclidean", "cosine": "angular", "ip": "dot"}
METRIC_OF = {"euclidean": "l2", "angular": "cosine", "dot": "ip", "ip": "ip"}
REQUIRED = ("train", "test", "neighbors")


@dataclass(eq=False)
class Dataset:
    """Base vectors, queries and their exact neighbours.

    Attributes
    ----------
    name : str
    metric : {"l2", "ip", "cosine"}
    train : (n, d) float32, C-contiguous
    test : (nq, d) float32, C-contiguous
    neighbors : (nq, k) int64, ids into ``train``, nearest first
    distances : (nq, k) float32 in the file's convention (module docstring), or None
    provenance : str, where the data come from (the recipe, for made datasets)
    """

    name: str
    metric: str
    train: np.ndarray
    test: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray | None = None
    provenance: str = ""

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: train {self.train.shape[0]:,} x {self.train.shape[1]}, "
                f"test {len(self.test):,}, {self.neighbors.shape[1]} neighbours, {self.metric})")

    def for_search(self) -> tuple[np.ndarray, np.ndarray, str]:
        """``(train, test, metric)`` as an index takes them: cosine as unit rows and "ip"."""
        if self.metric != "cosine":
            return self.train, self.test, self.metric
        return _unit(self.train), _unit(self.test), "ip"


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1), dtype=np.float32)


# -- reading and writing ann-benchmarks files -------------------------------------------------
def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading and writing HDF5 datasets needs h5py: pip install "
                          "'retgen_ref[bench]' (or pip install h5py)") from None
    return h5py


def _check_shapes(where, shapes: dict, dtypes: dict, distance) -> str:
    """The checks that need no data, so a bad file fails before anything is loaded."""
    for key in REQUIRED:
        if key not in shapes:
            raise ValueError(f"{where}: no dataset {key!r}; an ann-benchmarks file holds "
                             f"'train', 'test' and 'neighbors' (found {sorted(shapes) or 'none'})")
    keys = REQUIRED + (("distances",) if "distances" in shapes else ())
    for key in keys:
        if len(shapes[key]) != 2:
            raise ValueError(f"{where}: {key!r} has rank {len(shapes[key])} (shape "
                             f"{shapes[key]}); it must be a 2-D array")
    for key in ("train", "test") + (("distances",) if "distances" in shapes else ()):
        if dtypes[key].kind != "f":
            raise ValueError(f"{where}: {key!r} has dtype {dtypes[key]}, not float; this reader "
                             "takes float vectors (convert them, e.g. to float32)")
    if dtypes["neighbors"].kind not in "iu":
        raise ValueError(f"{where}: 'neighbors' has dtype {dtypes['neighbors']}; it must hold "
                         "integer ids into 'train'")
    (n, d), (nq, dq), (nn, k) = shapes["train"], shapes["test"], shapes["neighbors"]
    for key, size in (("train", n), ("test", nq)):
        if size == 0:
            raise ValueError(f"{where}: {key!r} is empty; it needs at least one vector")
    if d == 0:
        raise ValueError(f"{where}: the vectors have 0 dimensions")
    if k == 0:
        raise ValueError(f"{where}: 'neighbors' has 0 columns; store at least one neighbour "
                         "per query")
    if dq != d:
        raise ValueError(f"{where}: 'test' has {dq} columns but 'train' has {d}; queries and "
                         "base vectors must have the same dimension")
    if nn != nq:
        raise ValueError(f"{where}: 'neighbors' has {nn} rows but 'test' has {nq}; it needs "
                         "one row per query")
    if "distances" in shapes and tuple(shapes["distances"]) != tuple(shapes["neighbors"]):
        raise ValueError(f"{where}: 'distances' has shape {shapes['distances']} but "
                         f"'neighbors' {shapes['neighbors']}; they must match")
    if isinstance(distance, bytes):
        distance = distance.decode()
    if distance is None:
        raise ValueError(f"{where}: no 'distance' attribute; set it to one of "
                         f"{sorted(METRIC_OF)} (e.g. f.attrs['distance'] = 'euclidean')")
    if distance not in METRIC_OF:
        raise ValueError(f"{where}: unknown distance {distance!r}; this reader takes "
                         f"{sorted(METRIC_OF)}")
    return METRIC_OF[distance]


def _check_values(where, train, test, neighbors, distances) -> None:
    for key, a in (("train", train), ("test", test), ("distances", distances)):
        if a is not None and not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(f"{where}: {key!r} holds NaN or infinity (first at row "
                             f"{bad[0]}, column {bad[1]}); remove or fix those rows")
    lo, hi = int(neighbors.min()), int(neighbors.max())
    if lo < 0 or hi >= len(train):
        raise ValueError(f"{where}: 'neighbors' holds ids from {lo} to {hi}, outside "
                         f"[0, {len(train)}) of 'train'; it belongs to another base set "
                         "or is damaged")


def read_hdf5(path) -> Dataset:
    """An ann-benchmarks HDF5 file as a :class:`Dataset`; every check runs before use.

    Raises
    ------
    ValueError
        The file is missing, not HDF5 or damaged, or a dataset or the ``distance``
        attribute is missing or malformed (the message names the file and the fix).
    """
    h5py = _h5py()
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ValueError(f"{where}: no such file; give the path of an ann-benchmarks .hdf5 "
                         "file or a dataset name")
    try:
        with h5py.File(path, "r") as f:
            shapes = {k: f[k].shape for k in f if isinstance(f[k], h5py.Dataset)}
            dtypes = {k: f[k].dtype for k in shapes}
            metric = _check_shapes(where, shapes, dtypes, f.attrs.get("distance"))
            train = np.ascontiguousarray(f["train"][()], dtype=np.float32)
            test = np.ascontiguousarray(f["test"][()], dtype=np.float32)
            neighbors = np.ascontiguousarray(f["neighbors"][()], dtype=np.int64)
            distances = (np.ascontiguousarray(f["distances"][()], dtype=np.float32)
                         if "distances" in shapes else None)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OSError as err:  # h5py's errors for a damaged, truncated or non-HDF5 file
        raise ValueError(f"{where}: not a readable HDF5 file ({err}); download or build it "
                         "again") from None
    _check_values(where, train, test, neighbors, distances)
    return Dataset(str(attrs.get("name", path.stem)), metric, train, test, neighbors,
                   distances, str(attrs.get("provenance", f"read from {where}")))


def write_hdf5(path, dataset: Dataset) -> Path:
    """Write ``dataset`` as an ann-benchmarks file, atomically (temp file + ``os.replace``).

    ``neighbors`` are written as int32 when the ids fit (the ann-benchmarks type),
    vectors and distances as float32; :func:`read_hdf5` gives the same arrays back.
    """
    h5py = _h5py()
    path = Path(path)
    ds = dataset
    if ds.metric not in FILE_METRIC:
        raise ValueError(f"metric {ds.metric!r}; a dataset's metric is one of "
                         f"{sorted(FILE_METRIC)}")
    arrays = {"train": ds.train, "test": ds.test, "neighbors": ds.neighbors}
    if ds.distances is not None:
        arrays["distances"] = ds.distances
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _check_shapes(f"dataset {ds.name!r}", {k: v.shape for k, v in arrays.items()},
                  {k: v.dtype for k, v in arrays.items()}, FILE_METRIC[ds.metric])
    _check_values(f"dataset {ds.name!r}", *(arrays.get(k) for k in REQUIRED + ("distances",)))
    ids = np.int32 if len(ds.train) < 2 ** 31 else np.int64
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a data file is not
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"type": "dense", "point_type": "float",
                            "distance": FILE_METRIC[ds.metric], "dimension": ds.train.shape[1],
                            "name": ds.name, "provenance": ds.provenance})
            for key, a in arrays.items():
                f.create_dataset(key, data=a.astype(ids if key == "neighbors" else np.float32))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- exact ground truth -----------------------------------------------------------------------
def exact_knn(train, test, k: int, metric: str, block_bytes: int = 2 ** 24):
    """Exact top-``k`` by float64 brute force: ``(ids (nq, k) int64, values (nq, k) float64)``.

    ``values`` are squared L2 (ascending) for "l2", the inner product (descending) for
    "ip", the cosine (descending) for "cosine". Ties go to the smaller id. Candidates are
    picked block by block with the matrix-product form (``‖x‖² − 2x·q + ‖q‖²``), the tiles
    bounded by ``block_bytes``; then every candidate within a rounding margin of the k-th
    is re-scored directly (``Σ (x − q)²``, ``Σ x q``), so no cancellation reaches the
    result. A query whose margin holds more than ``2k`` candidates (many ties) is scored
    directly against the whole base set.

    The same answer as ``retgen_ref.exact.exact_topk`` (float64 order, ties to the smaller
    id), computed here in plain NumPy on purpose: the ground truth of a benchmark of our
    indexes should not come from our own kernels.
    """
    if metric not in FILE_METRIC:
        raise ValueError(f"metric {metric!r}; choose one of {sorted(FILE_METRIC)}")
    x, q = np.asarray(train, np.float64), np.asarray(test, np.float64)
    if metric == "cosine":
        x, q = (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-300) for a in (x, q))
    n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the {n} base vectors")
    kc = min(n, 2 * k)
    x_sq = np.einsum("ij,ij->i", x, x)
    bn = max(1, min(n, block_bytes // (8 * 256)))
    bq = max(1, min(len(q), block_bytes // (8 * (bn + kc))))
    ids = np.empty((len(q), k), np.int64)
    vals = np.empty((len(q), k))

    def direct(rows, qi):
        diff = x[rows] - qi if metric == "l2" else x[rows] * qi
        s = (diff * diff if metric == "l2" else diff).sum(axis=1)
        return s if metric == "l2" else -s  # smaller is nearer

    for q0 in range(0, len(q), bq):
        qb = q[q0:q0 + bq]
        best_d = np.empty((len(qb), 0))
        best_i = np.empty((len(qb), 0), np.int64)
        for x0 in range(0, n, bn):
            g = qb @ x[x0:x0 + bn].T
            dist = x_sq[x0:x0 + bn] - 2 * g if metric == "l2" else -g
            cand_d = np.concatenate([best_d, dist], axis=1)
            cand_i = np.concatenate([best_i, np.broadcast_to(
                np.arange(x0, x0 + dist.shape[1]), dist.shape)], axis=1)
            if cand_d.shape[1] > kc:
                part = np.argpartition(cand_d, kc - 1, axis=1)[:, :kc]
                cand_d = np.take_along_axis(cand_d, part, 1)
                cand_i = np.take_along_axis(cand_i, part, 1)
            best_d, best_i = cand_d, cand_i
        q_sq = np.einsum("ij,ij->i", qb, qb)
        margin = 64 * np.finfo(np.float64).eps * d * (x_sq.max() + q_sq) + 1e-300
        for j in range(len(qb)):
            order = np.argsort(best_d[j], kind="stable")
            kth = best_d[j][order[k - 1]]
            keep = best_d[j] <= kth + margin[j]
            rows = best_i[j][keep]
            if keep.sum() == kc and kc < n:  # the margin may reach past the candidates
                rows = np.arange(n)
            s = np.concatenate([direct(rows[r:r + bn], qb[j]) for r in range(0, len(rows), bn)])
            top = np.lexsort((rows, s))[:k]
            ids[q0 + j] = rows[top]
            vals[q0 + j] = s[top] if metric == "l2" else -s[top]
    return ids, vals


def file_distances(values: np.ndarray, metric: str) -> np.ndarray:
    """:func:`exact_knn` values in the file's convention (Euclidean, 1 − cos, inner product)."""
    if metric == "l2":
        return np.sqrt(np.maximum(values, 0)).astype(np.float32)
    return (1 - values if metric == "cosine" else values).astype(np.float32)


# -- datasets made from the corpus ----------------------------------------------------------
CODE = ("lm/corpus.py", "lm/tokenize.py", "lm/word_vectors.py", "lm/embed.py",
        "lm/patterns.py", "lm/model.py", "rag/known_item.py")
SIF_A = 1e-3


def recipes() -> dict:
    """The recipe of each corpus-made dataset: every parameter that shapes its arrays."""
    from retgen_ref.lm import RetgenConfig

    lm = RetgenConfig()
    common = {"recipe_version": RECIPE_VERSION, "corpus": "austen", "train_tokens": None,
              "word_dim": lm.word_dim, "window": lm.window, "query_split": "test",
              "k": K_TRUTH, "seed": 0}
    return {
        "retgen-patterns": {**common, "resolution": 2, "embedding": dict(lm.embedding),
                            "decay": lm.decay, "history": lm.history, "n_queries": 1000},
        "austen-sentences": {**common, "weighting": f"sif a={SIF_A}", "dedupe": True,
                             "n_queries": 1000},
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksums() -> dict:
    """sha256 of the bundled corpus files and of the library modules that make the vectors."""
    import retgen_ref

    package = Path(retgen_ref.__file__).parent
    corpus = sorted((package / "lm" / "data" / "austen").glob("*.txt.xz"))
    return {"corpus": {p.name: _sha256(p.read_bytes()) for p in corpus},
            "code": {c: _sha256((package / c).read_bytes()) for c in CODE}}


def recipe_hash(recipe: dict) -> str:
    text = json.dumps({"recipe": recipe, "checksums": checksums()}, sort_keys=True)
    return _sha256(text.encode())[:12]


@lru_cache(maxsize=2)
def _corpus(train_tokens):
    from retgen_ref.lm import load_corpus

    corpus = load_corpus("austen")
    return corpus.with_train_prefix(train_tokens) if train_tokens else corpus


def _word_vectors(corpus, recipe):
    from retgen_ref.lm.word_vectors import word_vectors

    V = len(corpus.vocab)  # as RetgenLM.fit does
    return word_vectors(corpus.train, V, min(recipe["word_dim"], V - 1), recipe["window"],
                        seed=recipe["seed"])


def _pattern_vectors(corpus, recipe):
    """Keys and test-split queries exactly as RetgenLM builds and searches them."""
    from retgen_ref.lm import RetgenLM
    from retgen_ref.lm.embed import ContextEncoder
    from retgen_ref.lm.patterns import extract_patterns

    r = recipe["resolution"]
    model = RetgenLM(resolutions=(r,), index="flat", embedding=recipe["embedding"],
                     decay=recipe["decay"], history=recipe["history"], seed=recipe["seed"])
    model.word_vectors = _word_vectors(corpus, recipe)
    model.encoder = ContextEncoder(model.word_vectors, dict(recipe["embedding"]),
                                   recipe["decay"], recipe["history"])
    table = extract_patterns([corpus.train], r)  # RetgenLM._build_levels, one resolution
    history = model.pattern_history_vectors(table, [corpus.train])
    keys = model.encoder.encode(table.contexts, history)
    queries = model.context_queries(corpus.split(recipe["query_split"]), r)
    return keys, queries, "ip", f"{len(table):,} distinct {r}-token contexts of train"


def sentences(paragraphs, vocab) -> list[np.ndarray]:
    """Sentences of token-id paragraphs, cut by the library's rule
    (:func:`retgen_ref.rag.known_item.first_sentence_end`); those without a word are dropped."""
    from retgen_ref.rag.known_item import first_sentence_end

    is_word = np.array([any(c.isalnum() for c in t) for t in vocab.tokens])
    out = []
    for rest in paragraphs:
        while len(rest):
            end = first_sentence_end(rest, vocab)
            if is_word[rest[:end]].any():
                out.append(rest[:end])
            rest = rest[end:]
    return out


def _sentence_vectors(corpus, recipe):
    """SIF-weighted mean word vectors of the sentences of train (base) and of the query split."""
    from retgen_ref.lm import EOS, UNK

    wv = _word_vectors(corpus, recipe).astype(np.float64)
    counts = np.bincount(corpus.train, minlength=len(corpus.vocab)).astype(np.float64)
    weight = SIF_A / (SIF_A + counts / counts.sum())
    weight[[UNK, EOS]] = 0

    def embed(split):
        rows = [weight[s] @ wv[s] for s in sentences(corpus.paragraphs(split), corpus.vocab)]
        v = np.array(rows).reshape(-1, wv.shape[1])
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return (v[norms[:, 0] > 0] / norms[norms[:, 0] > 0]).astype(np.float32)

    base = embed("train")
    n_all = len(base)
    if recipe["dedupe"]:
        _, first = np.unique(base, axis=0, return_index=True)
        base = base[np.sort(first)]
    return base, embed(recipe["query_split"]), "ip", (
        f"{n_all:,} sentences of train, {n_all - len(base):,} exact duplicates removed")


MAKERS = {"retgen-patterns": _pattern_vectors, "austen-sentences": _sentence_vectors}
CORPUS_DATASETS = tuple(MAKERS)


def make_dataset(name: str, recipe: dict | None = None, progress=None) -> Dataset:
    """Build corpus-made dataset ``name`` from ``recipe`` (default :func:`recipes`)."""
    say = progress or (lambda message: None)
    recipe = recipes()[name] if recipe is None else recipe
    say(f"{name}: corpus and vectors")
    corpus = _corpus(recipe["train_tokens"])
    train, queries, metric, note = MAKERS[name](corpus, recipe)
    rng = np.random.default_rng(recipe["seed"])
    pick = rng.permutation(len(queries))[:recipe["n_queries"]]
    test = np.ascontiguousarray(queries[pick])
    train = np.ascontiguousarray(train)
    say(f"{name}: exact top-{recipe['k']} of {len(test):,} queries over "
        f"{len(train):,} x {train.shape[1]} (float64)")
    ids, values = exact_knn(train, test, recipe["k"], metric)
    provenance = json.dumps({"recipe": recipe, "hash": recipe_hash(recipe), "note": note,
                             "queries": f"{len(test)} of {len(queries):,} "
                                        f"{recipe['query_split']} rows, seed {recipe['seed']}",
                             "checksums": checksums()}, sort_keys=True)
    return Dataset(name, metric, train, test, ids, file_distances(values, metric), provenance)


def cached_path(name: str, recipe: dict | None = None, folder: Path = DATA) -> Path:
    recipe = recipes()[name] if recipe is None else recipe
    return Path(folder) / f"{name}-{recipe_hash(recipe)}.hdf5"


def load(name: str, rebuild: bool = False, progress=None, folder: Path = DATA,
         recipe: dict | None = None) -> Dataset:
    """Corpus-made dataset ``name`` from the cache, built (and stale versions removed) when
    missing, when its recipe changed, or with ``rebuild``."""
    path = cached_path(name, recipe, folder)
    if path.exists() and not rebuild:
        return read_hdf5(path)
    dataset = make_dataset(name, recipe, progress)
    write_hdf5(path, dataset)
    for old in Path(folder).glob(f"{name}-*.hdf5"):
        if old != path:
            old.unlink()
    (progress or (lambda message: None))(f"{name}: wrote {path}")
    return dataset


# -- measured properties for the dataset card ----------------------------------------------
def properties(ds: Dataset, n_queries: int = 200, seed: int = 0) -> dict:
    """What the card reports: sizes, duplicates, norms, and the structure the neighbours show.

    * ``duplicate_rate``: share of base rows equal to an earlier row;
    * ``query_in_base``: share of queries with a base vector at distance 0;
    * ``norm_*``: base norms (min, median, max) before any normalisation;
    * ``relative_contrast``: mean over queries of ``mean_dist / nearest_dist`` (He, Kumar &
      Chang 2012), Euclidean distances on the searched vectors, for ``n_queries`` sampled
      queries with a non-zero nearest distance; near 1 means neighbours hardly stand out;
    * ``ties_at_10``: share of queries whose 10th and 11th neighbours are equally far, where
      recall@10 by ids depends on how a tie is broken;
    * ``ratio_10_100``: mean of ``dist(10th) / dist(100th)`` (Euclidean), from ``neighbors``;
    * ``lid_100``: mean maximum-likelihood local intrinsic dimensionality over the 100
      nearest (Levina & Bickel 2004; Amsaleg et al. 2015), ``-1 / mean log(d_i / d_k)``.
    """
    x, q, metric = ds.for_search()
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    x_sq, q_sq = (np.einsum("ij,ij->i", a, a) for a in (x64, q64))
    norms = np.sqrt(np.einsum("ij,ij->i", ds.train.astype(np.float64), ds.train.astype(np.float64)))
    k = min(ds.neighbors.shape[1], 100)
    dist = np.empty((len(q), k))
    for q0 in range(0, len(q), 64):  # Euclidean distances to the listed neighbours
        rows = ds.neighbors[q0:q0 + 64, :k]
        diff = x64[rows] - q64[q0:q0 + 64, None, :]
        dist[q0:q0 + 64] = np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))
    pick = np.random.default_rng(seed).permutation(len(q))[:n_queries]
    contrast = []
    for j in pick:
        full = np.sqrt(np.maximum(x_sq - 2 * (x64 @ q64[j]) + q_sq[j], 0))
        if full.min() > 1e-6:
            contrast.append(full.mean() / full.min())
    out = {"name": ds.name, "n": len(x), "d": x.shape[1], "metric": ds.metric,
           "queries": len(q), "k": ds.neighbors.shape[1],
           "duplicate_rate": 1 - len(np.unique(ds.train, axis=0)) / len(ds.train),
           "query_in_base": float(np.mean(dist[:, 0] < 1e-6)),
           "norm_min": float(norms.min()), "norm_median": float(np.median(norms)),
           "norm_max": float(norms.max()),
           "relative_contrast": float(np.mean(contrast)) if contrast else float("nan")}
    if k > 10:
        out["ties_at_10"] = float(np.mean(np.abs(dist[:, 10] - dist[:, 9]) <= 1e-6))
    if k >= 100:
        ok = dist[:, 99] > 0
        out["ratio_10_100"] = float(np.mean(dist[ok, 9] / dist[ok, 99]))
        inside = dist[ok] / dist[ok, 99:100]
        with np.errstate(divide="ignore"):
            logs = np.log(np.where(inside > 0, inside, np.nan))
        out["lid_100"] = float(np.nanmean(-1 / np.nanmean(logs[:, :99], axis=1)))
    return out


def resolve(name_or_path: str, rebuild: bool = False, progress=None) -> Dataset:
    """A corpus-made dataset by name, or an ann-benchmarks file by path."""
    if name_or_path in MAKERS:
        return load(name_or_path, rebuild, progress)
    return read_hdf5(name_or_path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="make or refresh the cached corpus datasets")
    build.add_argument("names", nargs="*", help=f"default: all of {', '.join(MAKERS)}")
    build.add_argument("--rebuild", action="store_true", help="rebuild even if cached")
    stats = sub.add_parser("stats", help="print the measured properties of datasets")
    stats.add_argument("names", nargs="+", help="corpus dataset names or .hdf5 paths")
    args = parser.parse_args(argv)
    if args.command == "build":
        args.names = args.names or list(MAKERS)
        unknown = sorted(set(args.names) - set(MAKERS))
        if unknown:
            parser.error(f"unknown dataset {unknown}; the corpus datasets are {list(MAKERS)}")
    for name in args.names:
        if args.command == "build":
            print(load(name, args.rebuild, print))
        else:
            ds = resolve(name, progress=print)
            print(json.dumps(properties(ds), indent=2))


if __name__ == "__main__":
    main()
