"""RETGEN v2's additions measured one by one in the LM (``retgen_v2.md`` §6.2, Table 6.2).

On the bundled corpus (every parameter fitted on valid, the test split scored once), each
row is the full v2 model with one part taken away:

* ``full``: IVF-PQ pattern index (§2, §4), energy reranker (§5), learned retrieval
  policy (§3, direct gradient) over the reranker's energy;
* ``−PQ``: the same with an IVF-Flat index (float vectors in the inverted lists);
* ``−IVF``: the full model with IVF's pruning switched off (``nprobe = nlist``: every
  PQ code is scanned). An exhaustive PQ scan of all ~1.3M patterns for 43k test tokens ×
  4 resolutions takes tens of minutes, so this row (and, for comparison, the full row)
  is also scored on the first ``SAMPLE`` test tokens (identical contexts to the full
  split's, as a context never reaches back past the split start);
* ``−rerank``: the policy over the kernel weights ``n(p) e^{s/τ}`` instead of the energy;
* ``−policy``: the reranker with the fixed ``k`` and ``τ`` fitted on valid;
* reference rows: IVF-PQ with neither (v2's index in the v1 model), IVF-PQ with exact
  re-ranking of 256 candidates (the float vectors kept too), and the v1 default, HNSW.

Rows full, −IVF, −rerank, −policy and IVF-PQ alone share one process and one trained
IVF-PQ model (the same index and fit; the rows differ only in what re-weights the
retrieved patterns); their build time is that model's plus their own fitting. Every other
row is its own process. Per row: test perplexity, bytes of the arrays the pattern indexes
hold (plus the policy's and reranker's, which are a few kB), the process's peak resident
memory (``VmHWM``, build included), search milliseconds per test token (all resolutions'
searches of the test split, divided by its tokens), scoring milliseconds per token
(search, features, weights and mixture: the whole ``log P``), and build seconds (patterns,
index, fitting on valid).

    python benchmarks/bench_ablation.py            # about 25 minutes on 2 cores
    python benchmarks/bench_ablation.py --quick    # 100k training tokens, a smoke test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _harness import ROOT, machine, machine_line, markdown_table, replace_doc_section, write_json

SAMPLE = 2_000  # test tokens scored by the exhaustive −IVF row
GROUPS = {  # process name: the RetgenLM configuration it trains
    "ivfpq": {"index": "ivfpq"},
    "ivf": {"index": "ivf", "rerank": True, "policy": "direct"},
    "ivfpq+refine": {"index": "ivfpq", "index_params": {"refine_k": 256}},
    "hnsw": {"index": "hnsw"},
}
ORDER = [  # row label, group, v2 Table 6.2 row it corresponds to
    ("full v2 (IVF-PQ + rerank + policy)", "ivfpq", "Full RETGEN v2"),
    ("−PQ (IVF-Flat + rerank + policy)", "ivf", "w/o PQ"),
    ("−IVF (PQ scan of every list)", "ivfpq", "w/o IVF"),
    ("−rerank (IVF-PQ + policy)", "ivfpq", "w/o Energy Rerank"),
    ("−policy (IVF-PQ + rerank)", "ivfpq", "w/o Learned Policy"),
    ("IVF-PQ, neither (v1 weights)", "ivfpq", ""),
    ("IVF-PQ + exact re-ranking of 256", "ivfpq+refine", ""),
    ("v1 default: HNSW", "hnsw", "RETGEN v1"),
]


def peak_rss_bytes() -> int:
    """The process's peak resident set size (``VmHWM`` of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def score(model, stream, reweighting) -> dict:
    """Test perplexity and milliseconds per token of search and of the whole score."""
    k = model.k_ if reweighting is None else reweighting.search_k_
    model.scored_components(stream[:200], reweighting)  # warm-up, not timed
    start = time.perf_counter()
    model.search_stream(stream, k)
    search_s = time.perf_counter() - start
    start = time.perf_counter()
    P, M = model.scored_components(stream, reweighting)
    prob = model._target_prob(P, M, stream, False)
    score_s = time.perf_counter() - start
    return {"test_ppl": float(np.exp(-np.log(prob).mean())),
            "search_ms_per_token": 1e3 * search_s / len(stream),
            "score_ms_per_token": 1e3 * score_s / len(stream)}


def row(model, reweighting, build_s: float, sample: bool = True) -> dict:
    test = model.splits["test"]
    out = score(model, test, reweighting)
    if sample:
        out["sample_ppl"] = score(model, test[:SAMPLE], reweighting)["test_ppl"]
    extra = 0 if reweighting is None else sum(a.nbytes for a in reweighting.state()[1].values())
    return {**out, "index_bytes": model.nbytes["index"] + extra, "build_s": build_s,
            "n_patterns": model.n_patterns}


