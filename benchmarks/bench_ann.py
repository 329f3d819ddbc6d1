"""Approximate search: our IVF-Flat, IVF-PQ, IVF-SQ8, OPQ+IVF-PQ and HNSW vs FAISS and hnswlib.

ann-benchmarks style, in one run, on the same data, with the same parameters and threads.
``--dataset`` takes names and paths, any number of them; the default set is

* ``gmm-200k-128``: 200,000 × 128 Gaussian mixture, squared L2 (synthetic);
* ``retgen-patterns``: the 168,821 × 128 key vectors of the RETGEN LM's pattern store
  (resolution 2), queries from the test split, inner product;
* ``austen-sentences``: 30,563 × 64 SIF sentence vectors of the training split, queries
  from the test split, inner product;

the last two made from the bundled corpus by ``benchmarks/datasets.py`` and cached in
``benchmarks/data/`` (their dataset card: ``docs/datasets.md``). ``unit-100k-384``
(100,000 × 384 clustered unit vectors, inner product) stays selectable by name, and any
ann-benchmarks ``.hdf5`` file by its path (``--dataset glove-100-angular.hdf5``; angular
is searched as inner product on unit rows). Recall is measured against the file's
``neighbors`` (first 10 columns); synthetic data get theirs from an exact search.

Every family is one FAISS index-factory string, derived from the dataset's ``nlist`` and PQ
``m`` (``IVF1024,Flat``, ``IVF1024,PQ16x8``, ``IVF1024,SQ8``, ``OPQ16,IVF1024,PQ16x8``,
``HNSW16``), chosen from n and d by :func:`ivf_params` (printed per dataset): ``nlist`` the
largest power of two ≤ min(4√n, n/39) (at least 39 training points per list, FAISS's
floor), ``m`` the largest of 96, 64, 48, 32, 16, 8 that divides d and is ≤ d/8 (else the
divisor of d nearest d/8), so 1024 and 16 on gmm-200k-128 as before. Both libraries are
built from that same string:
``retgen_ref.index_factory(d, string, metric)`` and ``faiss.index_factory(d, string,
METRIC_L2 or METRIC_INNER_PRODUCT)``. hnswlib has no index strings: it keeps its own
constructor (``hnswlib.Index`` + ``init_index(M=16, ...)``), with the ``M`` of ``HNSW16``.
The build parameters the strings leave to defaults are then set equal in every library:
``ef_construction = 200`` for HNSW (FAISS's default is 40), 50 OPQ alternations (FAISS's
default; ours is 25), and FAISS's polysemous training of PQ codebooks switched off (its
factory turns it on; it only permutes the codewords for Hamming filtering, which search
does not use at ``polysemous_ht = 0``, and we have no such step).

For each index family the build (train + add) is timed at 1 and 2 threads, then recall@10
(against the dataset's true neighbours) and QPS are measured over a sweep of the search
knob (``nprobe``, ``ef_search``) for a batch of 1,000 queries in one call and for single
queries (one call each), at 1 and 2 threads. Writes ``benchmarks/results/ann.json``,
``docs/ann.png`` and the tables in ``docs/benchmarks.md``; ``--quick`` (10% of each base
set: synthetic data generated at that size, real data a seeded sample with its ground
truth recomputed exactly; 200 queries; short timings) writes
``benchmarks/results/ann-quick.json`` only and leaves the docs alone. Targets: recall@10
within 0.01 of the peer at the same parameters (issue 4); QPS ≥ 1.0× the peer's at equal
recall at every setting, floor 0.9× (issue 18); HNSW build ≤ 1.0× hnswlib (issue 18).

    python benchmarks/bench_ann.py                 # full run (two synthetic sets took 35 min)
    python benchmarks/bench_ann.py --quick         # 10% of the data, short sweeps
    python benchmarks/bench_ann.py --dataset path/to/glove-100-angular.hdf5
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

import datasets as corpus_datasets
from _harness import (BENCH_DOC, RESULTS, machine, machine_line, markdown_table,
                      median_seconds, replace_doc_section, threads, write_json)
from retgen_ref import FlatIndex, index_factory
from retgen_ref.synthetic import clustered_unit_vectors, gaussian_mixture

K = 10
SYNTHETIC = {  # name: (generator, n, d, metric)
    "gmm-200k-128": (gaussian_mixture, 200_000, 128, "l2"),
    "unit-100k-384": (clustered_unit_vectors, 100_000, 384, "ip"),
}
DEFAULT_DATASETS = ["gmm-200k-128", *corpus_datasets.CORPUS_DATASETS]
LEGACY_PARAMS = {"gmm-200k-128": (1024, 16), "unit-100k-384": (512, 48)}  # ann.json before
NPROBES = (1, 2, 4, 8, 16, 32, 64)
EF_SEARCH = (16, 32, 64, 128, 256)
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 200
OPQ_N_ITER = 50  # FAISS's OPQMatrix default


def recall(I: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / len(b) for a, b in zip(I, truth)]))


# -- the families: one FAISS index-factory string each, built by every library -------------
FAMILIES = {  # family: (index string from the dataset's nlist and PQ m, knobs, libraries)
    "IVF-Flat": ("IVF{nlist},Flat", NPROBES, ["Ours", "Faiss"]),
    "IVF-PQ": ("IVF{nlist},PQ{m}x8", NPROBES, ["Ours", "Faiss"]),
    "IVF-SQ8": ("IVF{nlist},SQ8", NPROBES, ["Ours", "Faiss"]),
    "OPQ+IVF-PQ": ("OPQ{m},IVF{nlist},PQ{m}x8", NPROBES, ["Ours", "Faiss"]),
    "HNSW": ("HNSW{M}", EF_SEARCH, ["Ours", "Faiss", "Hnswlib"]),
}


def ivf_params(n: int, d: int) -> tuple[int, int]:
    """``(nlist, m)`` from the base size and dimension (the rule of the module docstring)."""
    nlist = 1 << int(np.floor(np.log2(max(1.0, min(4 * np.sqrt(n), n / 39)))))
    preferred = [m for m in (96, 64, 48, 32, 16, 8) if d % m == 0 and m <= d / 8]
    divisors = [m for m in range(1, d + 1) if d % m == 0]
    m = preferred[0] if preferred else min(divisors, key=lambda m: (abs(m - d / 8), m))
    return nlist, m


def index_string(family: str, nlist: int, m: int) -> str:
    """The FAISS index-factory string of ``family``, e.g. ``IVF1024,PQ16x8``."""
    return FAMILIES[family][0].format(nlist=nlist, m=m, M=HNSW_M)


class BenchData:
    """What one benchmark dataset needs: base, queries, metric, the true top K, (nlist, m)."""

    def __init__(self, name, x, xq, metric, truth, note):
        self.name, self.x, self.xq, self.metric, self.truth, self.note = (
            name, x, xq, metric, truth, note)
        self.nlist, self.m = ivf_params(*x.shape)


def load_dataset(name_or_path: str, quick: bool, n_queries: int, rebuild: bool = False):
    """A synthetic dataset by name, a corpus-made one by name, or an ann-benchmarks file."""
    scale = 0.1 if quick else 1.0
    if name_or_path in SYNTHETIC:
        make, n, d, metric = SYNTHETIC[name_or_path]
        n = int(n * scale)
        data = make(n + n_queries, d, seed=0)
        x, xq = data[:n], data[n:]
        exact = FlatIndex(d, metric)
        exact.add(x)
        return BenchData(name_or_path, x, xq, metric, exact.search(xq, K)[1],
                         "synthetic, seed 0, truth by exact search")
    ds = corpus_datasets.resolve(name_or_path, rebuild, progress=print)
    x, xq, metric = ds.for_search()
    xq = xq[:n_queries]
    if ds.neighbors.shape[1] < K:
        raise SystemExit(f"{name_or_path}: 'neighbors' has {ds.neighbors.shape[1]} columns; "
                         f"recall@{K} needs {K}")
    if not quick:
        return BenchData(ds.name, x, xq, metric, ds.neighbors[:n_queries, :K],
                         f"{len(x):,} x {x.shape[1]}, truth from the file's neighbors")
    keep = np.sort(np.random.default_rng(0).permutation(len(x))[:max(K, int(len(x) * scale))])
    truth = corpus_datasets.exact_knn(x[keep], xq, K, metric)[0]
    return BenchData(ds.name, np.ascontiguousarray(x[keep]), xq, metric, truth,
                     f"quick: {len(keep):,} of {len(x):,} base rows (seed 0), truth recomputed")


# -- the libraries, behind one small interface: build(x, threads), set(knob), search ----------
class Ours:
    library = "retgen_ref"

    def __init__(self, family, string, d, metric):
        self.family, self.string, self.d, self.metric = family, string, d, metric

    def build(self, x):
        self.index = index_factory(self.d, self.string, self.metric)
        if self.family == "HNSW":
            self.index.ef_construction = HNSW_EF_CONSTRUCTION
        if hasattr(self.index, "transform"):  # OPQ in front: a PreTransformIndex
            self.index.transform.n_iter = OPQ_N_ITER
        if not self.index.is_trained:
            self.index.train(x)
        self.index.add(x)

    def set(self, knob):
        if self.family == "HNSW":
            self.index.ef_search = knob
        else:
            self.index.nprobe = knob  # a PreTransformIndex forwards it to its IVF index

    def search(self, xq):
        return self.index.search(xq, K)[1]

    def nbytes(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index")
            self.index.save(path)
            return os.path.getsize(path)


class Faiss:
    library = "faiss"

    def __init__(self, family, string, d, metric):
        import faiss

        self.faiss, self.family, self.string, self.d = faiss, family, string, d
        self.metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def build(self, x):
        f = self.faiss
        self.index = f.index_factory(self.d, self.string, self.metric)
        if self.family == "HNSW":
            self.index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        else:
            inner = f.downcast_index(f.extract_index_ivf(self.index))
            if hasattr(inner, "do_polysemous_training"):
                inner.do_polysemous_training = False
        if isinstance(self.index, f.IndexPreTransform):
            f.downcast_VectorTransform(self.index.chain.at(0)).niter = OPQ_N_ITER
        if not self.index.is_trained:
            self.index.train(x)
        self.index.add(x)

    def set(self, knob):
        if self.family == "HNSW":
            self.index.hnsw.efSearch = knob
        else:
            self.faiss.extract_index_ivf(self.index).nprobe = knob  # through IndexPreTransform

    def search(self, xq):
        return self.index.search(xq, K)[1]

    def nbytes(self):
        return int(self.faiss.serialize_index(self.index).nbytes)


class Hnswlib:
    """hnswlib has no index strings: its own constructor, with the ``M`` of ``HNSW16``."""

    library = "hnswlib"

    def __init__(self, family, string, d, metric):
        self.d, self.space = d, "l2" if metric == "l2" else "ip"

    def build(self, x):
        import hnswlib

        self.index = hnswlib.Index(space=self.space, dim=self.d)
        self.index.init_index(max_elements=len(x), ef_construction=HNSW_EF_CONSTRUCTION,
                              M=HNSW_M, random_seed=0)
        self.index.add_items(x, np.arange(len(x)), num_threads=self.threads)

    def set(self, knob):
        self.index.set_ef(knob)

    def search(self, xq):
        return self.index.knn_query(xq, k=K, num_threads=self.threads)[0].astype(np.int64)

    def nbytes(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.bin")
            self.index.save_index(path)
            return os.path.getsize(path)


LIBRARIES = {"Ours": Ours, "Faiss": Faiss, "Hnswlib": Hnswlib}


def bench_family(family, data: BenchData, thread_counts, n_single, min_seconds):
    dataset, x, xq, truth, metric = data.name, data.x, data.xq, data.truth, data.metric
    d = x.shape[1]
    _, knobs, libraries = FAMILIES[family]
    string = index_string(family, data.nlist, data.m)
    builds, points = [], []
    for name in libraries:
        lib = LIBRARIES[name](family, string, d, metric)
        for t in thread_counts:  # build at every thread count; search with the last one
            lib.threads = t
            with threads(t):
                t0 = time.perf_counter()
                lib.build(x)
                seconds = time.perf_counter() - t0
            builds.append({"dataset": dataset, "family": family, "index": string,
                           "library": lib.library, "threads": t, "build_seconds": seconds,
                           "bytes": lib.nbytes()})
            print(f"{dataset} {family:10s} {string!r} {lib.library:10s} build {t}T "
                  f"{seconds:7.2f}s")
        for t in thread_counts:
            lib.threads = t
            with threads(t):
                for knob in knobs:
                    lib.set(knob)
                    r = recall(lib.search(xq), truth)
                    batch = len(xq) / median_seconds(lambda: lib.search(xq), min_seconds)
                    single_q = xq[:n_single]

                    def singles():
                        for i in range(len(single_q)):
                            lib.search(single_q[i:i + 1])

                    single = n_single / median_seconds(singles, min_seconds)
                    points.append({"dataset": dataset, "family": family, "index": string,
                                   "library": lib.library, "threads": t, "knob": knob,
                                   "recall": r, "qps_batch": batch, "qps_single": single})
                    print(f"{dataset} {family:10s} {lib.library:10s} {t}T knob {knob:4d} "
                          f"recall {r:.4f} batch {batch:9.0f} qps single {single:7.0f} qps")
    return builds, points


def qps_at_recall(points, target):
    """The peer's QPS at recall ``target``, interpolated on its recall-QPS curve
    (log-linear), or None if ``target`` is outside the recalls it reached."""
    pts = sorted((p["recall"], p["qps"]) for p in points)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            if r1 == r0:
                return max(q0, q1)
            w = (target - r0) / (r1 - r0)
            return float(np.exp((1 - w) * np.log(q0) + w * np.log(q1)))
    return None


def comparison_rows(points):
    """One row per (dataset, family, peer, threads, mode, knob): ours vs the peer."""
    rows = []
    keys = sorted({(p["dataset"], p["family"], p["threads"]) for p in points})
    for dataset, family, t in keys:
        group = [p for p in points if (p["dataset"], p["family"], p["threads"]) == (dataset, family, t)]
        ours = [p for p in group if p["library"] == "retgen_ref"]
        for peer in sorted({p["library"] for p in group} - {"retgen_ref"}):
            theirs = {p["knob"]: p for p in group if p["library"] == peer}
            for mode in ("batch", "single"):
                curve = [{"recall": p["recall"], "qps": p[f"qps_{mode}"]} for p in theirs.values()]
                for p in ours:
                    q = theirs[p["knob"]]
                    at_recall = qps_at_recall(curve, p["recall"])
                    rows.append({"dataset": dataset, "family": family, "peer": peer,
                                 "threads": t, "mode": mode, "knob": p["knob"],
                                 "recall_ours": p["recall"], "recall_peer": q["recall"],
                                 "qps_ours": p[f"qps_{mode}"], "qps_peer": q[f"qps_{mode}"],
                                 "qps_peer_at_our_recall": at_recall})
    return rows


LINE_STYLES = {"retgen_ref": ("-", "o"), "faiss": ("--", "s"), "hnswlib": (":", "^")}


def plot(points, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({p["dataset"] for p in points})
    families = [f for f in FAMILIES if f in {p["family"] for p in points}]
    families += sorted({p["family"] for p in points} - set(families))
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    thread_counts = sorted({p["threads"] for p in points})
    fig, axes = plt.subplots(len(datasets), len(thread_counts), figsize=(6 * len(thread_counts),
                             4.5 * len(datasets)), squeeze=False)
    for row, dataset in enumerate(datasets):
        for col, t in enumerate(thread_counts):
            ax = axes[row][col]
            series = sorted({(p["family"], p["library"]) for p in points if p["dataset"] == dataset})
            for family, library in series:
                pts = sorted((p["recall"], p["qps_batch"]) for p in points
                             if (p["dataset"], p["threads"], p["family"], p["library"]) ==
                             (dataset, t, family, library))
                if not pts:
                    continue
                # colour: the family (one index string); line and marker: the library
                style, marker = LINE_STYLES.get(library, ("-.", "x"))
                ax.plot(*zip(*pts), style, marker=marker, markersize=3,
                        color=colours[family], label=f"{family} ({library})")
            ax.set_yscale("log")
            ax.set_xlabel("recall@10")
            ax.set_ylabel("queries per second (batch of 1,000)")
            ax.set_title(f"{dataset}, {t} thread{'s' if t > 1 else ''}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


QPS_TARGET, QPS_FLOOR, BUILD_TARGET = 1.0, 0.9, 1.0  # issue 18: ours / peer


def qps_verdict(ratio) -> str:
    """Issue 18's QPS target for one ratio ours / peer at equal recall."""
    if ratio is None:
        return "–"
    return ("met" if ratio >= QPS_TARGET else "floor met" if ratio >= QPS_FLOOR
            else "MISSED")


