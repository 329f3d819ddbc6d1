"""The ``retgen-ref`` command line."""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import re
import sys
import textwrap
import time
from pathlib import Path

from . import __version__

DEMO_TRAIN_TOKENS = 300_000
#: The smallest value of each integer option, checked by :func:`main` before any work
#: (the decoding options are checked by :func:`_decoding`, only where they apply).
MINIMUMS = {"keys": 1, "queries": 1, "train_tokens": 0, "k": 1, "max_tokens": 1,
            "width": 10}


def demo(args: argparse.Namespace) -> int:
    """The RETGEN language model on the bundled corpus, then attention as retrieval."""
    from .demo import attention_demo, lm_demo

    if args.part in ("lm", "all"):
        lm_demo(args.train_tokens, args.seed, _progress())
    if args.part == "all":
        print()
    if args.part in ("attention", "all"):
        attention_demo(args.keys, args.queries, args.seed)
    return 0


def _progress():
    """Stage messages with elapsed seconds on stderr, on a terminal only (DESIGN.md 9)."""
    if not sys.stderr.isatty():
        return None
    start = time.perf_counter()
    return lambda stage: print(f"[{time.perf_counter() - start:6.1f}s] {stage}", file=sys.stderr,
                               flush=True)


def _note(args: argparse.Namespace, message: str) -> None:
    print(f"retgen-ref {args.command}: note: {message}", file=sys.stderr)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _check_writable(folder: Path, what: str) -> None:
    """Refuse ``what`` (a flag and its path) unless the nearest existing one of ``folder``
    and its parents is a folder this process may write in."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{what}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what}: no permission to write in {existing}; choose a folder you "
                         "can write to")


def _check_out(path: Path, overwrite: bool) -> None:
    """Refuse, before training, a ``--out`` the model could not be saved in (a file, a
    folder not writable) or that holds files, unless ``--overwrite``."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file; give the name of a new or empty folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise ValueError(f"--out {path} is not empty; pass --overwrite to save the model there "
                         "(replacing a model saved in it), or give a new or empty folder")
    _check_writable(path, f"--out {path}")


def _check_prompt(args: argparse.Namespace, model, text: str, what: str) -> None:
    """Refuse an empty prompt or one with no known word; note the words read as <unk>."""
    from .lm.generate import encode_prompt, quoted

    _, unknown = encode_prompt(model, text, what)
    if unknown:
        _note(args, f"read as <unk> ({_plural(len(unknown), 'word')} of the {what} not in the "
                    f"vocabulary, which is fixed at training): {quoted(unknown)}")


def train(args: argparse.Namespace) -> int:
    """Train a RETGEN model on a corpus and save it (retgen.md §11.1)."""
    from .lm import RetgenLM, load_corpus

    _check_out(Path(args.out), args.overwrite)
    _check_index_params(args.index, args.index_param)
    model = RetgenLM(index=args.index, index_params=dict(args.index_param),
                     resolutions=args.resolutions, seed=args.seed, decay_rate=args.decay_rate,
                     rerank=args.rerank, policy=args.policy)
    corpus = load_corpus(args.corpus)
    model.fit(corpus, progress=_progress())
    model.save(args.out, make_parents=True)  # --out was checked to be creatable
    report = model.fit_report_
    print(f"corpus {corpus.name}: {len(corpus.train):,} training tokens, vocabulary "
          f"{len(corpus.vocab):,}")
    sizes = model.nbytes
    print(f"{model.n_patterns:,} patterns at resolutions {list(model.levels)}: tables "
          f"{sizes['patterns'] / 1e6:.1f} MB, {args.index} indexes {sizes['index'] / 1e6:.1f} MB")
    print(f"fitted on valid: k={report['k']}, tau={report['tau']}, KN-5 weight "
          f"{report['alpha']:.3f}")
    print(f"trained in {model.train_seconds_:.1f} s; saved to {args.out}")
    return 0


