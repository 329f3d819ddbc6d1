"""RAG on the bundled corpus: retrieval quality of TF-IDF, BM25 and dense, then what
retrieved passages do to RETGEN's held-out perplexity (RAG-Token and RAG-Sequence).

* ``known-item``: the task of :mod:`retgen_ref.rag.known_item`. The collection is every
  paragraph (all splits) without its first sentence; a query is the first sentence of a
  test-split paragraph and its one relevant item the rest of that paragraph. MRR,
  NDCG@10, recall@10 and recall@100 for TF-IDF, BM25 (k1 = 1.2, b = 0.75) and the dense
  retriever (the LM's word vectors, idf-weighted, in our exact FlatIndex and in our HNSW).
  The dense weighting was chosen on valid-split queries; that comparison is printed too.
* ``perplexity``: the default RETGEN model trained on the full training split is the
  generator; the passages are the training paragraphs. For each retriever (and, as a
  control, k passages drawn at random, scored 0), ``τ_η`` and the generator's mixture are
  fitted on valid (:class:`retgen_ref.rag.RetgenRAG`) and the test split is scored once:
  after its first 64 tokens, in chunks of 32 tokens, each with the 64 tokens before it as
  the query. Plain RETGEN is scored on the same tokens. Then the same with a generator
  trained on the first 100k training tokens only, the passages still all the training
  paragraphs: RAG reading text its generator has not stored (BM25 and the control).

Writes ``benchmarks/results/rag.json`` and the tables in ``docs/07-rag.md`` and
``docs/benchmarks.md``.

    python benchmarks/bench_rag.py            # about 20 minutes on 2 cores
    python benchmarks/bench_rag.py --quick    # 100k training tokens, 5k scored: a smoke test
    python benchmarks/bench_rag.py --render   # rewrite the docs from the JSON
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _harness import (ROOT, RESULTS, machine, machine_line, markdown_table, replace_doc_section,
                      write_json)
from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.rag import (BM25Retriever, DenseRetriever, RetgenRAG, TfidfRetriever, mrr,
                            ndcg_at_k, recall_at_k, retriever_distribution)
from retgen_ref.rag.known_item import known_item_task

CHAPTER = ROOT / "docs" / "07-rag.md"
K_PASSAGES = 5
SMALL_TRAIN_TOKENS = 100_000  # the second generator's training prefix


class RandomPassages:
    """Control retriever: ``k`` passages drawn uniformly at random per query, all scored 0
    (so ``p_η`` is uniform): what mixing in passages does when retrieval knows nothing."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def fit(self, docs, vocab_size=None):
        self.n_docs_ = len(docs)
        return self

    def search(self, queries, k: int):
        ids = np.array([self.rng.choice(self.n_docs_, k, replace=False) for _ in queries])
        return np.zeros(ids.shape), ids


def retrievers(model, with_hnsw: bool) -> dict:
    out = {"TF-IDF": TfidfRetriever(), "BM25": BM25Retriever(),
           "dense (flat)": DenseRetriever(model.word_vectors)}
    if with_hnsw:
        out["dense (HNSW)"] = DenseRetriever(model.word_vectors, index="hnsw")
    return out


def known_item(corpus, model) -> dict:
    rows = {}
    for split in ("valid", "test"):
        task = known_item_task(corpus, split)
        relevant = list(task.relevant)
        candidates = retrievers(model, with_hnsw=split == "test")
        if split == "valid":
            candidates["dense (flat), plain mean"] = DenseRetriever(model.word_vectors,
                                                                    weighting="mean")
        for name, retriever in candidates.items():
            retriever.fit(task.collection, len(corpus.vocab))
            start = time.perf_counter()
            _, ids = retriever.search(task.queries, 100)
            seconds = time.perf_counter() - start
            lengths = np.array([len(q) for q in task.queries])
            rows[f"{split}: {name}"] = {
                "split": split, "retriever": name, "queries": len(task.queries),
                "collection": len(task.collection),
                "query_tokens_median": float(np.median(lengths)),
                "query_tokens_at_most_3": float(np.mean(lengths <= 3)),
                "mrr": mrr(ids, relevant),
                "ndcg_10": ndcg_at_k(ids, relevant, 10),
                "recall_10": recall_at_k(ids, relevant, 10),
                "recall_100": recall_at_k(ids, relevant, 100),
                "ms_per_query": 1000 * seconds / len(task.queries)}
            print(rows[f"{split}: {name}"], flush=True)
    return rows


