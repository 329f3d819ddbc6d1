"""ShardedIndex (retgen_v2.md §8.2): resident memory of a search, sharded on disk vs in memory.

One configuration per fresh subprocess, so no run inherits another's memory:

* ``build``: write a flat ShardedIndex of ``n × d`` float32 vectors (a Gaussian mixture,
  generated and added in chunks so that generating never holds the whole set);
* ``sharded``: reopen it with ``load_index`` and search ``nq`` queries, ``k = 10``, twice
  (the first search also verifies every shard's SHA-256, see ShardedIndex's Notes);
* ``sharded (cold)``: the same after ``posix_fadvise(DONTNEED)`` has dropped the shard
  files from the page cache, so the first search reads them from disk;
* ``in-memory flat``: one FlatIndex over the same vectors, searched the same way.

Memory is read from ``/proc/self/status``: the high-water mark ``VmHWM`` is reset by
writing ``5`` to ``/proc/self/clear_refs`` just before the searches, so it is the peak
resident memory of the search phase (memory-mapped shard pages count while mapped). If the
reset is not allowed, the peak is the maximum ``VmRSS`` seen by a thread sampling every
2 ms. Both sharded and in-memory results must have identical top-k ids.

Writes ``benchmarks/results/store.json`` and the table in ``docs/benchmarks.md``.

    python benchmarks/bench_store.py           # 2,000,000 × 64 in shards of 100,000 (about 1 minute)
    python benchmarks/bench_store.py --quick   # 200,000 × 64 in shards of 20,000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from _harness import machine, machine_line, markdown_table, replace_doc_section, write_json
from retgen_ref import FlatIndex, ShardedIndex, load_index

CHUNK = 100_000
N_CLUSTERS = 100


def chunks(n: int, d: int, seed: int = 0):
    """The data set in chunks of ``CHUNK`` rows: a Gaussian mixture (spread 0.5) whose
    chunks depend only on ``(seed, chunk number)``, so every process sees the same set."""
    centres = np.random.default_rng([seed, 0]).standard_normal((N_CLUSTERS, d), np.float32)
    for c, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng([seed, 1, c])
        rows = min(CHUNK, n - start)
        x = rng.standard_normal((rows, d), np.float32)
        x *= np.float32(0.5)
        x += centres[rng.integers(0, N_CLUSTERS, rows)]
        yield x


def queries(nq: int, d: int, seed: int = 0) -> np.ndarray:
    return next(chunks(nq, d, seed + 1))


def status() -> dict:
    """Resident memory figures of this process, in MiB (the JSON keys say mb)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


