"""Generation with RETGEN on the bundled corpus: speed, diversity, repetition, copying.

The default model (hnsw index) is trained on the full Austen training split, then each
decoding strategy continues the same prompts: the first four tokens of test-split
paragraphs (text the model never stored). For each strategy: tokens per second (decoding
only, one process, the machine's threads), distinct-1 and distinct-2 over all generated
tokens, the 4-gram repetition rate within each continuation, and the mean and maximum
length of the span copied verbatim from the training split starting at each generated
token (suffix array). Target (issue 6): greedy ≥ 100 tokens/s on 2 cores.

Writes ``benchmarks/results/generation.json`` and tables in ``docs/benchmarks.md`` and
``docs/05-generation-and-updates.md``.

    python benchmarks/bench_generation.py            # about 6 minutes on 2 cores
    python benchmarks/bench_generation.py --render   # rewrite the docs from the JSON
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from _harness import (ROOT, RESULTS, machine, machine_line, markdown_table, replace_doc_section,
                      write_json)
from retgen_ref.lm import RetgenLM, load_corpus
from retgen_ref.lm.text_metrics import copied_spans, distinct_n, repetition_rate, suffix_array

CHAPTER = ROOT / "docs" / "05-generation-and-updates.md"
PROMPT_TOKENS = 4
STRATEGIES = {  # label: decoding settings
    "greedy": {"strategy": "greedy"},
    "greedy, repetition penalty 1.5": {"strategy": "greedy", "repetition_penalty": 1.5},
    "sample, T = 1": {"strategy": "sample"},
    "sample, top-k 40": {"strategy": "sample", "top_k": 40},
    "sample, top-p 0.9": {"strategy": "sample", "top_p": 0.9},
    "adaptive T (0.3 to 1)": {"strategy": "adaptive"},
    "beam, width 4": {"strategy": "beam", "beam_width": 4},
}


def prompts(corpus, n: int) -> list[np.ndarray]:
    paragraphs = [p for p in corpus.paragraphs("test") if len(p) > 2 * PROMPT_TOKENS]
    step = max(1, len(paragraphs) // n)
    return [p[:PROMPT_TOKENS] for p in paragraphs[::step][:n]]


def measure(model, corpus, sa, settings: dict, n_prompts: int, length: int) -> dict:
    outputs, seconds = [], 0.0
    for seed, prompt in enumerate(prompts(corpus, n_prompts)):
        out = model.generate(prompt, length, seed=seed, **settings)
        outputs.append(out.ids)
        seconds += out.seconds
    tokens = np.concatenate(outputs)
    spans = np.concatenate([copied_spans(ids, corpus.train, sa) for ids in outputs])
    return {"settings": settings, "tokens": int(len(tokens)),
            "tokens_per_s": len(tokens) / seconds,
            "distinct_1": distinct_n(tokens, 1), "distinct_2": distinct_n(tokens, 2),
            "repetition_4": float(np.mean([repetition_rate(ids, 4) for ids in outputs])),
            "copied_mean": float(spans.mean()), "copied_max": int(spans.max()),
            "sample": model.vocab.detokenize(np.concatenate([prompts(corpus, 1)[0],
                                                             outputs[0]]))}


def render(payload: dict) -> None:
    rows = payload["strategies"]
    table = markdown_table(
        ["strategy", "tokens/s", "distinct-1", "distinct-2", "4-gram repetition",
         "copied span mean", "copied span max"],
        [[label, f"{r['tokens_per_s']:.0f}", f"{r['distinct_1']:.3f}",
          f"{r['distinct_2']:.3f}", f"{r['repetition_4']:.3f}", f"{r['copied_mean']:.1f}",
          r["copied_max"]] for label, r in rows.items()])
    reference = payload["reference"]
    text = (f"`python benchmarks/bench_generation.py`, {payload['machine_line']}; default model "
            f"(index {payload['index']}) trained on the full training split; "
            f"{payload['n_prompts']} prompts of {PROMPT_TOKENS} test-split tokens, "
            f"{payload['length']} generated tokens each. Target: greedy ≥ 100 tokens/s. "
            f"For scale, the same statistics of the test split itself (as {payload['length']}-"
            f"token pieces): distinct-1 {reference['distinct_1']:.3f}, distinct-2 "
            f"{reference['distinct_2']:.3f}, 4-gram repetition {reference['repetition_4']:.3f}, "
            f"copied span mean {reference['copied_mean']:.1f}, max "
            f"{reference['copied_max']}.\n\n" + table)
    samples = "\n".join(  # markdown: <eos> as ¶, and <unk> escaped so it is not a tag
        f"- **{label}**: " + r["sample"].replace("\n", " ¶ ").replace("<", "&lt;")
        for label, r in rows.items())
    replace_doc_section("bench_generation", text, CHAPTER)
    replace_doc_section("bench_generation_samples", samples, CHAPTER)
    replace_doc_section("bench_generation", "## Generation (RETGEN LM)\n\n" + text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args()
    path = RESULTS / "generation.json"
    if args.render:
        render(json.loads(path.read_text()))
        return
    corpus = load_corpus("austen")
    start = time.perf_counter()
    model = RetgenLM().fit(corpus)
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    sa = suffix_array(corpus.train)
    model.generate("she", 2)  # warm-up: compile the single-query kernels
    pieces = [corpus.test[i:i + args.length]
              for i in range(0, args.prompts * args.length, args.length)]
    ref_spans = np.concatenate([copied_spans(p, corpus.train, sa) for p in pieces])
    info = machine()
    payload = {"machine": info, "machine_line": machine_line(info), "index": model.config.index,
               "n_prompts": args.prompts, "length": args.length,
               "reference": {"distinct_1": distinct_n(np.concatenate(pieces), 1),
                             "distinct_2": distinct_n(np.concatenate(pieces), 2),
                             "repetition_4": float(np.mean([repetition_rate(p, 4)
                                                            for p in pieces])),
                             "copied_mean": float(ref_spans.mean()),
                             "copied_max": int(ref_spans.max())},
               "strategies": {}}
    for label, settings in STRATEGIES.items():
        payload["strategies"][label] = measure(model, corpus, sa, settings, args.prompts,
                                               args.length)
        print(label, json.dumps({k: v for k, v in payload["strategies"][label].items()
                                 if k != "sample"}), flush=True)
    write_json("generation", payload)
    render(payload)


if __name__ == "__main__":
    main()
