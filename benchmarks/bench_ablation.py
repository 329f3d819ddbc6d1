"""RETGEN v2's additions measured one by one in the LM (``retgen_v2.md`` §6.2, Table 6.2).

Each configuration runs in its own process, so the peak resident memory (``VmHWM``) is
that configuration's alone: train the LM on the bundled corpus (every parameter fitted on
valid), then score the test split once. Reported per row: test perplexity, bytes of the
arrays the pattern indexes hold, peak resident memory of the process, retrieval
milliseconds per test token (all resolutions' searches of the test split, divided by its
tokens) and build time (indexing plus fitting on valid).

Rows so far (issue 7, in progress): the pattern index as exact float vectors (``flat``,
v2's "w/o PQ, w/o IVF"), HNSW (the v1 default), IVF-PQ (v2's compressed index) and IVF-PQ
with exact re-ranking of its candidates.

    python benchmarks/bench_ablation.py                  # about 15 minutes on 2 cores
    python benchmarks/bench_ablation.py --quick          # 100k training tokens, a smoke test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _harness import RESULTS, machine, machine_line, markdown_table, replace_doc_section, write_json

ROWS = {  # label: RetgenLM configuration
    "flat (exact float32)": {"index": "flat"},
    "hnsw": {"index": "hnsw"},
    "ivfpq": {"index": "ivfpq"},
    "ivfpq + exact re-ranking of 256": {"index": "ivfpq", "index_params": {"refine_k": 256}},
}


def peak_rss_bytes() -> int:
    """The process's peak resident set size (``VmHWM`` of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(config: dict, train_tokens: int) -> dict:
    """One configuration, in this process: train, then time retrieval on the test split."""
    from retgen_ref.lm import RetgenLM, load_corpus

    corpus = load_corpus("austen")
    if train_tokens:
        corpus = corpus.with_train_prefix(train_tokens)
    start = time.perf_counter()
    model = RetgenLM(**config).fit(corpus)
    build_s = time.perf_counter() - start
    test = model.splits["test"]
    start = time.perf_counter()
    hits = model.search_stream(test, model.k_)
    search_s = time.perf_counter() - start
    P, M = model.components(test, hits)
    prob = (model.mixture_.weights(M) * P).sum(axis=0)
    return {"config": config, "test_ppl": float(np.exp(-np.log(prob).mean())),
            "index_bytes": model.nbytes["index"], "pattern_bytes": model.nbytes["patterns"],
            "peak_rss_bytes": peak_rss_bytes(), "search_ms_per_token": 1e3 * search_s / len(test),
            "build_s": build_s, "n_patterns": model.n_patterns}


def render(payload: dict) -> None:
    rows = payload["rows"]
    table = markdown_table(
        ["configuration", "test ppl", "index MB", "peak RSS MB", "search ms / token",
         "build s"],
        [[label, f"{r['test_ppl']:.2f}", f"{r['index_bytes'] / 1e6:.0f}",
          f"{r['peak_rss_bytes'] / 1e6:.0f}", f"{r['search_ms_per_token']:.3f}",
          f"{r['build_s']:.0f}"] for label, r in rows.items()])
    replace_doc_section("bench_ablation", "## RETGEN v2 ablation (in progress)\n\n"
                        f"`python benchmarks/bench_ablation.py`, {payload['machine_line']}; "
                        f"training tokens: {payload['train_tokens'] or 'all'}.\n\n" + table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one row
    parser.add_argument("--train-tokens", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one), args.train_tokens)))
        return
    train_tokens = 100_000 if args.quick else 0
    info = machine()
    payload = {"machine": info, "machine_line": machine_line(info),
               "train_tokens": train_tokens, "rows": {}}
    for label, config in ROWS.items():
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(config),
                              "--train-tokens", str(train_tokens)],
                             capture_output=True, text=True, check=True)
        payload["rows"][label] = json.loads(out.stdout.strip().splitlines()[-1])
        print(label, payload["rows"][label], flush=True)
    write_json("ablation-quick" if args.quick else "ablation", payload)
    if not args.quick:
        render(payload)


if __name__ == "__main__":
    main()