def measure(group: str, train_tokens: int) -> dict:
    """The rows of one process: train its model, fit what re-weights it, score test."""
    from retgen_ref.lm import RetgenLM, load_corpus
    from retgen_ref.v2 import EnergyReranker, RetrievalPolicy

    corpus = load_corpus("austen")
    if train_tokens:
        corpus = corpus.with_train_prefix(train_tokens)
    start = time.perf_counter()
    model = RetgenLM(**GROUPS[group]).fit(corpus)
    build_s = time.perf_counter() - start
    rows = {}
    if group != "ivfpq":
        rows[group] = row(model, model.reweighting_, build_s)
    else:
        timed = {}
        for name, fit in (("rerank", lambda: EnergyReranker().fit(model)),
                          ("policy", lambda: RetrievalPolicy(method="direct").fit(model)),
                          ("full", lambda: RetrievalPolicy(method="direct").fit(
                              model, timed["rerank"][0]))):
            start = time.perf_counter()
            timed[name] = (fit(), time.perf_counter() - start)
        rerank_s = timed["rerank"][1]
        rows["full v2 (IVF-PQ + rerank + policy)"] = row(
            model, timed["full"][0], build_s + rerank_s + timed["full"][1])
        rows["−rerank (IVF-PQ + policy)"] = row(model, timed["policy"][0],
                                                build_s + timed["policy"][1])
        rows["−policy (IVF-PQ + rerank)"] = row(model, timed["rerank"][0], build_s + rerank_s)
        rows["IVF-PQ, neither (v1 weights)"] = row(model, None, build_s)
        for level in model.levels.values():
            level.index.nprobe = level.index.nlist
        exhaustive = score(model, model.splits["test"][:SAMPLE], timed["full"][0])
        rows["−IVF (PQ scan of every list)"] = {
            **rows["full v2 (IVF-PQ + rerank + policy)"], "test_ppl": None,
            "sample_ppl": exhaustive["test_ppl"],
            "search_ms_per_token": exhaustive["search_ms_per_token"],
            "score_ms_per_token": exhaustive["score_ms_per_token"]}
    peak = peak_rss_bytes()
    return {label: {**r, "peak_rss_bytes": peak, "group": group, "config": GROUPS[group]}
            for label, r in rows.items()}


#: retgen_v2.md Table 6.2 (WikiText-103): perplexity, memory GB, search ms.
PAPER_ABLATION = {"Full RETGEN v2": (26.7, 5.0, 0.15), "w/o PQ": (26.5, 42.0, 0.15),
                  "w/o IVF": (26.7, 5.0, 15.0), "w/o Energy Rerank": (28.1, 5.0, 0.12),
                  "w/o Learned Policy": (27.5, 5.0, 0.15)}
#: retgen_v2.md Table 6.1: (v1, v2) memory GB, search ms, perplexity, build hours.
PAPER_V1_V2 = {"memory": (42.0, 5.0), "search": (15.0, 0.15), "ppl": (28.3, 26.7),
               "build": (3.0, 0.75)}
DOC_CHAPTER = ROOT / "docs" / "06-retgen-v2.md"


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def ablation_table(payload: dict) -> str:
    rows = payload["rows"]
    return markdown_table(
        ["configuration", "v2 Table 6.2 row", "test ppl", f"first {SAMPLE:,} test tokens",
         "index MB", "peak RSS MB", "search ms / token", "score ms / token", "build s"],
        [[label, paper, _fmt(r["test_ppl"], ".2f"),
          _fmt(r.get("sample_ppl"), ".2f"), f"{r['index_bytes'] / 1e6:.0f}",
          f"{r['peak_rss_bytes'] / 1e6:.0f}", f"{r['search_ms_per_token']:.3f}",
          f"{r['score_ms_per_token']:.3f}", f"{r['build_s']:.0f}"]
         for label, _, paper in ORDER for r in [rows[label]]])


