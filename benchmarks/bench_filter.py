"""Filtered HNSW search: recall@10 and QPS against selectivity, ours next to hnswlib.

One graph per library (same data, M = 16, ef_construction = 200), searched for 10
neighbours at ef = 64 among a random fraction of the ids (1 % … 100 %), one thread each:
ours by ``search(xq, 10, ids=mask, ef=64)``, hnswlib by ``knn_query(xq, 10,
filter=…)``. Recall is against a float64-certified exact search of the allowed rows
(``FlatIndex.search(..., ids=mask)``). Ours is measured twice: as it runs (an exact scan
of the allowed nodes when they are few enough, ``HNSWIndex._exact_below``) and with the
graph walk forced at every selectivity (``EXACT_SCAN_FACTOR = 0``), which is the
like-for-like comparison with hnswlib's walk. hnswlib's filter is a Python callable called
per visited node, which is part of what its QPS measures; FAISS's HNSW takes an
``IDSelector`` but is left out (hnswlib is the HNSW reference here). Wall and CPU seconds
are both reported (the machine is shared).

    python benchmarks/bench_filter.py            # 100,000 × 64 (a few minutes on 2 cores)
    python benchmarks/bench_filter.py --quick    # 20,000 × 64, not written to the docs
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _harness import machine, machine_line, markdown_table, replace_doc_section, threads, \
    write_json
from retgen_ref import FlatIndex, HNSWIndex
from retgen_ref.index import hnsw as hnsw_module
from retgen_ref.synthetic import gaussian_mixture

K, EF, M, EF_CONSTRUCTION = 10, 64, 16, 200
SELECTIVITIES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def recall(I: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max((b >= 0).sum(), 1)
                          for a, b in zip(I, truth)]))


def timed(fn):
    """``(result, wall seconds, CPU seconds)`` of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, nq, d = (20_000, 200, 64) if args.quick else (100_000, 1_000, 64)
    x = gaussian_mixture(n, d, seed=0)
    xq = gaussian_mixture(nq, d, seed=1)
    import hnswlib

    rows = []
    with threads(1):
        ours = HNSWIndex(d, M, ef_construction=EF_CONSTRUCTION)
        ours.add(x)
        theirs = hnswlib.Index(space="l2", dim=d)
        theirs.init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION, random_seed=0)
        theirs.add_items(x, np.arange(n), num_threads=1)
        theirs.set_ef(EF)
        exact = FlatIndex(d)
        exact.add(x)
        warm = np.ones(n, dtype=bool)  # load or compile every kernel before timing
        ours.search(xq[:4], K, ids=warm, ef=EF)
        exact.search(xq[:4], K, ids=warm)
        theirs.knn_query(xq[:4], k=K, num_threads=1, filter=lambda label: True)
        rng = np.random.default_rng(2)
        for s in SELECTIVITIES:
            mask = rng.random(n) < s
            truth = exact.search(xq, K, ids=mask)[1]
            row = {"selectivity": s, "allowed": int(mask.sum())}
            (_, I), wall, cpu = timed(lambda: ours.search(xq, K, ids=mask, ef=EF))
            row["ours"] = {"recall": recall(I, truth), "qps": nq / wall, "cpu_s": cpu,
                           "wall_s": wall, "path": ours.last_search_stats["path"]}
            factor = hnsw_module.EXACT_SCAN_FACTOR
            hnsw_module.EXACT_SCAN_FACTOR = 0.0
            try:
                (_, I), wall, cpu = timed(lambda: ours.search(xq, K, ids=mask, ef=EF))
            finally:
                hnsw_module.EXACT_SCAN_FACTOR = factor
            row["ours_graph"] = {"recall": recall(I, truth), "qps": nq / wall, "cpu_s": cpu,
                                 "wall_s": wall}
            allowed = lambda label: bool(mask[label])  # noqa: E731
            (labels, _), wall, cpu = timed(lambda: theirs.knn_query(
                xq, k=K, num_threads=1, filter=allowed))
            row["hnswlib"] = {"recall": recall(labels.astype(np.int64), truth),
                              "qps": nq / wall, "cpu_s": cpu, "wall_s": wall}
            rows.append(row)
            print(f"s={s:5.0%}  ours {row['ours']['recall']:.3f} {row['ours']['qps']:8.0f} q/s "
                  f"({row['ours']['path']})  graph {row['ours_graph']['recall']:.3f} "
                  f"{row['ours_graph']['qps']:8.0f} q/s  hnswlib {row['hnswlib']['recall']:.3f} "
                  f"{row['hnswlib']['qps']:8.0f} q/s", flush=True)
    payload = {"n": n, "nq": nq, "d": d, "k": K, "ef": EF, "M": M,
               "ef_construction": EF_CONSTRUCTION, "machine": machine(), "rows": rows}
    write_json("filter-quick" if args.quick else "filter", payload)
    if not args.quick:
        replace_doc_section("bench_filter", markdown(payload))


def markdown(payload: dict) -> str:
    table = []
    for r in payload["rows"]:
        o, g, h = r["ours"], r["ours_graph"], r["hnswlib"]
        table.append([f"{r['selectivity']:.0%}", f"{r['allowed']:,}",
                      f"{o['recall']:.3f}", f"{o['qps']:,.0f}", o["path"],
                      f"{g['recall']:.3f}", f"{g['qps']:,.0f}",
                      f"{h['recall']:.3f}", f"{h['qps']:,.0f}",
                      f"{o['qps'] / h['qps']:.2f}×", f"{g['qps'] / h['qps']:.2f}×"])
    return "\n".join([
        "## Filtered HNSW search vs hnswlib",
        "",
        f"Gaussian mixture, {payload['n']:,} × {payload['d']}, {payload['nq']:,} queries in "
        f"one call, k = {payload['k']}, M = {payload['M']}, ef_construction = "
        f"{payload['ef_construction']}, ef = {payload['ef']}, 1 thread; a random fraction of "
        "the ids allowed. Recall against an exact search of the allowed rows. \"ours\" is the "
        "default (an exact scan when few nodes are allowed); \"ours, graph\" forces the graph "
        "walk, like hnswlib's. hnswlib's filter is a Python callable. "
        f"{machine_line(payload['machine'])}. Regenerate: "
        "`.venv/bin/python benchmarks/bench_filter.py`.",
        "",
        markdown_table(["allowed", "ids", "ours recall", "ours q/s", "ours path",
                        "graph recall", "graph q/s", "hnswlib recall", "hnswlib q/s",
                        "ours / hnswlib", "graph / hnswlib"], table),
    ])


if __name__ == "__main__":
    main()