def perplexity(corpus, model, generator: str, candidates: dict, max_tokens=None) -> dict:
    passages = corpus.paragraphs("train")
    rows = {}
    for name, retriever in candidates.items():
        start = time.perf_counter()
        rag = RetgenRAG(model, retriever.fit(passages, len(corpus.vocab)), passages,
                        k=K_PASSAGES).fit("valid", max_tokens)
        fitted = time.perf_counter() - start
        chunks = rag.chunk_log_probs("test", max_tokens)
        n = int(chunks["tokens"].sum())
        rows[f"{generator}: {name}"] = {
            "generator": generator, "retriever": name, "tokens": n,
            "chunks": len(chunks["tokens"]),
            **{f"{kind}_ppl": float(np.exp(-chunks[kind].sum() / n))
               for kind in ("plain", "rag_token", "rag_sequence")},
            **{f"{kind}_change_ci95": bootstrap_change(chunks, kind)
               for kind in ("rag_token", "rag_sequence")},
            "tau_eta": "inf" if np.isinf(rag.tau_eta_) else rag.tau_eta_,
            **retrieval_spread(chunks["scores"], rag.tau_eta_),
            "valid_rag_token_ppl": rag.fit_report_["rag_token_ppl"],
            "fit_s": fitted, "eval_s": time.perf_counter() - start - fitted}
        print(rows[f"{generator}: {name}"], flush=True)
    return rows


def retrieval_spread(scores: np.ndarray, tau: float) -> dict:
    """Medians over the test chunks: the best score, its lead over the k-th, and the top
    passage's p_η at the fitted τ_η and at τ_η = 1 (the note's formula)."""
    return {"score_best_median": float(np.median(scores[:, 0])),
            "score_lead_median": float(np.median(scores[:, 0] - scores[:, -1])),
            "p_eta_top_median": float(np.median(retriever_distribution(scores, tau)[:, 0])),
            "p_eta_top_median_tau1": float(np.median(
                retriever_distribution(scores, 1.0)[:, 0]))}


def bootstrap_change(chunks: dict, kind: str, n_resamples: int = 2000) -> list:
    """95% interval of the perplexity change (RAG / plain − 1) over chunks resampled with
    replacement (paired: the same chunks for both)."""
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(chunks["tokens"]), (n_resamples, len(chunks["tokens"])))
    gain = (chunks[kind] - chunks["plain"])[pick].sum(axis=1)
    ratio = np.exp(-gain / chunks["tokens"][pick].sum(axis=1))
    return (np.percentile(ratio, [2.5, 97.5]) - 1).tolist()


def _tau(tau) -> str:
    return "∞ (uniform)" if tau == "inf" else f"{tau:.3g}"