class Sampler(threading.Thread):
    """Largest VmRSS seen every 2 ms (the fallback when VmHWM cannot be reset)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self._done = 0.0, threading.Event()

    def run(self):
        while not self._done.wait(0.002):
            self.peak = max(self.peak, status()["VmRSS"])

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak


def measured_searches(index, xq, k) -> dict:
    """Two timed searches; resident memory before, at peak, and after."""
    before = status()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        hwm_reset = True
    except OSError:
        hwm_reset = False
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    D, I = index.search(xq, k)
    t1 = time.perf_counter()
    index.search(xq, k)
    t2 = time.perf_counter()
    sampled = sampler.stop()
    after = status()
    return {"rss_before_mb": before["VmRSS"], "rss_anon_before_mb": before["RssAnon"],
            "peak_mb": after["VmHWM"] if hwm_reset else sampled, "peak_from": "VmHWM" if
            hwm_reset else "sampled VmRSS", "sampled_peak_mb": sampled,
            "rss_after_mb": after["VmRSS"], "first_search_s": t1 - t0,
            "second_search_s": t2 - t1}, D, I


def warm_up(d: int, nq: int, k: int) -> None:
    """Load the compiled kernels both search paths use, before any measurement."""
    x = np.random.default_rng(0).standard_normal((2000, d)).astype(np.float32)
    index = FlatIndex(d)
    index.add(x)
    index.search(x[:nq], k)


def worker(args) -> dict:
    if args.worker == "build":
        t0 = time.perf_counter()
        store = ShardedIndex(args.store, args.d, args.shard_size)
        for x in chunks(args.n, args.d):
            store.add(x)
        return {"build_s": time.perf_counter() - t0, "nbytes": store.nbytes,
                "shard_bytes": store._shards[0]["bytes"], "nshards": store.nshards}
    warm_up(args.d, args.nq, args.k)
    xq = queries(args.nq, args.d)
    result = {"rss_start_mb": status()["VmRSS"]}
    if args.worker == "flat":
        t0 = time.perf_counter()
        index = FlatIndex(args.d)
        for x in chunks(args.n, args.d):
            index.add(x)
        result.update(build_s=time.perf_counter() - t0, nbytes=index.nbytes)
    else:
        if args.worker == "cold":
            for path in Path(args.store).iterdir():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())  # dirty pages cannot be dropped
                    os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        index = load_index(args.store)
    stats, D, I = measured_searches(index, xq, args.k)
    np.save(args.out, I)
    np.save(args.out.replace(".npy", "-D.npy"), D)
    return {**result, **stats}


def run_worker(mode: str, args, out: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--store", args.store, "--out", out,
           "--n", str(args.n), "--d", str(args.d), "--shard-size", str(args.shard_size),
           "--nq", str(args.nq), "--k", str(args.k)]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict], shard_bytes: int) -> str:
    body = []
    for r in rows:
        shard = "—" if r["config"] == "in-memory flat" else f"{shard_bytes / 2**20:,.1f}"
        mb = [r["rss_start_mb"], r["nbytes"] / 2**20, r["rss_before_mb"], r["peak_mb"],
              r["peak_mb"] - r["rss_before_mb"], r["rss_after_mb"]]
        body.append([r["config"], *(f"{v:,.0f}" for v in mb[:2]), shard,
                     *(f"{v:,.0f}" for v in mb[2:]), f'{r["first_search_s"]:.2f}',
                     f'{r["second_search_s"]:.2f}'])
    return markdown_table(["configuration", "process baseline MiB", "data MiB", "one shard MiB",
                           "RSS before search MiB", "peak RSS in search MiB", "peak − before MiB",
                           "RSS after search MiB", "first search s", "second search s"], body)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200,000 vectors, shards of 20,000")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the store is written (and removed afterwards)")
    parser.add_argument("--worker", choices=["build", "sharded", "cold", "flat"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=100_000)
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.quick:
        args.n, args.shard_size, args.nq = 200_000, 20_000, 200
    work = Path(tempfile.mkdtemp(prefix="bench_store-", dir=args.dir))
    args.store = str(work / "store")
    try:
        built = run_worker("build", args, "")
        print(f"built {built['nshards']} shards of {built['shard_bytes'] / 2**20:.1f} MiB "
              f"({built['nbytes'] / 2**20:.0f} MiB) in {built['build_s']:.1f}s")
        rows, ids = [], {}
        for mode, config in (("sharded", "sharded flat (page cache)"),
                             ("cold", "sharded flat (cold: read from disk)"),
                             ("flat", "in-memory flat")):
            out = str(work / f"{mode}.npy")
            row = {"config": config, "nbytes": built["nbytes"], **run_worker(mode, args, out)}
            ids[mode] = (np.load(out), np.load(out.replace(".npy", "-D.npy")))
            rows.append(row)
            print(f"{config}: RSS {row['rss_before_mb']:.0f} MiB before, peak "
                  f"{row['peak_mb']:.0f} MiB ({row['peak_from']}); search "
                  f"{row['first_search_s']:.2f}s then {row['second_search_s']:.2f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    same = all(np.array_equal(ids[m][0], ids["flat"][0]) for m in ("sharded", "cold"))
    max_dd = max(float(np.abs(ids[m][1] - ids["flat"][1]).max()) for m in ("sharded", "cold"))
    print(f"top-{args.k} ids identical to the in-memory FlatIndex: {same}; "
          f"max |ΔD| {max_dd:.2e}")
    payload = {"benchmark": "store", "machine": machine(), "quick": args.quick, "n": args.n,
               "d": args.d, "shard_size": args.shard_size, "nq": args.nq, "k": args.k,
               "build": built, "rows": rows, "identical_ids": same, "max_abs_distance_diff":
               max_dd}
    path = write_json("store-quick" if args.quick else "store", payload)
    if args.quick:
        print(f"wrote {path} (quick run: docs/benchmarks.md left as is)")
        return
    peak_note = ("`VmHWM` of the search phase, reset through `/proc/self/clear_refs`"
                 if all(r["peak_from"] == "VmHWM" for r in rows) else
                 "the largest `VmRSS` sampled every 2 ms (`VmHWM` could not be reset)")
    replace_doc_section("bench_store", (
        f"## ShardedIndex: memory of a search, sharded on disk vs in memory\n\n"
        f"`python benchmarks/bench_store.py` (JSON in `benchmarks/results/store.json`). "
        f"Machine: {machine_line(payload['machine'])}. {args.n:,} × {args.d} float32 "
        f"vectors (Gaussian mixture) in {built['nshards']} shards of {args.shard_size:,} "
        f"rows; {args.nq:,} queries, k = {args.k}; each configuration in a fresh process. "
        f"Peak: {peak_note} (memory-mapped shard pages count while mapped). The first sharded search also "
        f"verifies every shard's SHA-256; \"cold\" first drops the shard files from the page "
        f"cache. A sharded search's peak is its RSS after the search plus about one shard "
        f"(the one mapped at the time); RSS after − before is the search's scratch (BLAS "
        f"tiles of 512 × 4096 float32 per thread, heaps) as the allocator keeps it, which "
        f"varies from run to run. Top-{args.k} ids identical to the in-memory FlatIndex: "
        f"**{'yes' if same else 'NO'}** (max |ΔD| {max_dd:.1e}).\n\n"
        + table(rows, built["shard_bytes"])))
    print(f"wrote {path} and docs/benchmarks.md")


if __name__ == "__main__":
    main()
