"""KMeans and ProductQuantizer vs FAISS: quality and time, side by side.

Same data, same settings, same thread count (1 and 2) for both libraries, in one run:

* k-means, 25 iterations, FAISS's defaults (random initialisation, at most 256 training
  points per centroid): k=1024 on 200,000 × 128 (Gaussian mixture) and on the 168,821 × 128
  RETGEN pattern keys (``retgen-patterns`` of ``docs/datasets.md``, unit vectors). The
  objective of both results is evaluated the same way, on every point of the data set.
  Our default k-means++ initialisation is timed as an extra row (FAISS has no k-means++).
* PQ with nbits=8, m=16: training time, encoding throughput and mean squared
  reconstruction error ‖x − x̂‖² over the whole set.

Times are wall seconds of one run with the CPU seconds of the process beside them.
Writes ``benchmarks/results/quantizers.json`` and the tables in ``docs/benchmarks.md``.
Targets: objective and reconstruction error within 1% of FAISS (issue 3); training time
≤ 1.0× FAISS's (issue 18; encoding keeps issue 3's ≤ 1.5×).

    python benchmarks/bench_quantizers.py           # full run (about 5 minutes on 2 cores)
    python benchmarks/bench_quantizers.py --quick   # 10% of the data, a smoke test
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import datasets as corpus_datasets
from _harness import machine, machine_line, markdown_table, replace_doc_section, threads, write_json
from retgen_ref import KMeans
from retgen_ref.distances import squared_norms
from retgen_ref.exact import exact_topk
from retgen_ref.pq import ProductQuantizer
from retgen_ref.synthetic import gaussian_mixture

N_ITER = 25
SETS = {  # name: (k-means clusters, PQ sub-quantizers)
    "gmm-200k-128": (1024, 16),
    "retgen-patterns": (1024, 16),
}


def load_set(name: str, scale: float) -> np.ndarray:
    """The base vectors of ``name`` (a seeded ``scale`` sample for the corpus-made set)."""
    if name == "gmm-200k-128":
        return gaussian_mixture(int(200_000 * scale), 128, seed=0)
    x = corpus_datasets.resolve(name, False, progress=print).for_search()[0]
    if scale < 1.0:
        keep = np.sort(np.random.default_rng(0).permutation(len(x))[:int(len(x) * scale)])
        x = x[keep]
    return np.ascontiguousarray(x)


def objective(x: np.ndarray, centres: np.ndarray) -> float:
    """Σ_i min_j ‖x_i − c_j‖² over every point, by our exact search (float64 sum)."""
    dist, _, _ = exact_topk(x, np.ascontiguousarray(centres, dtype=np.float32),
                         squared_norms(centres), 1, "l2")
    return float(dist.sum(dtype=np.float64))


def timed(fn):
    """``(fn(), wall seconds, CPU seconds of the process)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - t0, time.process_time() - c0


def bench_kmeans(x, k, t):
    import faiss

    d = x.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both libraries subsample to 256 points per centre
        ours, s_ours, c_ours = timed(
            lambda: KMeans(k, n_iter=N_ITER, init="random", seed=1).fit(x))
        ours_pp, s_pp, _ = timed(lambda: KMeans(k, n_iter=N_ITER, seed=1).fit(x))

    def fit_faiss():
        km = faiss.Kmeans(d, k, niter=N_ITER, seed=1, max_points_per_centroid=256)
        km.train(x)
        return km

    peer, s_peer, c_peer = timed(fit_faiss)
    obj_ours, obj_pp, obj_peer = (objective(x, c) for c in
                                  (ours.cluster_centers_, ours_pp.cluster_centers_, peer.centroids))
    return {"k": k, "threads": t, "seconds_ours": s_ours, "seconds_faiss": s_peer,
            "cpu_seconds_ours": c_ours, "cpu_seconds_faiss": c_peer,
            "seconds_ours_kmeanspp": s_pp, "objective_ours": obj_ours,
            "objective_faiss": obj_peer, "objective_ours_kmeanspp": obj_pp}


def bench_pq(x, m, t):
    import faiss

    d = x.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # both train each subspace on 256 · ksub points
        ours, s_fit, c_fit = timed(lambda: ProductQuantizer(d, m, nbits=8, seed=1).fit(x))
    codes, s_enc, _ = timed(lambda: ours.encode(x))
    err_ours = float(np.mean(np.sum((x - ours.decode(codes)) ** 2, axis=1, dtype=np.float64)))

    peer = faiss.ProductQuantizer(d, m, 8)
    _, s_fit_peer, c_fit_peer = timed(lambda: peer.train(x))
    codes_peer, s_enc_peer, _ = timed(lambda: peer.compute_codes(x))
    err_peer = float(np.mean(np.sum((x - peer.decode(codes_peer)) ** 2, axis=1,
                                    dtype=np.float64)))
    return {"m": m, "threads": t, "fit_seconds_ours": s_fit, "fit_seconds_faiss": s_fit_peer,
            "fit_cpu_seconds_ours": c_fit, "fit_cpu_seconds_faiss": c_fit_peer,
            "encode_per_second_ours": len(x) / s_enc,
            "encode_per_second_faiss": len(x) / s_enc_peer,
            "mse_ours": err_ours, "mse_faiss": err_peer}


