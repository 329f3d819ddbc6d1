"""Kernels are cached on disk: a second process compiles nothing (DESIGN.md, convention 2)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys
import numpy as np
from numba.core.dispatcher import Dispatcher
import retgen_ref

rng = np.random.default_rng(0)
for metric in ("l2", "ip", "cosine"):
    index = retgen_ref.FlatIndex(16, metric)
    index.add(rng.standard_normal((500, 16)))
    index.search(rng.standard_normal((3, 16)), 5)    # direct scan path
    index.search(rng.standard_normal((40, 16)), 5)   # BLAS tile path

# Filtered searches and deletions, through every kernel that takes an ``allowed`` mask; the
# answers are printed, so a second process that loaded them from the cache must agree.
x = rng.standard_normal((2000, 16)).astype(np.float32)
allowed = rng.random(2000) < 0.3
answers = []
for index in (retgen_ref.HNSWIndex(16, 8, ef_construction=32), retgen_ref.IVFFlatIndex(16, 8),
              retgen_ref.IVFPQIndex(16, 8, 4, 4), retgen_ref.IVFSQIndex(16, 8),
              retgen_ref.SQIndex(16), retgen_ref.LSHIndex(16, 6, 4, metric="l2")):
    if not index.is_trained:
        index.train(x)
    index.add(x)
    index.remove_ids(np.arange(0, 2000, 7))
    for nq in (1, 30):
        answers.append(index.search(x[:nq] + 0.01, 5, ids=allowed)[1].tolist())
        answers.append(index.search(x[:nq] + 0.01, 5)[1].tolist())

hits = misses = 0
for name, module in list(sys.modules.items()):
    if name.startswith("retgen_ref"):
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher):
                hits += sum(obj.stats.cache_hits.values())
                misses += sum(obj.stats.cache_misses.values())
print(json.dumps({"hits": hits, "misses": misses, "answers": answers}))
"""


def _run() -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_every_kernel_from_cache():
    first = _run()  # may compile and write the cache
    second = _run()
    assert second["misses"] == 0, {k: second[k] for k in ("hits", "misses")}
    assert second["hits"] > 0
    assert second["answers"] == first["answers"]
