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

hits = misses = 0
for name, module in list(sys.modules.items()):
    if name.startswith("retgen_ref"):
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher):
                hits += sum(obj.stats.cache_hits.values())
                misses += sum(obj.stats.cache_misses.values())
print(json.dumps({"hits": hits, "misses": misses}))
"""


def _run() -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_loads_every_kernel_from_cache():
    _run()  # may compile and write the cache
    second = _run()
    assert second["misses"] == 0, second
    assert second["hits"] > 0, second