def render(payload: dict) -> None:
    retrieval = payload["known_item"]
    test = [r for r in retrieval.values() if r["split"] == "test"]
    valid = [r for r in retrieval.values() if r["split"] == "valid"]
    first = test[0]
    ki_table = markdown_table(
        ["retriever", "MRR (top 100)", "NDCG@10", "recall@10", "recall@100", "ms / query"],
        [[r["retriever"], f"{r['mrr']:.3f}", f"{r['ndcg_10']:.3f}", f"{r['recall_10']:.3f}",
          f"{r['recall_100']:.3f}", f"{r['ms_per_query']:.2f}"] for r in test])
    choice = ", ".join(f"{r['retriever']} MRR {r['mrr']:.3f}" for r in valid)
    n = first["collection"]
    ki_text = (f"`python benchmarks/bench_rag.py`, {payload['machine_line']}. Known-item "
               f"task: {n:,} distinct paragraph rests in the collection, "
               f"{first['queries']} test-split first sentences as queries (median "
               f"{first['query_tokens_median']:.0f} tokens; "
               f"{100 * first['query_tokens_at_most_3']:.0f}% have 3 tokens or fewer, such "
               f"as `\" oh !`), one relevant item each. A ranking drawn at random would score "
               f"recall@10 {10 / n:.4f} and MRR (top 100) "
               f"{sum(1 / r for r in range(1, 101)) / n:.4f}. Dense (HNSW) is the same "
               f"retriever as dense (flat) searched in our HNSW index (ef_search 96); where "
               f"they differ, the graph search missed a neighbour. Chosen on the "
               f"{valid[0]['queries']} valid-split queries: {choice}.\n\n" + ki_table)
    ppl = payload["perplexity"]
    first = next(iter(ppl.values()))

    def change(r, kind):
        value, (low, high) = r[f"{kind}_ppl"], r[f"{kind}_change_ci95"]
        return (f"{value:.2f} ({100 * (value / r['plain_ppl'] - 1):+.2f}%; "
                f"{100 * low:+.2f} to {100 * high:+.2f})")

    ppl_table = markdown_table(
        ["generator", "retriever", "τ_η (fitted on valid)", "plain RETGEN", "RAG-Token",
         "RAG-Sequence", "fit s", "test s"],
        [[r["generator"], r["retriever"], _tau(r["tau_eta"]), f"{r['plain_ppl']:.2f}",
          change(r, "rag_token"), change(r, "rag_sequence"), f"{r['fit_s']:.0f}",
          f"{r['eval_s']:.0f}"] for r in ppl.values()])
    ppl_text = (f"`python benchmarks/bench_rag.py`, {payload['machine_line']}. Generators: the "
                f"default RETGEN model trained on the full training split, and the same "
                f"configuration trained on its first {payload['small_train_tokens']:,} tokens "
                f"only; passages: all {payload['n_passages']:,} training paragraphs, "
                f"k = {K_PASSAGES} per query. Test perplexity over the same "
                f"{first['tokens']:,} tokens ({first['chunks']:,} chunks of 32 after the "
                f"first 64, each with the 64 tokens before it as query); in brackets the "
                f"change from plain RETGEN and its 95% interval from a paired bootstrap over "
                f"chunks.\n\n" + ppl_table)
    full = [r for r in ppl.values() if r["generator"] == first["generator"]]
    spread = markdown_table(
        ["retriever", "τ_η", "best score", "best − 5th", "top passage's p_η",
         "same at τ_η = 1"],
        [[r["retriever"], _tau(r["tau_eta"]), f"{r['score_best_median']:.3g}",
          f"{r['score_lead_median']:.3g}", f"{r['p_eta_top_median']:.3f}",
          f"{r['p_eta_top_median_tau1']:.3f}"] for r in full])
    ppl_text += ("\n\np_η on the test queries (generator: " + first["generator"] + "; medians "
                 "over the chunks):\n\n" + spread)
    replace_doc_section("bench_rag_known_item", ki_text, CHAPTER)
    replace_doc_section("bench_rag_perplexity", ppl_text, CHAPTER)
    replace_doc_section("bench_rag", "## RAG (retrieval and RAG perplexity)\n\n" + ki_text
                        + "\n\n" + ppl_text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    path = RESULTS / "rag.json"
    if args.render:
        render(json.loads(path.read_text()))
        return
    corpus = load_corpus("austen")
    small_train, max_tokens = SMALL_TRAIN_TOKENS, None
    if args.quick:
        corpus = corpus.with_train_prefix(SMALL_TRAIN_TOKENS)
        small_train, max_tokens = 20_000, 5_000
    start = time.perf_counter()
    model = RetgenLM().fit(corpus)
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    small = RetgenLM().fit(corpus.with_train_prefix(small_train))
    info = machine()
    candidates = retrievers(model, with_hnsw=False)
    candidates["random passages (control)"] = RandomPassages()
    payload = {"machine": info, "machine_line": machine_line(info),
               "n_passages": len(corpus.paragraphs("train")),
               "small_train_tokens": len(small.splits["train"]),
               "known_item": known_item(corpus, model),
               "perplexity": {
                   **perplexity(corpus, model, "full training split", candidates, max_tokens),
                   **perplexity(corpus, small, f"first {small_train // 1000}k tokens",
                                {"BM25": BM25Retriever(), "random passages (control)":
                                 RandomPassages()}, max_tokens)}}
    written = write_json("rag-quick" if args.quick else "rag", payload)
    if args.quick:
        print(f"wrote {written} (quick run: the docs are left as they are)")
    else:
        render(payload)


if __name__ == "__main__":
    main()