def _check_index_params(kind: str, settings: list[tuple[str, int]]) -> None:
    """Refuse, in terms of ``--index-param``, a setting ``--index kind`` does not take or a
    value out of its range, before the corpus is read."""
    from .lm.pattern_index import INDEX_PARAMS, check_index_params

    for key, value in settings:
        if key not in INDEX_PARAMS[kind]:
            takes = ", ".join(INDEX_PARAMS[kind]) or "no settings"
            raise ValueError(f"--index-param {key}={value} does not apply to --index {kind}, "
                             f"which takes {takes}")
        try:
            check_index_params(kind, {key: value})
        except ValueError as exc:
            raise ValueError(f"--index-param {key}={value}: {exc}") from None


def evaluate(args: argparse.Namespace) -> int:
    """Held-out perplexity of a saved model next to KN-5 and unigram baselines."""
    from .lm import RetgenLM

    model = RetgenLM.load(args.model)
    result = {**model.evaluate(), "n_patterns": model.n_patterns, "index": model.config.index,
              "bytes": model.nbytes, "train_s": model.train_seconds_,
              "corpus": model.corpus_name}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = [("RETGEN", "valid_ppl", "test_ppl"),
            ("RETGEN + KN-5 (interpolated)", "valid_ppl_interpolated", "test_ppl_interpolated"),
            ("Kneser-Ney 5-gram", "kn5_valid_ppl", "kn5_test_ppl"),
            ("unigram (add-one)", "unigram_valid_ppl", "unigram_test_ppl")]
    if "test_ppl_kernel" in result:
        rows.insert(1, ("RETGEN, kernel weights (no v2)", "valid_ppl_kernel", "test_ppl_kernel"))
    print(f"{'model':<30} {'valid ppl':>10} {'test ppl':>10}")
    for name, valid, test in rows:
        print(f"{name:<30} {result[valid]:>10.2f} {result[test]:>10.2f}")
    print(f"\n{result['n_patterns']:,} patterns, index {result['index']}; test split scored in "
          f"{result['eval_s']:.1f} s")
    return 0


def generate(args: argparse.Namespace) -> int:
    """Continue a prompt with a saved model, optionally with each token's retrieval trace."""
    from .lm import RetgenLM

    decoding = _decoding(args)
    model = RetgenLM.load(args.model)
    _check_prompt(args, model, args.prompt, "prompt")
    result = model.generate(args.prompt, args.max_tokens, trace=args.trace or args.json,
                            **decoding)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(result.text)
    if args.trace:
        print()
        for step in result.trace:
            print(f"{step.token!r:>16} p={step.prob:.3f}  " + "; ".join(
                f"r={p['resolution']} {p['text']!r} w={p['weight']:.2f} "
                f"P(tok|p)={p['next_token_prob']:.2f}" for p in step.patterns))
    return 0


