"""The ``retgen-ref`` command line."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from . import __version__


def demo(args: argparse.Namespace) -> int:
    """Attention as retrieval on a random head: the duality, then top-k error vs its bound."""
    from .attention import dropped_mass, retrieval_attention, softmax_attention, topk_error_bound

    rng = np.random.default_rng(args.seed)
    n, d, dv, nq = args.keys, 64, 64, args.queries
    # Keys in 32 clusters and queries near them: attention concentrates on a few keys,
    # as in a trained head, instead of spreading evenly as with isotropic noise.
    centres = 2.0 * rng.standard_normal((32, d))
    K = centres[rng.integers(0, 32, n)] + rng.standard_normal((n, d))
    Q = centres[rng.integers(0, 32, nq)] + rng.standard_normal((nq, d))
    V = rng.standard_normal((n, dv))

    exact = softmax_attention(Q, K, V)
    full = retrieval_attention(Q, K, V).output
    print(f"Attention as retrieval (retgen.md §2): one head, n={n} keys, d={d}, {nq} queries\n")
    print("Theorem 2.1, every key scored (tau = sqrt(d)):")
    print(f"  max |softmax_attention - retrieval_attention| = {np.abs(exact - full).max():.1e}\n")
    print("Top-k retrieval through a FlatIndex, softmax renormalised over the k keys;")
    print("eps = dropped softmax mass, bound = 2 eps max|v_i|  (worst query of the batch):\n")
    print(f"{'k':>6}  {'max eps':>9}  {'max |A - A_k|':>13}  {'max bound':>9}  {'max (error - bound)':>19}")
    for k in (1, 4, 16, 64, 256, 1024):
        if k > n:
            break
        result = retrieval_attention(Q, K, V, k=k)
        eps = dropped_mass(Q, K, result.ids)
        err = np.linalg.norm(exact - result.output, axis=1)
        bound = topk_error_bound(eps, V)
        excess = np.max(err - bound)
        print(f"{k:>6}  {eps.max():>9.2e}  {err.max():>13.2e}  {bound.max():>9.2e}  {excess:>19.1e}")
    print("\nerror - bound <= 0 for every query, up to float64 rounding (~1e-15) once eps is")
    print("below it. `retgen-ref` checks this and more in `make test`.")
    return 0


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
    p.set_defaults(func=demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("keys", "queries"):
        if getattr(args, name, 1) < 1:
            parser.error(f"--{name} must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