def _verdict(value, limit) -> str:
    return f"{value:.3f} ({'met' if value <= limit else 'MISSED'})"


def _seconds(row: dict, wall: str, cpu: str) -> str:
    """``wall (CPU)`` seconds; rows measured before CPU time was recorded show wall only."""
    return f"{row[wall]:.2f}" + (f" ({row[cpu]:.2f})" if cpu in row else "")


def tables(kmeans_rows, pq_rows) -> str:
    km = markdown_table(
        ["dataset", "k", "threads", "ours s (CPU)", "FAISS s (CPU)", "time ours/FAISS (≤ 1.0)",
         "objective ours/FAISS (≤ 1.01)", "ours k-means++ s", "k-means++ objective/FAISS"],
        [[r["dataset"], r["k"], r["threads"], _seconds(r, "seconds_ours", "cpu_seconds_ours"),
          _seconds(r, "seconds_faiss", "cpu_seconds_faiss"),
          _verdict(r["seconds_ours"] / r["seconds_faiss"], 1.0),
          _verdict(r["objective_ours"] / r["objective_faiss"], 1.01),
          f'{r["seconds_ours_kmeanspp"]:.2f}',
          f'{r["objective_ours_kmeanspp"] / r["objective_faiss"]:.3f}'] for r in kmeans_rows])
    pq = markdown_table(
        ["dataset", "m", "threads", "train s ours / FAISS (CPU)", "train ours/FAISS (≤ 1.0)",
         "encode vec/s ours / FAISS", "encode time ours/FAISS (≤ 1.5)",
         "MSE ours / FAISS", "MSE ours/FAISS (≤ 1.01)"],
        [[r["dataset"], r["m"], r["threads"],
          f'{_seconds(r, "fit_seconds_ours", "fit_cpu_seconds_ours")} / '
          f'{_seconds(r, "fit_seconds_faiss", "fit_cpu_seconds_faiss")}',
          _verdict(r["fit_seconds_ours"] / r["fit_seconds_faiss"], 1.0),
          f'{r["encode_per_second_ours"]:,.0f} / {r["encode_per_second_faiss"]:,.0f}',
          _verdict(r["encode_per_second_faiss"] / r["encode_per_second_ours"], 1.5),
          f'{r["mse_ours"]:.4f} / {r["mse_faiss"]:.4f}',
          _verdict(r["mse_ours"] / r["mse_faiss"], 1.01)] for r in pq_rows])
    return (f"### k-means, {N_ITER} iterations, random initialisation (FAISS's), "
            f"≤ 256 points per centroid\n\n{km}\n\n### Product quantization, nbits = 8\n\n{pq}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10%% of the data")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    kmeans_rows, pq_rows = [], []
    for name, (k, m) in SETS.items():
        x = load_set(name, scale)
        k = max(16, int(k * scale)) if args.quick else k
        for t in args.threads:
            with threads(t):
                row = {"dataset": name, **bench_kmeans(x, k, t)}
                kmeans_rows.append(row)
                print(f"{name} k-means k={k} {t}T: ours {row['seconds_ours']:.2f}s "
                      f"faiss {row['seconds_faiss']:.2f}s objective ratio "
                      f"{row['objective_ours'] / row['objective_faiss']:.4f}")
                row = {"dataset": name, **bench_pq(x, m, t)}
                pq_rows.append(row)
                print(f"{name} PQ m={m} {t}T: train {row['fit_seconds_ours']:.2f}s vs "
                      f"{row['fit_seconds_faiss']:.2f}s, encode {row['encode_per_second_ours']:,.0f}"
                      f" vs {row['encode_per_second_faiss']:,.0f}/s, MSE ratio "
                      f"{row['mse_ours'] / row['mse_faiss']:.4f}")
    payload = {"benchmark": "quantizers", "machine": machine(), "quick": args.quick,
               "kmeans": kmeans_rows, "pq": pq_rows}
    path = write_json("quantizers-quick" if args.quick else "quantizers", payload)
    if args.quick:
        print(f"wrote {path} (quick run: docs/benchmarks.md left as is)")
        return
    replace_doc_section("bench_quantizers", "## Quantizers: KMeans and ProductQuantizer vs FAISS"
                        "\n\n`python benchmarks/bench_quantizers.py` (JSON in "
                        "`benchmarks/results/quantizers.json`). Machine: "
                        f'{machine_line(payload["machine"])}.\n\n' + tables(kmeans_rows, pq_rows))
    print(f"wrote {path} and docs/benchmarks.md")


if __name__ == "__main__":
    main()