#: The decoding options each strategy uses (:mod:`retgen_ref.lm.generate`); the others
#: are ignored, with a note when given.
DECODING_USES = {
    "greedy": ("repetition_penalty",),
    "sample": ("temperature", "top_k", "top_p", "repetition_penalty", "seed"),
    "adaptive": ("temperature", "low_temperature", "top_k", "top_p", "repetition_penalty",
                 "seed"),
    "beam": ("beam_width", "repetition_penalty"),
}
DECODING_OPTIONS = ("temperature", "low_temperature", "top_k", "top_p", "repetition_penalty",
                    "beam_width", "seed")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _decoding(args: argparse.Namespace) -> dict:
    """The Decoder settings of the decoding options (:func:`_add_decoding_options`),
    checked before any work and in terms of the flags. An option the strategy does not use
    is ignored (a note names it), whatever its value."""
    from dataclasses import fields

    from .lm.generate import Decoder

    defaults = {f.name: f.default for f in fields(Decoder)}
    uses = DECODING_USES[args.strategy]
    ignored = [_flag(name) for name in DECODING_OPTIONS
               if getattr(args, name) is not None and name not in uses]
    if ignored:
        _note(args, f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply "
                    f"to --strategy {args.strategy}; ignored")
    value = {name: defaults[name] if getattr(args, name) is None or name not in uses
             else getattr(args, name) for name in DECODING_OPTIONS}
    if not (math.isfinite(value["temperature"]) and value["temperature"] > 0):
        raise ValueError(f"--temperature must be a finite number > 0, got {value['temperature']:g}")
    if not 0 < value["low_temperature"] <= value["temperature"]:
        given = "" if args.low_temperature is not None else " (its default)"
        raise ValueError(f"--low-temperature must be in (0, --temperature] = "
                         f"(0, {value['temperature']:g}], got {value['low_temperature']:g}"
                         f"{given}")
    if not 0 < value["top_p"] <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {value['top_p']:g}")
    if not value["repetition_penalty"] >= 1:
        raise ValueError(f"--repetition-penalty must be >= 1, got {value['repetition_penalty']:g}")
    for name, minimum in (("top_k", 0), ("beam_width", 1)):
        if value[name] < minimum:
            raise ValueError(f"{_flag(name)} must be >= {minimum}, got {value[name]}")
    settings = {"strategy": args.strategy, **value}
    Decoder(**settings)  # the library's own checks, should they ever be stricter
    return settings


RETRIEVERS = ("bm25", "tfidf", "dense")


def rag(args: argparse.Namespace) -> int:
    """Retrieve training paragraphs for a query, show them with p_η, and continue the
    query by RAG-Token decoding with the model as generator (rag_math_notes_part5.md)."""
    from .lm import RetgenLM
    from .lm.corpus import paragraphs_of
    from .rag import BM25Retriever, DenseRetriever, RetgenRAG, TfidfRetriever
    from .rag.retgen_rag import QUERY_WINDOW

    if args.fit_tokens <= QUERY_WINDOW:
        raise ValueError(f"--fit-tokens must be more than the {QUERY_WINDOW}-token query "
                         "window")
    decoding = _decoding(args)
    say = _progress() or (lambda stage: None)
    model = RetgenLM.load(args.model)
    _check_prompt(args, model, args.query, "query")
    passages = paragraphs_of(model.splits["train"])
    if args.k > len(passages):
        _note(args, f"--k {args.k} is more than the {len(passages):,} training paragraphs; "
                    "retrieving all of them")
    say(f"{args.retriever} over {len(passages):,} paragraphs")
    retriever = {"bm25": BM25Retriever, "tfidf": TfidfRetriever,
                 "dense": lambda: DenseRetriever(model.word_vectors)}[args.retriever]()
    retriever.fit(passages, len(model.vocab))
    rag_model = RetgenRAG(model, retriever, passages, k=args.k)
    say("fitting tau_eta and the generator's mixture on valid")
    rag_model.fit("valid", max_tokens=min(args.fit_tokens, len(model.splits["valid"])))
    generation, ids, eta = rag_model.generate(args.query, args.max_tokens, **decoding)
    shown = [{"passage": int(i), "p_eta": float(w),
              "text": model.vocab.detokenize(passages[i])} for i, w in zip(ids, eta)]
    if args.json:
        tau = rag_model.tau_eta_
        print(json.dumps({"retriever": args.retriever,
                          "tau_eta": tau if tau < float("inf") else "inf",
                          "passages": shown, "continuation": generation.text}, indent=2))
        return 0
    tau = rag_model.tau_eta_
    print(f"{args.retriever}: {_plural(len(shown), 'passage')} of "
          f"{_plural(len(passages), 'training paragraph')}; p_η = "
          f"softmax(score / τ_η) over them, τ_η = {tau:.3g} and the generator's mixture "
          f"fitted on {rag_model.fit_report_['tokens']:,} valid tokens\n")
    for rank, row in enumerate(shown, 1):
        text = row["text"] if len(row["text"]) <= args.width else \
            row["text"][:args.width - 3] + "..."
        print(f"{rank}. p_η={row['p_eta']:.3f}  [paragraph {row['passage']}] {text}")
    print(f"\n{args.query} >> {generation.text}")
    return 0