def summary(builds, rows) -> str:
    """The targets (recall: issue 4; QPS and HNSW build: issue 18) on the measured rows."""
    lines = ["### Targets", ""]
    misses = sorted({(r["dataset"], r["family"], r["peer"], r["knob"], round(r["recall_ours"], 4),
                      round(r["recall_peer"], 4)) for r in rows
                     if r["recall_ours"] < r["recall_peer"] - 0.01})
    lines.append(f"- Recall@10 within 0.01 of the peer at the same parameters: "
                 f"{'met everywhere' if not misses else f'missed at {len(misses)} settings'}"
                 + "".join(f"\n  - {d} {f} vs {p}, knob {k}: ours {a}, peer {b}"
                           for d, f, p, k, a, b in misses))
    lines.append(f"- QPS ours / peer at equal recall ≥ {QPS_TARGET} at every setting (floor "
                 f"{QPS_FLOOR}), batch and single, every thread count; per dataset, family "
                 f"and mode (settings where our recall is outside the peer's curve have no "
                 f"equal-recall ratio and are not counted):")
    for dataset in sorted({r["dataset"] for r in rows}):
        for family in sorted({r["family"] for r in rows if r["dataset"] == dataset}):
            for mode in ("batch", "single"):
                sel = [r for r in rows if (r["dataset"], r["family"], r["mode"]) ==
                       (dataset, family, mode)]
                eq = [r["qps_ours"] / r["qps_peer_at_our_recall"] for r in sel
                      if r["qps_peer_at_our_recall"]]
                if not eq:
                    lines.append(f"  - {dataset} {family} {mode}: no setting at equal recall")
                    continue
                below = sum(v < QPS_TARGET for v in eq)
                lines.append(f"  - {dataset} {family} {mode}: min {min(eq):.2f}, median "
                             f"{np.median(eq):.2f}, below {QPS_TARGET} at {below} of {len(eq)} "
                             f"settings: {qps_verdict(min(eq))}")
    by_key = {(b["dataset"], b["family"], b["library"], b["threads"]): b["build_seconds"]
              for b in builds}
    ratios = [(d, t, by_key[(d, "HNSW", "retgen_ref", t)] / by_key[(d, "HNSW", "hnswlib", t)])
              for (d, f, lib, t) in by_key if f == "HNSW" and lib == "hnswlib"]
    if ratios:
        worst = max(r for _, _, r in ratios)
        lines.append(f"- HNSW build time ours/hnswlib: "
                     + ", ".join(f"{d} {t}T {r:.2f}" for d, t, r in ratios)
                     + f" (target ≤ {BUILD_TARGET}: "
                       f"{'met' if worst <= BUILD_TARGET else 'MISSED'})")
    return "\n".join(lines)


