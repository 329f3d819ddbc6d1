"""Fixed cost of one search call: one query against a tiny index, ours / FAISS / hnswlib
(issue 18, point 1).

A call costs a fixed part (getting from Python into the kernel and back: argument checks,
conversions, allocations, locks, thread-pool wake-ups) plus the distance work, which grows
with the index. Each index is trained once on 1,000 vectors and then holds ``n`` of them,
``n`` in ``SIZES``: at 64 vectors the distance work is well under a microsecond, so the
time of a call *is* its fixed cost (the target: ours ≤ FAISS's); at 1,000 and 8,000 the
work shows. Each library is called the way a user calls it (``index.search(q, k)`` with
``q`` of shape ``(1, d)``), one thread, the queries cycled through a pool of 256 so that no
call repeats the previous one. Reported per call: the median over ``REPEATS`` rounds of
``CALLS`` calls, wall and CPU microseconds (the machine is shared). The peer's and our
index hold the same vectors with the same parameters.

    python benchmarks/bench_overhead.py           # writes docs/benchmarks.md's table
    python benchmarks/bench_overhead.py --quick   # fewer calls, not written to the docs
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from _harness import machine, machine_line, markdown_table, replace_doc_section, threads, \
    write_json
from retgen_ref import FlatIndex, HNSWIndex, IVFFlatIndex, IVFPQIndex
from retgen_ref.synthetic import gaussian_mixture

N_TRAIN, D, K, NLIST, NPROBE, PQ_M, M_HNSW, EF = 1_000, 64, 10, 16, 2, 8, 16, 16
SIZES = (64, 1_000, 8_000)  # vectors held; the first measures the fixed cost


def per_call(search, queries: np.ndarray, calls: int, repeats: int) -> tuple[float, float]:
    """Median wall and CPU microseconds of one ``search(q)`` call, over ``repeats`` rounds."""
    for q in queries[:32]:  # warm-up: kernels loaded, caches filled
        search(q)
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(calls):
            search(queries[i % len(queries)])
        walls.append((time.perf_counter() - w0) / calls * 1e6)
        cpus.append((time.process_time() - c0) / calls * 1e6)
    return statistics.median(walls), statistics.median(cpus)


def build(train: np.ndarray, x: np.ndarray) -> dict:
    """``{kind: {library: search(q)}}``, indexes trained on ``train`` holding ``x``."""
    import faiss
    import hnswlib

    ours, theirs = {}, {}
    ours["Flat"] = FlatIndex(D)
    theirs["Flat"] = faiss.IndexFlatL2(D)
    ours["IVF-Flat"] = IVFFlatIndex(D, nlist=NLIST)
    theirs["IVF-Flat"] = faiss.IndexIVFFlat(faiss.IndexFlatL2(D), D, NLIST)
    ours["IVF-PQ"] = IVFPQIndex(D, nlist=NLIST, m=PQ_M, nbits=8)
    theirs["IVF-PQ"] = faiss.IndexIVFPQ(faiss.IndexFlatL2(D), D, NLIST, PQ_M, 8)
    ours["HNSW"] = HNSWIndex(D, M=M_HNSW)
    theirs["HNSW"] = faiss.IndexHNSWFlat(D, M_HNSW)
    for kind in ours:
        if not ours[kind].is_trained:
            ours[kind].train(train)
            theirs[kind].train(train)
        ours[kind].add(x)
        theirs[kind].add(x)
    for kind in ("IVF-Flat", "IVF-PQ"):
        ours[kind].nprobe = theirs[kind].nprobe = NPROBE
    ours["HNSW"].ef_search = theirs["HNSW"].hnsw.efSearch = EF
    graph = hnswlib.Index(space="l2", dim=D)
    graph.init_index(max_elements=len(x), M=M_HNSW, ef_construction=200, random_seed=0)
    graph.add_items(x, np.arange(len(x)), num_threads=1)
    graph.set_ef(EF)
    table = {kind: {"ours": lambda q, i=ours[kind]: i.search(q, K),
                    "faiss": lambda q, i=theirs[kind]: i.search(q, K)} for kind in ours}
    table["HNSW"]["hnswlib"] = lambda q: graph.knn_query(q, k=K, num_threads=1)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls, repeats = (2_000, 3) if args.quick else (20_000, 7)
    data = gaussian_mixture(N_TRAIN + max(SIZES), D, seed=0)
    train = data[:N_TRAIN]
    queries = gaussian_mixture(256, D, seed=1)[:, None, :].copy()  # each (1, d)
    rows = []
    with threads(1):
        for n in SIZES:
            for kind, libraries in build(train, data[-n:]).items():
                row = {"kind": kind, "n": n}
                for library, search in libraries.items():
                    wall, cpu = per_call(search, queries, calls, repeats)
                    row[library] = {"wall_us": wall, "cpu_us": cpu}
                rows.append(row)
                print(f"{kind} n={n}", "  ".join(
                    f"{lib} {v['wall_us']:.1f} µs (cpu {v['cpu_us']:.1f})"
                    for lib, v in row.items() if lib not in ("kind", "n")), flush=True)
    payload = {"sizes": list(SIZES), "n_train": N_TRAIN, "d": D, "k": K, "nlist": NLIST,
               "nprobe": NPROBE, "pq_m": PQ_M, "M": M_HNSW, "ef": EF, "calls": calls,
               "repeats": repeats, "machine": machine(), "rows": rows}
    write_json("overhead-quick" if args.quick else "overhead", payload)
    if not args.quick:
        replace_doc_section("bench_overhead", markdown(payload))


def markdown(payload: dict) -> str:
    table = []
    fixed = min(payload["sizes"])
    for r in payload["rows"]:
        ratio = r["ours"]["cpu_us"] / r["faiss"]["cpu_us"]
        cells = [r["kind"], f"{r['n']:,}"] + [
            f"{r[lib]['wall_us']:.1f} ({r[lib]['cpu_us']:.1f})" if lib in r else "–"
            for lib in ("ours", "faiss", "hnswlib")]
        target = ("met" if ratio <= 1.0 else "missed") if r["n"] == fixed else "–"
        table.append(cells + [f"{ratio:.2f}", target])
    p = payload
    return "\n".join([
        "### Fixed cost of one search call",
        "",
        f"One query (shape `(1, {p['d']})`), k = {p['k']}, one thread, against indexes "
        f"trained on {p['n_train']:,} vectors and holding n of them; microseconds per call, "
        f"wall (CPU), median of {p['repeats']} rounds of {p['calls']:,} calls. IVF: nlist = "
        f"{p['nlist']}, nprobe = {p['nprobe']}; IVF-PQ m = {p['pq_m']} × 8 bits; HNSW M = "
        f"{p['M']}, ef = {p['ef']}. At n = {fixed} the distance work is well under a "
        f"microsecond, so the time is the fixed cost of a call; the target is ours ≤ "
        f"FAISS there, judged on CPU time (the machine is shared; wall time "
        f"includes other processes' turns). `python benchmarks/bench_overhead.py`; "
        f"{machine_line(p['machine'])}.",
        "",
        markdown_table(["index", "n", "ours µs", "FAISS µs", "hnswlib µs",
                        "ours / FAISS (CPU)", f"target (n = {fixed})"], table),
    ])


if __name__ == "__main__":
    main()