def update(args: argparse.Namespace) -> int:
    """Add the documents of a corpus to a saved model in place (online learning, §9.1)."""
    from .lm import RetgenLM, read_documents

    texts = ["\n".join(doc.paragraphs) for doc in read_documents(args.corpus)]
    model = RetgenLM.load(args.model)
    summary = model.add_documents(texts, timestamp=args.timestamp)
    model.save(args.model)
    new = sum(summary["new_patterns"].values())
    print(f"added {_plural(summary['documents'], 'document')}, "
          f"{_plural(summary['tokens'], 'token')}: {_plural(new, 'new pattern')}, "
          f"{model.n_patterns:,} in all; {summary['seconds']:.1f} s")
    if summary["unknown_tokens"]:
        from .lm.generate import quoted
        _note(args, f"{_plural(summary['unknown_tokens'], 'token')} became <unk>: the "
                    "vocabulary is fixed at training, and these words are not in it: "
                    f"{quoted(summary['unknown_words'])} (retrain to learn them)")
    return 0


def _index_param(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=INTEGER, e.g. nprobe=32")
    return key.strip(), int(value)


def _resolutions(text: str) -> tuple:
    try:
        found = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "integers such as 1,2,3,4") from None
    if min(found) < 1 or len(set(found)) != len(found):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct context lengths >= 1, "
                                         "such as 1,2,3,4")
    return found


