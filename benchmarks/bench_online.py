"""Online learning and drift with RETGEN (``retgen.md`` §9.1–9.2) on the bundled corpus.

* ``cost``: a default model (hnsw) trained on the first five novels' training text learns
  *Persuasion*'s training text by ``add_documents`` in chunks of doubling size; for each
  chunk, the seconds, seconds per 1,000 tokens and new patterns, against the time the
  model took to train from scratch.
* ``drift``: a model trained on *Sense and Sensibility* alone reads *Persuasion* in eight
  chunks at times 1…8, with decay rates λ = 0 (plain accumulation) and λ > 0; after each
  chunk, perplexity on both novels' test paragraphs. The vocabulary is that of the whole
  corpus, so Persuasion's words exist but have no patterns until they are read.

Writes ``benchmarks/results/online.json`` and tables in ``docs/benchmarks.md`` and
``docs/05-generation-and-updates.md``.

    python benchmarks/bench_online.py            # about 8 minutes on 2 cores
    python benchmarks/bench_online.py --render   # rewrite the docs from the JSON
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _harness import (ROOT, RESULTS, machine, machine_line, markdown_table, replace_doc_section,
                      write_json)
from retgen_ref.lm import Corpus, RetgenLM, load_corpus, read_documents, split_documents

CHAPTER = ROOT / "docs" / "05-generation-and-updates.md"
DECAY_RATES = (0.0, 0.5)
DRIFT_CHUNKS = 8


def novel_splits(vocab, document) -> dict[str, np.ndarray]:
    """One novel's train/valid/test token ids (recipe v1) under the corpus vocabulary."""
    return {name: vocab.encode(tokens) for name, tokens in split_documents([document]).items()}


def paragraph_chunks(stream: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Consecutive pieces of ``stream`` of about ``sizes`` tokens, cut after an ``<eos>``."""
    ends = np.flatnonzero(stream == 1) + 1
    pieces, start = [], 0
    for size in sizes:
        stop = ends[np.searchsorted(ends, start + size)] if start + size < ends[-1] else ends[-1]
        pieces.append(stream[start:stop])
        start = stop
    return pieces


def cost(corpus, novels) -> dict:
    others = [novel_splits(corpus.vocab, doc) for doc in novels[:-1]]
    persuasion = novel_splits(corpus.vocab, novels[-1])
    base = Corpus("austen without Persuasion", corpus.vocab,
                  np.concatenate([s["train"] for s in others]),
                  np.concatenate([s["valid"] for s in others]),
                  np.concatenate([s["test"] for s in others]))
    start = time.perf_counter()
    model = RetgenLM().fit(base)
    train_s = time.perf_counter() - start
    sizes = [1000 * 2 ** i for i in range(7)]
    rows = []
    for piece in paragraph_chunks(persuasion["train"], sizes):
        stored = model.n_patterns
        summary = model.add_token_streams([piece])
        rows.append({"tokens": len(piece), "stored_before": stored,
                     "new_patterns": int(sum(summary["new_patterns"].values())),
                     "seconds": summary["seconds"]})
        print(rows[-1], flush=True)
    return {"train_s": train_s, "train_tokens": int(len(base.train)), "rows": rows}


def drift(corpus, novels) -> dict:
    source = novel_splits(corpus.vocab, novels[0])
    target = novel_splits(corpus.vocab, novels[-1])
    base = Corpus("Sense and Sensibility", corpus.vocab, source["train"], source["valid"],
                  source["test"])
    chunks = paragraph_chunks(target["train"], [len(target["train"]) // DRIFT_CHUNKS + 1]
                              * DRIFT_CHUNKS)
    runs = {}
    for rate in DECAY_RATES:
        model = RetgenLM(decay_rate=rate).fit(base)
        rows = [{"time": 0, "tokens_read": 0, "new_ppl": model.perplexity(target["test"]),
                 "old_ppl": model.perplexity(source["test"])}]
        for t, piece in enumerate(chunks, start=1):
            model.add_token_streams([piece], timestamp=t)
            rows.append({"time": t, "tokens_read": rows[-1]["tokens_read"] + len(piece),
                         "new_ppl": model.perplexity(target["test"]),
                         "old_ppl": model.perplexity(source["test"])})
            print(rate, rows[-1], flush=True)
        runs[str(rate)] = rows
    return runs


def render(payload: dict) -> None:
    c = payload["cost"]
    cost_table = markdown_table(
        ["tokens added", "patterns stored before", "new patterns", "seconds",
         "ms per 1,000 tokens"],
        [[f"{r['tokens']:,}", f"{r['stored_before']:,}", f"{r['new_patterns']:,}",
          f"{r['seconds']:.2f}", f"{1000 * r['seconds'] / r['tokens'] * 1000:.0f}"]
         for r in c["rows"]])
    cost_text = (f"`python benchmarks/bench_online.py`, {payload['machine_line']}. Training the "
                 f"default model from scratch on the other five novels ({c['train_tokens']:,} "
                 f"tokens) took {c['train_s']:.0f} s; then Persuasion's training text was "
                 "added in chunks of doubling size:\n\n" + cost_table)
    runs = payload["drift"]
    rates = list(runs)
    drift_table = markdown_table(
        ["time", "Persuasion tokens read"]
        + [f"Persuasion test ppl, λ = {r}" for r in rates]
        + [f"S&S test ppl, λ = {r}" for r in rates],
        [[row["time"], f"{row['tokens_read']:,}"]
         + [f"{runs[r][i]['new_ppl']:.1f}" for r in rates]
         + [f"{runs[r][i]['old_ppl']:.1f}" for r in rates]
         for i, row in enumerate(runs[rates[0]])])
    drift_text = (f"`python benchmarks/bench_online.py`, {payload['machine_line']}. A model "
                  "trained on Sense and Sensibility reads Persuasion in "
                  f"{DRIFT_CHUNKS} chunks, one per time unit:\n\n" + drift_table)
    replace_doc_section("bench_online_cost", cost_text, CHAPTER)
    replace_doc_section("bench_online_drift", drift_text, CHAPTER)
    replace_doc_section("bench_online", "## Online learning and drift (RETGEN LM)\n\n"
                        + cost_text + "\n\n" + drift_text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    path = RESULTS / "online.json"
    if args.render:
        render(json.loads(path.read_text()))
        return
    corpus = load_corpus("austen")
    novels = read_documents("austen")
    info = machine()
    payload = {"machine": info, "machine_line": machine_line(info),
               "cost": cost(corpus, novels), "drift": drift(corpus, novels)}
    write_json("online", payload)
    render(payload)


if __name__ == "__main__":
    main()