def claims_table(payload: dict) -> str:
    """Each v2 §6 ratio next to the same ratio measured here."""
    rows = {paper or label: payload["rows"][label] for label, _, paper in ORDER}
    full, v1 = rows["Full RETGEN v2"], rows["RETGEN v1"]

    def change(paper_pair, ours_pair, kind):
        (p1, p2), (o1, o2) = paper_pair, ours_pair
        if kind == "ratio":
            return (f"{p1:g} → {p2:g} (ratio {p1 / p2:.1f}×)",
                    f"{o1:.4g} → {o2:.4g} (ratio {o1 / o2:.1f}×)")
        return (f"{p1:g} → {p2:g} ({(p2 - p1) / p1:+.1%})",
                f"{o1:.2f} → {o2:.2f} ({(o2 - o1) / o1:+.1%})")

    lines = []
    for claim, paper, ours, kind in [
        ("memory of the index, v1 → v2 (Table 6.1; MB here, GB there)", PAPER_V1_V2["memory"],
         (v1["index_bytes"] / 1e6, full["index_bytes"] / 1e6), "ratio"),
        ("peak resident memory MB, v1 → v2 (Table 6.1's memory, GB there)",
         PAPER_V1_V2["memory"], (v1["peak_rss_bytes"] / 1e6, full["peak_rss_bytes"] / 1e6),
         "ratio"),
        ("search ms per query, v1 → v2 (Table 6.1)", PAPER_V1_V2["search"],
         (v1["search_ms_per_token"], full["search_ms_per_token"]), "ratio"),
        ("test perplexity, v1 → v2 (Table 6.1)", PAPER_V1_V2["ppl"],
         (v1["test_ppl"], full["test_ppl"]), "relative"),
        ("build time, v1 → v2 (Table 6.1; s here, hours there)", PAPER_V1_V2["build"],
         (v1["build_s"], full["build_s"]), "ratio"),
        ("memory without PQ → full (Table 6.2)",
         (PAPER_ABLATION["w/o PQ"][1], PAPER_ABLATION["Full RETGEN v2"][1]),
         (rows["w/o PQ"]["index_bytes"] / 1e6, full["index_bytes"] / 1e6), "ratio"),
        ("search ms without IVF → full (Table 6.2)",
         (PAPER_ABLATION["w/o IVF"][2], PAPER_ABLATION["Full RETGEN v2"][2]),
         (rows["w/o IVF"]["search_ms_per_token"], full["search_ms_per_token"]), "ratio"),
        ("perplexity without PQ → full (Table 6.2)",
         (PAPER_ABLATION["w/o PQ"][0], PAPER_ABLATION["Full RETGEN v2"][0]),
         (rows["w/o PQ"]["test_ppl"], full["test_ppl"]), "relative"),
        ("perplexity without IVF → full (Table 6.2; first "
         f"{SAMPLE:,} test tokens here)",
         (PAPER_ABLATION["w/o IVF"][0], PAPER_ABLATION["Full RETGEN v2"][0]),
         (rows["w/o IVF"]["sample_ppl"], full["sample_ppl"]), "relative"),
        ("perplexity without the reranker → full (Table 6.2)",
         (PAPER_ABLATION["w/o Energy Rerank"][0], PAPER_ABLATION["Full RETGEN v2"][0]),
         (rows["w/o Energy Rerank"]["test_ppl"], full["test_ppl"]), "relative"),
        ("perplexity without the policy → full (Table 6.2)",
         (PAPER_ABLATION["w/o Learned Policy"][0], PAPER_ABLATION["Full RETGEN v2"][0]),
         (rows["w/o Learned Policy"]["test_ppl"], full["test_ppl"]), "relative"),
    ]:
        paper_text, ours_text = change(paper, ours, kind)
        lines.append([claim, paper_text, ours_text])
    return markdown_table(["claim", "retgen_v2.md (WikiText-103)", "measured here (Austen)"],
                          lines)


def render(payload: dict) -> None:
    head = (f"`python benchmarks/bench_ablation.py`, {payload['machine_line']}; training "
            f"tokens: {payload['train_tokens'] or 'all'}. Rows full, −IVF, −rerank, −policy "
            "and IVF-PQ-neither share one process and one trained index (so one peak RSS); "
            f"−IVF is scored on the first {SAMPLE:,} test tokens only (an exhaustive PQ scan "
            "of the whole split takes tens of minutes). Search ms / token: all four "
            "resolutions' searches; the policy's rows search k_max = 128 patterns.\n\n")
    table = ablation_table(payload)
    replace_doc_section("bench_ablation", "## RETGEN v2 ablation (retgen_v2.md Table 6.2)\n\n"
                        + head + table)
    replace_doc_section("bench_ablation_table", head + table, DOC_CHAPTER)
    replace_doc_section("bench_ablation_claims",
                        f"From the same run (`python benchmarks/bench_ablation.py`). v1 is the "
                        "v1 default here (HNSW, kernel weights); the paper's v1 is a flat "
                        "index.\n\n" + claims_table(payload), DOC_CHAPTER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", choices=GROUPS, help=argparse.SUPPRESS)  # internal
    parser.add_argument("--train-tokens", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.train_tokens)))
        return
    train_tokens = 100_000 if args.quick else 0
    info = machine()
    payload = {"machine": info, "machine_line": machine_line(info),
               "train_tokens": train_tokens, "rows": {}}
    for group in GROUPS:
        out = subprocess.run([sys.executable, __file__, "--one", group,
                              "--train-tokens", str(train_tokens)],
                             capture_output=True, text=True, check=True)
        rows = json.loads(out.stdout.strip().splitlines()[-1])
        if group != "ivfpq":
            rows = {label: rows[group] for label, g, _ in ORDER if g == group}
        payload["rows"].update(rows)
        for label, r in rows.items():
            print(label, json.dumps(r), flush=True)
    write_json("ablation-quick" if args.quick else "ablation", payload)
    if not args.quick:
        render(payload)


if __name__ == "__main__":
    main()