def tables(builds, rows) -> str:
    def fmt(v, spec=",.0f"):
        return "–" if v is None else format(v, spec)

    build_table = markdown_table(
        ["dataset", "family", "index string", "library", "threads", "build s",
         "saved index MB"],
        [[b["dataset"], b["family"],
          f'`{b.get("index") or index_string(b["family"], *LEGACY_PARAMS[b["dataset"]])}`'
          if b["library"] != "hnswlib" else "– (own constructor)", b["library"], b["threads"],
          f'{b["build_seconds"]:.1f}', f'{b["bytes"] / 2**20:.1f}'] for b in builds])
    search_table = markdown_table(
        ["dataset", "family", "vs", "threads", "queries", "knob", "recall ours", "recall peer",
         "QPS ours", "QPS peer", "ours / peer", "ours / peer at equal recall", "target"],
        [[r["dataset"], r["family"], r["peer"], r["threads"], r["mode"], r["knob"],
          f'{r["recall_ours"]:.3f}', f'{r["recall_peer"]:.3f}', fmt(r["qps_ours"]),
          fmt(r["qps_peer"]), f'{r["qps_ours"] / r["qps_peer"]:.2f}',
          fmt(r["qps_peer_at_our_recall"] and r["qps_ours"] / r["qps_peer_at_our_recall"], ".2f"),
          qps_verdict(r["qps_peer_at_our_recall"]
                      and r["qps_ours"] / r["qps_peer_at_our_recall"])]
         for r in rows])
    return (f"{summary(builds, rows)}\n\n### Build (train + add) and size\n\nOurs and FAISS are "
            f"built from the same FAISS index-factory string (`retgen_ref.index_factory` and "
            f"`faiss.index_factory`); hnswlib, which has no strings, from its own constructor "
            f"with the same M. Set equal in every library after the string: ef_construction = "
            f"{HNSW_EF_CONSTRUCTION}, {OPQ_N_ITER} OPQ alternations, and FAISS's polysemous "
            f"training off (it only permutes PQ codewords; search does not use it).\n\n"
            f"Size is the index saved to disk by each "
            f"library (our `save`, FAISS `serialize_index`, hnswlib `save_index`). In memory, "
            f"IVF-PQ with l2 also holds the precomputed table of nlist·m·ksub floats "
            f"(16 MB for gmm-200k-128), in both libraries.\n\n{build_table}\n\n"
            f"### Search: recall@10 and QPS per knob (`nprobe` for IVF, `ef_search` for HNSW)"
            f"\n\n\"at equal recall\" divides our QPS by the peer's QPS interpolated at our "
            f"recall on the peer's curve (– where our recall is outside the peer's range)."
            f"\n\n![recall vs QPS](ann.png)\n\n{search_table}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10%% of the data, short sweeps")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--dataset", "--datasets", dest="datasets", nargs="+", action="extend",
                        metavar="NAME_OR_PATH",
                        help=f"repeatable; names "
                             f"{', '.join([*SYNTHETIC, *corpus_datasets.MAKERS])} "
                             f"or an ann-benchmarks .hdf5 path (default: "
                             f"{' '.join(DEFAULT_DATASETS)})")
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the corpus-made datasets even if cached")
    parser.add_argument("--render", action="store_true",
                        help="rewrite the docs table and plot from benchmarks/results/ann.json "
                             "without measuring again")
    args = parser.parse_args()
    if args.render:
        payload = json.loads((RESULTS / "ann.json").read_text())
        write_docs(payload)
        return
    names = args.datasets or DEFAULT_DATASETS
    for name in names:
        known = name in SYNTHETIC or name in corpus_datasets.MAKERS
        if not known and not os.path.isfile(name):
            parser.error(f"--dataset {name!r}: not a dataset name "
                         f"({', '.join([*SYNTHETIC, *corpus_datasets.MAKERS])}) nor an existing "
                         ".hdf5 file")
    n_queries, n_single, min_seconds = (200, 50, 0.2) if args.quick else (1000, 200, 0.5)
    builds, points, used = [], [], []
    for name in names:
        data = load_dataset(name, args.quick, n_queries, args.rebuild)
        print(f"{data.name}: {len(data.x):,} x {data.x.shape[1]}, {len(data.xq)} queries, "
              f"{data.metric}; nlist {data.nlist}, PQ m {data.m} ({data.note})")
        used.append({"dataset": data.name, "source": name, "n": len(data.x),
                     "d": int(data.x.shape[1]), "metric": data.metric, "queries": len(data.xq),
                     "nlist": data.nlist, "m": data.m, "note": data.note})
        for family in args.families:
            b, p = bench_family(family, data, args.threads, n_single, min_seconds)
            builds += b
            points += p
    rows = comparison_rows(points)
    payload = {"benchmark": "ann", "k": K, "machine": machine(), "quick": args.quick,
               "datasets": used, "builds": builds, "points": points, "comparison": rows}
    path = write_json("ann-quick" if args.quick else "ann", payload)
    if args.quick:
        print(f"wrote {path} (quick run: docs left as they are)")
        return
    write_docs(payload)
    print(f"wrote {path}, docs/ann.png and docs/benchmarks.md")