def _claimed_value(text: str) -> tuple:
    """``NAME=VALUE`` of ``verify --claim``; VALUE read as JSON (numbers, strings, null)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=VALUE, e.g. kl_factor=60")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def verify(args: argparse.Namespace) -> int:
    """Check the papers' claims by computation: holds, holds-under-conditions, false or
    not-checkable, with the evidence (retgen_ref/theory, docs/theorems.md)."""
    from .theory import CLAIMS, run_claim
    from .theory.report import write_page

    if args.list:
        for claim_id, found in CLAIMS.items():
            print(f"{claim_id:<42} {found.statement}")
        return 0
    ids = args.id or list(CLAIMS)
    unknown = [claim_id for claim_id in ids if claim_id not in CLAIMS]
    if unknown:
        raise ValueError(f"no claim {unknown}; `retgen-ref verify --list` shows the ids")
    claimed = dict(args.claim)
    if claimed and len(ids) != 1:
        raise ValueError("--claim changes a quantity of one claim: give exactly one --id")
    if claimed and args.markdown:
        raise ValueError("the errata page is written for the papers' claims: drop --claim "
                         "or --markdown")
    if args.markdown:
        if Path(args.markdown).is_dir():
            raise ValueError(f"--markdown {args.markdown} is a folder; give a file name")
        _check_writable(Path(args.markdown).parent, f"--markdown {args.markdown}")
    table = not args.json
    if table:
        print(f"{'claim':<42} {'verdict':<24} {'seconds':>7}  corrected")
    rows = []
    for claim_id in ids:
        row = run_claim(claim_id, seed=args.seed, fast=args.fast, claimed=claimed or None)
        rows.append(row)
        if table:
            corrected = ("" if row["verdict"] != "false" else
                         "verified" if row["corrected_verified"] else "NOT verified")
            print(f"{claim_id:<42} {row['verdict']:<24} {row['seconds']:>7.1f}  {corrected}",
                  flush=True)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif args.id:  # the claims asked for by name: what was found, not only the verdict
        for row in rows:
            print()
            print(_claim_details(row))
    if args.markdown:
        print(f"writing {args.markdown}: fast runs over every seed for the stability "
              "column, and the plots", file=sys.stderr)
        write_page(args.markdown, rows)
        print(f"wrote {args.markdown}: {_plural(len(rows), 'claim')}", file=sys.stderr)
    return 0


def _claim_details(row: dict, width: int = 92) -> str:
    """A checked claim as plain text: statement, reading, claimed quantities, conditions,
    counterexample and correction, then the evidence (scalars, then each sweep as a small
    table, numbers rounded; ``--json`` has them all)."""
    from .theory.report import MAX_TABLE_ROWS, _short

    def para(label: str, text: str) -> list[str]:
        return textwrap.wrap(f"{label}: {text}", width, initial_indent="  ",
                             subsequent_indent="    ")

    out = [f"{row['id']}: {row['verdict']}"]
    out += para("statement", row["statement"]) + para("reading tested", row["reading"])
    if row.get("claimed"):
        out += para("claimed quantities", ", ".join(f"{k} = {_short(v)}"
                                                    for k, v in row["claimed"].items()))
    if row.get("conditions"):
        out += para("conditions", row["conditions"])
    if row.get("counterexample"):
        out += para("counterexample", ", ".join(f"{k} = {_short(v)}" for k, v in
                                                row["counterexample"].items())
                    if isinstance(row["counterexample"], dict) else _short(row["counterexample"]))
    if row["verdict"] == "false":
        verified = "verified" if row["corrected_verified"] else "NOT verified"
        out += para(f"corrected ({verified})", row["corrected"] or "none offered")
    out.append("  evidence:")
    sweeps = []
    for key, value in row["evidence"].items():
        if key == "loglog":
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            sweeps.append((key, value))
        else:
            out += textwrap.wrap(f"{key} = {_short(value)}", width, initial_indent="    ",
                                 subsequent_indent="      ")
    for key, value in sweeps:
        columns = list(dict.fromkeys(c for v in value for c in v))
        cells = [columns] + [[_short(v.get(c, "")) for c in columns]
                             for v in value[:MAX_TABLE_ROWS]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
        more = f" (first {MAX_TABLE_ROWS} of {len(value)})" if len(value) > MAX_TABLE_ROWS else ""
        out.append(f"    {key}{more}:")
        out += ["      " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def _add_decoding_options(p: argparse.ArgumentParser) -> None:
    """The decoding options; each defaults to None (not given), so that :func:`_decoding`
    can note those the strategy ignores. Their defaults are the Decoder's."""
    p.add_argument("--strategy", default="greedy",
                   choices=("greedy", "sample", "adaptive", "beam"),
                   help="greedy (argmax), sample, adaptive (temperature follows the "
                        "retrieval confidence) or beam (default greedy); options a strategy "
                        "does not use are ignored")
    p.add_argument("--temperature", type=float,
                   help="sampling temperature, > 0 (sample, adaptive; default 1)")
    p.add_argument("--low-temperature", type=float,
                   help="temperature where the context is found in the store, in (0, "
                        "--temperature] (adaptive; default 0.3)")
    p.add_argument("--top-k", type=int,
                   help="sample from the k likeliest, 0: all (sample, adaptive; default 0)")
    p.add_argument("--top-p", type=float,
                   help="nucleus mass in (0, 1] (sample, adaptive; default 1: off)")
    p.add_argument("--repetition-penalty", type=float,
                   help="divide a recent token's probability by this per repeat, >= 1 "
                        "(every strategy; default 1)")
    p.add_argument("--beam-width", type=int,
                   help="hypotheses kept by beam search (beam; default 4)")
    p.add_argument("--seed", type=int, help="random seed (sample, adaptive; default 0)")


