"""OPQ vs plain PQ on correlated Gaussian data: the figure ``docs/opq.png`` of chapter 2.

Data: ``x = g · diag(1/i)^{1/2} · Q`` with ``g`` standard Gaussian and ``Q`` a random
rotation: variance decaying as ``1/i`` along directions that mix every coordinate, so
correlated across PQ's subspaces. Both panels use ``nbits = 8``.

* left: the OPQ objective ``(1/n) Σ ‖xR − C(xR)‖²`` per alternation, from a random start
  (the default) and from the identity, against plain PQ's error on the same rows
  (d = 64, m = 8); dotted, the identity start on the same rows before their rotation
  (variance sorted along the axes), where it stalls;
* right: the held-out reconstruction error of PQ and OPQ for m = 2, 4, 8, 16 (d = 64), and
  FAISS's ``OPQMatrix`` + ``ProductQuantizer`` when faiss is installed.

    python benchmarks/plot_opq.py                 # about 70 s on 2 cores
    python benchmarks/plot_opq.py --quick         # smaller data, fewer iterations
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from retgen_ref.opq import OPQ, random_rotation
from retgen_ref.pq import ProductQuantizer

ROOT = Path(__file__).resolve().parent.parent


def correlated(n: int, d: int, seed: int, rotate: bool = True) -> np.ndarray:
    """Variance ``1/i`` along the ``i``-th principal direction; ``rotate=False``: along the
    ``i``-th axis (the same rows before the rotation)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d)) / np.sqrt(np.arange(1, d + 1))
    return (z @ random_rotation(d, rng) if rotate else z).astype(np.float32)


def faiss_error(train, test, m: int, n_iter: int) -> float | None:
    try:
        import faiss
    except ImportError:
        return None
    matrix = faiss.OPQMatrix(train.shape[1], m)
    matrix.niter = n_iter
    matrix.train(train)
    pq = faiss.ProductQuantizer(train.shape[1], m, 8)
    pq.train(matrix.apply(train))
    z = matrix.apply(test)
    return float(np.mean(np.sum((z - pq.decode(pq.compute_codes(z))) ** 2, axis=1,
                                dtype=np.float64)))


def run(n_train: int, n_iter: int, d: int = 64, seed: int = 0) -> dict:
    x = correlated(n_train + 10_000, d, seed)
    train, test = x[:n_train], x[n_train:]
    aligned = correlated(n_train, d, seed, rotate=False)
    curves = {f"OPQ, {init} start": OPQ(d, 8, n_iter=n_iter, seed=seed, init=init)
              .fit(train).objective_history_ for init in ("random", "identity")}
    curves["OPQ, identity start, axis-aligned data"] = OPQ(
        d, 8, n_iter=n_iter, seed=seed, init="identity").fit(aligned).objective_history_
    plain = {"plain PQ": ProductQuantizer(d, 8, seed=seed).fit(train)
             .reconstruction_error(train),
             "plain PQ, axis-aligned data": ProductQuantizer(d, 8, seed=seed).fit(aligned)
             .reconstruction_error(aligned)}
    for name, history in curves.items():
        print(f"{name}: objective {history[0]:.4f} -> {history[-1]:.4f}")
    by_m = []
    for m in (2, 4, 8, 16):
        pq = ProductQuantizer(d, m, seed=seed).fit(train)
        opq = OPQ(d, m, n_iter=n_iter, seed=seed).fit(train)
        row = {"m": m, "pq": pq.reconstruction_error(test),
               "opq": opq.reconstruction_error(test),
               "faiss_opq": faiss_error(train, test, m, n_iter)}
        by_m.append(row)
        faiss_text = "-" if row["faiss_opq"] is None else f"{row['faiss_opq']:.4f}"
        print(f"m={m:2d}: PQ {row['pq']:.4f}  OPQ {row['opq']:.4f} "
              f"({row['opq'] / row['pq']:.2f}x)  FAISS OPQ {faiss_text}")
    return {"d": d, "curves": curves, "plain": plain, "by_m": by_m, "n_train": n_train}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, history in result["curves"].items():
        left.plot(np.arange(len(history)), history, ":" if "aligned" in name else "-",
                  marker="o", markersize=3, label=name)
    for (name, error), style in zip(result["plain"].items(), ("--", "-.")):
        left.axhline(error, color="grey", linestyle=style, label=name)
    left.set_xlabel("alternation (0 = PQ on the starting rotation)")
    left.set_ylabel("mean ‖xR − C(xR)‖² (training rows)")
    left.set_title(f"objective, d={result['d']}, m=8, nbits=8, n={result['n_train']:,}")
    left.grid(alpha=0.3)
    low = min(min(h) for h in result["curves"].values())
    high = max(max(max(h) for h in result["curves"].values()), *result["plain"].values())
    left.set_ylim(low - 0.45 * (high - low), high + 0.03 * (high - low))  # room for the legend
    left.legend(loc="lower left", fontsize=8)
    ms = [r["m"] for r in result["by_m"]]
    right.plot(ms, [r["pq"] for r in result["by_m"]], marker="o", label="PQ")
    right.plot(ms, [r["opq"] for r in result["by_m"]], marker="o", label="OPQ (retgen_ref)")
    if all(r["faiss_opq"] is not None for r in result["by_m"]):
        right.plot(ms, [r["faiss_opq"] for r in result["by_m"]], "--", marker="x",
                   label="OPQ (FAISS OPQMatrix)")
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xticks(ms, [str(m) for m in ms])
    right.set_xlabel("m (bytes per code)")
    right.set_ylabel("mean ‖x − x̂‖² (held-out rows)")
    right.set_title(f"held-out error vs m, d={result['d']}, nbits=8")
    right.grid(alpha=0.3, which="both")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 10 alternations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "opq.png")
    args = parser.parse_args()
    n_train, n_iter = (10_000, 10) if args.quick else (30_000, 25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PQ training subsamples to 256 · ksub, as FAISS
        result = run(n_train, n_iter, seed=args.seed)
    plot(result, args.out)


if __name__ == "__main__":
    main()