def dataset_table(used: list) -> str:
    """The datasets of a run with the nlist and PQ m chosen for them (empty for old JSON)."""
    if not used:
        return ""
    return ("### Datasets\n\nCorpus-made datasets are described in "
            "[datasets.md](datasets.md); nlist and PQ m follow the rule of "
            "`bench_ann.ivf_params`.\n\n" + markdown_table(
                ["dataset", "n", "d", "metric", "queries", "nlist", "PQ m", "ground truth"],
                [[u["dataset"], f'{u["n"]:,}', u["d"], u["metric"], u["queries"], u["nlist"],
                  u["m"], u["note"]] for u in used]) + "\n\n")


def write_docs(payload: dict) -> None:
    plot(payload["points"], BENCH_DOC.parent / "ann.png")
    replace_doc_section("bench_ann", "## Approximate search: IVF-Flat, IVF-PQ, IVF-SQ8, OPQ+IVF-PQ, "
                        "HNSW vs FAISS and hnswlib\n\n`python benchmarks/bench_ann.py` (k = 10; JSON in "
                        "`benchmarks/results/ann.json`). Machine: "
                        f'{machine_line(payload["machine"])}.\n\n'
                        + dataset_table(payload.get("datasets", []))
                        + tables(payload["builds"], payload["comparison"]))


if __name__ == "__main__":
    main()