#: One line for each command in ``retgen-ref --help``; ``retgen-ref COMMAND --help`` shows
#: the command's docstring in full and the examples below.
SUMMARIES = {
    "demo": "a small RETGEN model vs KN-5 and unigram, then attention as retrieval",
    "train": "train a RETGEN model on a corpus and save it",
    "eval": "held-out perplexity of a saved model next to KN-5 and unigram",
    "generate": "continue a prompt with a saved model",
    "rag": "retrieve passages for a query and continue it (RAG-Token)",
    "update": "add documents to a saved model in place (online learning)",
    "verify": "check the papers' claims by computation and show the evidence",
}
EXAMPLES = {
    "demo": ["retgen-ref demo", "retgen-ref demo --part attention --keys 1024"],
    "train": ["retgen-ref train --corpus austen --out model",
              "retgen-ref train --out m3 --index ivfpq --index-param nprobe=32"],
    "eval": ["retgen-ref eval --model model", "retgen-ref eval --model model --json"],
    "generate": ['retgen-ref generate --model model --prompt "she could not"',
                 'retgen-ref generate --model model --prompt "she could not" '
                 "--strategy sample --top-p 0.9 --trace"],
    "rag": ['retgen-ref rag --model model --query "a letter from her sister"',
            'retgen-ref rag --model model --query "the ball" --retriever dense --k 3'],
    "update": ["retgen-ref update --model model --corpus new_texts/"],
    "verify": ["retgen-ref verify --fast", "retgen-ref verify --id retgen/thm4.3",
               "retgen-ref verify --list | head"],
}


