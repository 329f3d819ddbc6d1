"""Parallel and serial builds of a kernel each load their own code from Numba's disk cache.

Numba keys a cached kernel by its function, not by its build options, so two builds of one
Python function (``njit(parallel=True)(f)`` and ``njit(f)``) read and write one cache
entry: whichever process compiled first decided, for every later process, whether the
"parallel" kernel ran on one core or the "serial" one woke the thread pool on every
single-query search. Each build is now its own function. These tests write the cache in
one order in a first process, then check in fresh processes that load it:

* calling only serial builds never starts Numba's thread pool;
* calling a parallel build starts it, and its worker threads do part of the work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, os, sys
import numpy as np
import numba
import numba.np.ufunc.parallel as parallel_layer
from numba.core.dispatcher import Dispatcher
import retgen_ref
from retgen_ref import distances, exact, kmeans
from retgen_ref.heap import new_heaps

rng = np.random.default_rng(0)
base = rng.standard_normal((200_000, 32)).astype(np.float32)
norms = np.einsum("ij,ij->i", base, base).astype(np.float32)
queries = base[:16] + 0.1
one, f1, fm1 = queries[0], np.float32(1.0), np.float32(-2.0)
xt = np.ascontiguousarray(base[:4096].T)


def seeding_args():
    return (xt, base[0], np.full(4096, 1e30, np.float32), np.zeros(4), np.empty(4096, np.float32))


def serial():
    v, i = new_heaps(1, 10)
    distances.scan_sorted_one(one, base, norms, f1, fm1, v[0], i[0])
    out_d, out_i = np.empty(10, np.float32), np.empty(10, np.int64)
    exact.exact_search_query(one, base, norms, 36, True, 1.0, out_d, out_i)
    kmeans.lower_min_sq_dist_serial(*seeding_args())


def parallel():
    v, i = new_heaps(len(queries), 10)
    for _ in range(6):  # about a second of work, so both threads get some
        distances.scan_topk(queries, base, norms, f1, fm1, v, i)
    distances.sort_heaps(v, i)
    kmeans.lower_min_sq_dist(*seeding_args())


def worker_ticks():
    # CPU clock ticks of every thread of this process but the main one (Linux /proc)
    total = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) != os.getpid():
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


order = sys.argv[1]
before = worker_ticks()
for step in order.split(","):
    {"serial": serial, "parallel": parallel}[step]()
misses = sum(sum(obj.stats.cache_misses.values())
             for module in (distances, exact, kmeans) for obj in vars(module).values()
             if isinstance(obj, Dispatcher))
print(json.dumps({"pool_started": bool(parallel_layer._is_initialized),
                  "worker_ticks": worker_ticks() - before, "misses": misses}))
"""


def _run(order: str, cache_dir) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, order], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("written_in", ["parallel,serial", "serial,parallel"])
def test_each_build_loads_its_own_code_from_a_cache_written_in_either_order(tmp_path,
                                                                           written_in):
    first = _run(written_in, tmp_path)  # compiles and writes the cache in this order
    assert first["misses"] > 0
    serial = _run("serial", tmp_path)
    assert serial["misses"] == 0, serial  # loaded from the cache ...
    assert not serial["pool_started"], serial  # ... and never woke the thread pool
    assert serial["worker_ticks"] == 0, serial
    parallel = _run("parallel", tmp_path)
    assert parallel["misses"] == 0, parallel
    assert parallel["pool_started"], parallel
    assert parallel["worker_ticks"] > 0, parallel  # a second thread did part of the work
