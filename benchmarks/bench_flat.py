"""FlatIndex vs FAISS IndexFlatL2 / IndexFlatIP: exact search throughput, side by side.

Same data, same queries, same thread count for both libraries, in one run:

* ``gmm-200k-128``: 200,000 × 128 Gaussian mixture, squared L2;
* ``unit-100k-384``: 100,000 × 384 clustered unit vectors, inner product.

For 1 and 2 threads it times a batch of 1,000 queries (one ``search`` call) and single
queries (one call per query), k = 10, and checks that both libraries return the same
neighbours. Writes ``benchmarks/results/flat.json`` and the table in
``docs/benchmarks.md``. Targets (issue 2): batch QPS ≥ 0.8× FAISS, single ≥ 0.5×.

    python benchmarks/bench_flat.py            # full run (about 3 minutes on 2 cores)
    python benchmarks/bench_flat.py --quick    # small sizes, a smoke test
"""

from __future__ import annotations

import argparse

import numpy as np

from _harness import (machine, machine_line, markdown_table, median_seconds, replace_doc_section,
                      threads, write_json)
from retgen_ref import FlatIndex
from retgen_ref.synthetic import clustered_unit_vectors, gaussian_mixture

K = 10
DATASETS = {  # name: (generator, n, d, metric)
    "gmm-200k-128": (gaussian_mixture, 200_000, 128, "l2"),
    "unit-100k-384": (clustered_unit_vectors, 100_000, 384, "ip"),
}


def _faiss_index(xb: np.ndarray, metric: str):
    import faiss

    index = (faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP)(xb.shape[1])
    index.add(xb)
    return index


def _single_queries(index, xq):
    def run():
        for i in range(len(xq)):
            index.search(xq[i:i + 1], K)
    return run


def bench_dataset(name: str, scale: float, n_batch: int, n_single: int, thread_counts):
    make, n, d, metric = DATASETS[name]
    n = int(n * scale)
    data = make(n + n_batch, d, seed=0)
    xb, xq = data[:n], data[n:]
    ours = FlatIndex(d, metric)
    ours.add(xb)
    peer = _faiss_index(xb, metric)
    rows = []
    for t in thread_counts:
        with threads(t):
            _, I_ours = ours.search(xq, K)
            _, I_peer = peer.search(xq, K)
            agreement = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(I_ours, I_peer)]))
            for mode, queries, fn_ours, fn_peer in (
                ("batch", n_batch, lambda: ours.search(xq, K), lambda: peer.search(xq, K)),
                ("single", n_single, _single_queries(ours, xq[:n_single]),
                 _single_queries(peer, xq[:n_single])),
            ):
                s_ours, s_peer = median_seconds(fn_ours), median_seconds(fn_peer)
                rows.append({"dataset": name, "n": n, "d": d, "metric": metric, "threads": t,
                             "mode": mode, "queries": queries, "qps_ours": queries / s_ours,
                             "qps_faiss": queries / s_peer, "ratio": s_peer / s_ours,
                             "agreement_at_10": agreement})
                print(f"{name:14s} {t}T {mode:6s} ours {queries / s_ours:10.0f} qps   "
                      f"faiss {queries / s_peer:10.0f} qps   ratio {s_peer / s_ours:.2f}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5%% of the data, fewer queries")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    scale, n_batch, n_single = (0.05, 200, 50) if args.quick else (1.0, 1000, 200)
    rows = []
    for name in DATASETS:
        rows += bench_dataset(name, scale, n_batch, n_single, args.threads)
    payload = {"benchmark": "flat", "k": K, "machine": machine(), "quick": args.quick,
               "results": rows}
    path = write_json("flat-quick" if args.quick else "flat", payload)
    if args.quick:
        print(f"wrote {path} (quick run: docs/benchmarks.md left as is)")
        return
    target = {"batch": 0.8, "single": 0.5}
    table = markdown_table(
        ["dataset", "metric", "threads", "queries", "ours QPS", "FAISS QPS", "ours / FAISS",
         "target", "same top-10"],
        [[r["dataset"], r["metric"], r["threads"], f'{r["mode"]} ({r["queries"]})',
          f'{r["qps_ours"]:,.0f}', f'{r["qps_faiss"]:,.0f}', f'{r["ratio"]:.2f}',
          f'≥ {target[r["mode"]]} {"met" if r["ratio"] >= target[r["mode"]] else "MISSED"}',
          f'{r["agreement_at_10"]:.4f}'] for r in rows])
    replace_doc_section("bench_flat", "## Exact search: FlatIndex vs FAISS\n\n"
                        "`python benchmarks/bench_flat.py` (k = 10; JSON in "
                        "`benchmarks/results/flat.json`). Machine: "
                        f'{machine_line(payload["machine"])}.\n\n' + table)
    print(f"wrote {path} and docs/benchmarks.md")


if __name__ == "__main__":
    main()
