"""How many OPQ alternations an ``OPQm`` index string should mean: ours at 25 and 50 next
to FAISS's ``index_factory`` (whose ``OPQMatrix.niter`` is 50), on the same data.

20,000 clustered unit vectors in 96 dimensions, inner product, ``IVF64,PQ12x8`` with and
without ``OPQ12`` in front, every list probed; recall@10 against exact search and the
mean squared reconstruction error of the first 2,000 vectors. The figures behind
``FAISS_OPQ_ITERATIONS`` in ``retgen_ref/index/factory.py``.

    python benchmarks/opq_iterations.py        # about a minute on 2 cores
"""

from __future__ import annotations

import faiss
import numpy as np

from retgen_ref import FlatIndex, index_factory
from retgen_ref.synthetic import clustered_unit_vectors

D, K, NPROBE = 96, 10, 64


def main() -> None:
    x = clustered_unit_vectors(20_000, D, seed=0)
    xq = clustered_unit_vectors(300, D, seed=1)
    exact = FlatIndex(D, "ip")
    exact.add(x)
    truth = exact.search(xq, K)[1]

    def report(name, index, reconstruct):
        I = index.search(xq, K)[1]
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(I, truth)])
        mse = ((reconstruct(0, 2000) - x[:2000]) ** 2).sum(1).mean()
        print(f"{name:34s} recall@10 {recall:.3f}   reconstruction MSE {mse:.5f}", flush=True)

    for string in ("IVF64,PQ12x8", "OPQ12,IVF64,PQ12x8"):
        for n_iter in ((25, 50) if string.startswith("OPQ") else (None,)):
            ours = index_factory(D, string, "ip")
            if n_iter:
                ours.transform.n_iter = n_iter
            ours.train(x)
            ours.add(x)
            ours.nprobe = NPROBE
            label = f"ours {string}" + (f" ({n_iter} it.)" if n_iter else "")
            report(label, ours, ours.reconstruct_n)
        theirs = faiss.index_factory(D, string, faiss.METRIC_INNER_PRODUCT)
        theirs.train(x)
        theirs.add(x)
        faiss.extract_index_ivf(theirs).nprobe = NPROBE
        report(f"faiss {string}", theirs, theirs.reconstruct_n)


if __name__ == "__main__":
    main()
