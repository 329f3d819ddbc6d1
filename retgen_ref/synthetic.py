"""Synthetic vector sets for tests and benchmarks, reproducible from a seed."""

from __future__ import annotations

import numpy as np

from ._validation import check_int, check_positive_float
from .distances import normalise_rows


def gaussian_mixture(n: int, d: int, n_clusters: int = 100, spread: float = 0.5,
                     seed: int = 0) -> np.ndarray:
    """``(n, d)`` float32 points from an isotropic Gaussian mixture.

    Centres are drawn from ``N(0, I_d)``; each point is a uniformly chosen centre plus
    ``N(0, spread² I_d)`` noise. A mixture, unlike one Gaussian, has the cluster
    structure that IVF and HNSW exploit in real data.
    """
    n, d, n_clusters = check_int(n, "n"), check_int(d, "d"), check_int(n_clusters, "n_clusters")
    spread = check_positive_float(spread, "spread")
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32)
    labels = rng.integers(0, n_clusters, size=n)
    noise = rng.standard_normal((n, d), dtype=np.float32)
    noise *= np.float32(spread)
    noise += centres[labels]
    return noise


def clustered_unit_vectors(n: int, d: int, n_clusters: int = 100, spread: float = 0.5,
                           seed: int = 0) -> np.ndarray:
    """``(n, d)`` float32 unit vectors: a Gaussian mixture projected onto the sphere.

    Suited to ``metric="ip"`` (equal to cosine on unit vectors), like normalised
    sentence embeddings.
    """
    return normalise_rows(gaussian_mixture(n, d, n_clusters, spread, seed))
