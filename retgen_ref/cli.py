"""The ``retgen-ref`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import __version__

DEMO_TRAIN_TOKENS = 300_000
#: The smallest value of each integer option, checked by :func:`main` before any work.
MINIMUMS = {"keys": 1, "queries": 1, "train_tokens": 0, "k": 1, "max_tokens": 1,
            "width": 10, "beam_width": 1, "top_k": 0}


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
    model = RetgenLM(index=args.index, index_params=dict(args.index_param),
                     resolutions=args.resolutions, seed=args.seed, decay_rate=args.decay_rate,
                     rerank=args.rerank, policy=args.policy)
    corpus = load_corpus(args.corpus)
    model.fit(corpus, progress=_progress())
    model.save(args.out)
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


def _decoding(args: argparse.Namespace) -> dict:
    """The Decoder settings of the decoding options (:func:`_add_decoding_options`),
    checked before any work."""
    from .lm.generate import Decoder

    settings = {"strategy": args.strategy, "temperature": args.temperature,
                "top_k": args.top_k, "top_p": args.top_p,
                "repetition_penalty": args.repetition_penalty, "beam_width": args.beam_width,
                "seed": args.seed}
    Decoder(**settings)  # raises ValueError for a bad setting
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
    print(f"{args.retriever}: {len(shown)} of {len(passages):,} training paragraphs; p_η = "
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
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         "integers such as 1,2,3,4") from None


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
    if args.markdown:
        print(f"writing {args.markdown}: fast runs over every seed for the stability "
              "column, and the plots", file=sys.stderr)
        write_page(args.markdown, rows)
        print(f"wrote {args.markdown}: {len(rows)} claims", file=sys.stderr)
    return 0


def _add_decoding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", default="greedy",
                   choices=("greedy", "sample", "adaptive", "beam"), help="default greedy")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--top-k", type=int, default=0, help="sample from the k likeliest (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus mass (default 1: off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0,
                   help="divide a recent token's probability by this per repeat (default 1)")
    p.add_argument("--beam-width", type=int, default=4, help="hypotheses kept by beam search")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retgen-ref",
        description="RETGEN reference implementation: attention as retrieval, vector-search "
                    "kernels, the papers' claims checked by computation.")
    parser.add_argument("--version", action="version", version=f"retgen_ref {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("demo", help=demo.__doc__.splitlines()[0],
                       description=demo.__doc__)
    p.add_argument("--keys", type=int, default=4096, help="number of stored keys (default 4096)")
    p.add_argument("--queries", type=int, default=16, help="number of queries (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--part", choices=("all", "lm", "attention"), default="all",
                   help="which demo to run (default all)")
    p.add_argument("--train-tokens", type=int, default=DEMO_TRAIN_TOKENS,
                   help="train the demo model on this many training tokens, 0 for all "
                        f"(default {DEMO_TRAIN_TOKENS:,})")
    p.set_defaults(func=demo)

    p = sub.add_parser("train", help=train.__doc__, description=train.__doc__)
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
    p.set_defaults(func=train)

    p = sub.add_parser("eval", help=evaluate.__doc__, description=evaluate.__doc__)
    p.add_argument("--model", required=True, help="directory written by `retgen-ref train`")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=evaluate)

    p = sub.add_parser("generate", help=generate.__doc__, description=generate.__doc__)
    p.add_argument("--model", required=True, help="directory written by `retgen-ref train`")
    p.add_argument("--prompt", required=True,
                   help="text to continue; words outside the vocabulary read as <unk> (a note "
                        "names them), a prompt of only such words is refused")
    p.add_argument("--max-tokens", type=int, default=40, help="tokens to generate (default 40)")
    _add_decoding_options(p)
    p.add_argument("--trace", action="store_true", help="show the patterns behind each token")
    p.add_argument("--json", action="store_true", help="print text, tokens and trace as JSON")
    p.set_defaults(func=generate)

    p = sub.add_parser("rag", help=rag.__doc__.splitlines()[0], description=rag.__doc__)
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
    p.set_defaults(func=rag)

    p = sub.add_parser("update", help=update.__doc__, description=update.__doc__)
    p.add_argument("--model", required=True, help="directory written by `retgen-ref train`")
    p.add_argument("--corpus", required=True, help="a .txt file or a folder of them")
    p.add_argument("--timestamp", type=float, default=None,
                   help="time of the new text, for models with a decay rate (§9.2)")
    p.set_defaults(func=update)

    p = sub.add_parser("verify", help=verify.__doc__.splitlines()[0], description=verify.__doc__)
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
    p.set_defaults(func=verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for name, minimum in MINIMUMS.items():
            if getattr(args, name, minimum) < minimum:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got "
                                 f"{getattr(args, name)}")
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"retgen-ref {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: saved files are written atomically, so intact
        print(f"retgen-ref {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