def _add_command(sub, name: str, func) -> argparse.ArgumentParser:
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
    p = sub.add_parser(name, help=SUMMARIES[name], description=inspect.cleandoc(func.__doc__),
                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retgen-ref",
        description="RETGEN reference implementation: attention as retrieval, vector-search "
                    "kernels, the papers' claims checked by computation.")
    parser.add_argument("--version", action="version", version=f"retgen_ref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = _add_command(sub, "demo", demo)
    p.add_argument("--keys", type=int, default=4096, help="number of stored keys (default 4096)")
    p.add_argument("--queries", type=int, default=16, help="number of queries (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--part", choices=("all", "lm", "attention"), default="all",
                   help="which demo to run (default all)")
    p.add_argument("--train-tokens", type=int, default=DEMO_TRAIN_TOKENS,
                   help="train the demo model on this many training tokens, 0 for all "
                        f"(default {DEMO_TRAIN_TOKENS:,})")

    p = _add_command(sub, "train", train)
    p.add_argument("--corpus", default="austen",
                   help="'austen' (bundled) or a folder of UTF-8 .txt files (default austen)")
    p.add_argument("--out", required=True,
                   help="directory to save the model in: new or empty, checked before training")
    p.add_argument("--overwrite", action="store_true",
                   help="save into a non-empty --out, replacing a model saved there")
    p.add_argument("--index", default="hnsw", choices=("flat", "hnsw", "ivf", "ivfpq"),
                   help="vector index of the patterns (default hnsw)")
    p.add_argument("--index-param", type=_index_param, action="append", default=[],
                   metavar="KEY=N", help="an index setting, repeatable: nprobe=32, "
                   "refine_k=256 (ivfpq); nprobe=32 (ivf); M=16, ef_search=128 (hnsw)")
    p.add_argument("--resolutions", type=_resolutions, default=(1, 2, 3, 4),
                   help="context lengths, comma-separated (default 1,2,3,4)")
    p.add_argument("--decay-rate", type=float, default=0.0,
                   help="λ of the drift weights e^(-λ·age) for text added later (default 0)")
    p.add_argument("--rerank", action="store_true",
                   help="learn the energy-based reranker of RETGEN v2 (§5) on valid")
    p.add_argument("--policy", default="none", choices=("none", "direct", "reinforce"),
                   help="learn the retrieval policy of RETGEN v2 (§3) on valid, by direct "
                   "gradient or REINFORCE (default none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    p = _add_command(sub, "eval", evaluate)
    p.add_argument("--model", required=True, help="directory written by `retgen-ref train`")
    p.add_argument("--json", action="store_true", help="print the results as JSON")

    p = _add_command(sub, "generate", generate)
    p.add_argument("--model", required=True, help="directory written by `retgen-ref train`")
    p.add_argument("--prompt", required=True,
                   help="text to continue; words outside the vocabulary read as <unk> (a note "
                        "names them), a prompt of only such words is refused")
    p.add_argument("--max-tokens", type=int, default=40, help="tokens to generate (default 40)")
    _add_decoding_options(p)
    p.add_argument("--trace", action="store_true", help="show the patterns behind each token")
    p.add_argument("--json", action="store_true", help="print text, tokens and trace as JSON")

    p = _add_command(sub, "rag", rag)
    p.add_argument("--model", required=True, help="directory written by `retgen-ref train`")
    p.add_argument("--query", required=True, help="text to retrieve passages for and continue")
    p.add_argument("--retriever", default="bm25", choices=RETRIEVERS, help="default bm25")
    p.add_argument("--k", type=int, default=5,
                   help="passages retrieved (default 5); more than the model's training "
                        "paragraphs retrieves them all, with a note")
    p.add_argument("--fit-tokens", type=int, default=4000,
                   help="valid tokens to fit τ_η and the generator's mixture on (default 4000)")
    p.add_argument("--width", type=int, default=160,
                   help="characters of each passage shown (default 160)")
    p.add_argument("--max-tokens", type=int, default=40, help="tokens to generate (default 40)")
    _add_decoding_options(p)
    p.add_argument("--json", action="store_true", help="print passages and text as JSON")

    p = _add_command(sub, "update", update)
    p.add_argument("--model", required=True, help="directory written by `retgen-ref train`")
    p.add_argument("--corpus", required=True, help="a .txt file or a folder of them")
    p.add_argument("--timestamp", type=float, default=None,
                   help="time of the new text, for models with a decay rate (§9.2)")

    p = _add_command(sub, "verify", verify)
    p.add_argument("--id", action="append", metavar="ID",
                   help="check only this claim (repeatable), e.g. retgen/thm4.3")
    p.add_argument("--fast", action="store_true",
                   help="smaller experiments (the whole run in about a minute)")
    p.add_argument("--json", action="store_true", help="print every row as JSON")
    p.add_argument("--markdown", metavar="FILE",
                   help="write the errata page (docs/theorems.md) from this run")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--claim", type=_claimed_value, action="append", default=[],
                   metavar="NAME=VALUE", help="check another claim than the paper's: a "
                   "claimed quantity of the --id claim, repeatable (e.g. kl_factor=60)")
    p.add_argument("--list", action="store_true", help="list the claims and stop")
    for name, command in sub.choices.items():
        command.set_defaults(flags={action.dest: action.option_strings[-1]
                                    for action in command._actions if action.option_strings})
    return parser


def _in_flags(message: str, flags: dict[str, str]) -> str:
    """``message`` of a library error with the Python parameter names that are options of
    the command (``max_tokens``, ``decay_rate=…``) written as the flags (``--max-tokens``,
    ``--decay-rate …``). Only names with an underscore are replaced: a plain word such as
    ``k`` or ``temperature`` may be prose."""
    names = {**{dest: flag for dest, flag in flags.items() if "_" in dest},
             "index_params": "--index-param"}
    for name, flag in sorted(names.items(), key=lambda item: -len(item[0])):
        message = re.sub(rf"(?<![\w./-]){re.escape(name)}\b(=)?",
                         lambda m, flag=flag: flag + (" " if m[1] else ""), message)
    return message


def _stdout_closed() -> int:
    """The reader of stdout went away (``retgen-ref verify --list | head``): end quietly, as
    a Unix tool killed by SIGPIPE would (exit status 128 + 13), without a traceback and
    without Python's complaint when it flushes stdout at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (captured in tests)
        pass
    finally:
        os.close(devnull)
    return 141


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for name, minimum in MINIMUMS.items():
            if getattr(args, name, minimum) < minimum:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got "
                                 f"{getattr(args, name)}")
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        return _stdout_closed()
    except (ValueError, OSError) as exc:
        print(f"retgen-ref {args.command}: error: {_in_flags(str(exc), args.flags)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: saved files are written atomically, so intact
        print(f"retgen-ref {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
