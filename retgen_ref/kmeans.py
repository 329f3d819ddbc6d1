"""k-means by Lloyd's algorithm, the coarse quantizer of IVF and the codebooks of PQ.

``retgen_v2.md`` §2 and §4 build the compressed pattern store on k-means: IVF partitions the
vectors by their nearest centre and product quantization runs one k-means per subspace.

Lloyd's algorithm minimises the objective (inertia)

    J(C, a) = Σ_i ‖x_i − c_{a(i)}‖²

by alternating two steps, each of which can only lower ``J``:

* **assignment**: ``a(i) = argmin_j ‖x_i − c_j‖²``, computed as
  ``‖x_i‖² − 2 x_i·c_j + ‖c_j‖²`` on tiles with BLAS (the exact search of
  :mod:`retgen_ref.distances`);
* **update**: ``c_j = mean{x_i : a(i) = j}``, the minimiser of a cluster's squared
  distances.

An empty cluster is re-seeded by splitting a large one (FAISS does the same, with a small
random perturbation). Here the split cannot raise ``J`` either: the points of the chosen
cluster are divided by a random hyperplane through its centre, and each half gets its own
mean, which lowers each half's squared distances. So :attr:`KMeans.objective_history_` is
non-increasing up to float32 rounding, a property the tests check.
"""

from __future__ import annotations

import warnings

import numpy as np
from numba import njit, prange
from tqdm import tqdm

from ._validation import as_array, check_int
from .distances import fast_topk, normalise_rows, squared_norms

INITS = ("k-means++", "random")


@njit(cache=True)
def cluster_sums(x, assign, n_clusters):
    """Per-cluster sums of the rows of ``x`` (float64) and member counts.

    Serial on purpose: a parallel reduction would make the sums depend on the thread count.
    """
    n, d = x.shape
    sums = np.zeros((n_clusters, d))
    counts = np.zeros(n_clusters, dtype=np.int64)
    for i in range(n):
        c = assign[i]
        counts[c] += 1
        for t in range(d):
            sums[c, t] += x[i, t]
    return sums, counts


_SEEDING_CHUNK = 1024


@njit(fastmath=True, cache=True)
def _lower_chunk(xt, centre, min_sq_dist, chunk_sums, scratch, c):
    """Chunk ``c`` of :func:`lower_min_sq_dist`: lower its distances and sum them serially."""
    d, n = xt.shape
    i0 = c * _SEEDING_CHUNK
    i1 = min(i0 + _SEEDING_CHUNK, n)
    dist = scratch[i0:i1]
    dist[:] = 0.0
    for t in range(d):
        row = xt[t, i0:i1]
        ct = centre[t]
        for i in range(i1 - i0):
            diff = row[i] - ct
            dist[i] += diff * diff
    current = min_sq_dist[i0:i1]
    total = 0.0
    for i in range(i1 - i0):
        if dist[i] < current[i]:
            current[i] = dist[i]
        total += current[i]
    chunk_sums[c] = total


@njit(parallel=True, cache=True)
def lower_min_sq_dist(xt, centre, min_sq_dist, chunk_sums, scratch):
    """``min_sq_dist[i] = min(min_sq_dist[i], ‖x_i − centre‖²)``, and per-chunk sums of it.

    ``xt`` is the data transposed, ``(d, n)``, so the inner loop runs over points and
    vectorises even for the few dimensions of a PQ subspace. Parallel over fixed chunks of
    points (each summed serially), so the sums, and hence the seeds drawn from them, do not
    depend on the thread count. ``scratch`` is ``(n,)`` float32 work space.
    """
    for c in prange(chunk_sums.shape[0]):
        _lower_chunk(xt, centre, min_sq_dist, chunk_sums, scratch, c)


@njit(cache=True)
def lower_min_sq_dist_serial(xt, centre, min_sq_dist, chunk_sums, scratch):
    """:func:`lower_min_sq_dist` on one thread: a step is short, and for small inputs
    waking a second thread costs more than it saves. Its own function, so that Numba's
    disk cache (keyed by function, not by build options) keeps the two builds apart."""
    for c in range(chunk_sums.shape[0]):
        _lower_chunk(xt, centre, min_sq_dist, chunk_sums, scratch, c)


_PARALLEL_SEEDING_SIZE = 1 << 21  # n · d above which a step runs in parallel


@njit(cache=True)
def _sample_by_weight(weights, chunk_sums, u):
    """Index ``i`` with probability ``weights[i] / Σ weights`` from a uniform ``u`` in [0, 1).

    Finds the chunk from ``chunk_sums``, then the point inside it: ``O(n/chunk + chunk)``.
    """
    target = u * chunk_sums.sum()
    c = 0
    while c < chunk_sums.shape[0] - 1 and target >= chunk_sums[c]:
        target -= chunk_sums[c]
        c += 1
    end = min((c + 1) * _SEEDING_CHUNK, weights.shape[0])
    acc = 0.0
    for i in range(c * _SEEDING_CHUNK, end):
        acc += weights[i]
        if acc > target:
            return i
    return end - 1


def kmeans_plus_plus(x: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_clusters`` seeds by k-means++ (Arthur & Vassilvitskii 2007).

    The first seed is uniform; each next one is drawn with probability proportional to
    ``D(x)²``, the squared distance to the nearest seed so far. Expected objective of the
    seeding alone: ``O(log k)`` times the optimum. Cost ``O(n · k · d)``.
    """
    n = x.shape[0]
    uniforms = rng.random(n_clusters)
    seeds = np.empty(n_clusters, dtype=np.int64)
    seeds[0] = min(int(uniforms[0] * n), n - 1)
    min_sq_dist = np.full(n, np.finfo(np.float32).max, dtype=np.float32)
    chunk_sums = np.zeros(-(-n // _SEEDING_CHUNK))
    xt, scratch = np.ascontiguousarray(x.T), np.empty(n, dtype=np.float32)
    step = (lower_min_sq_dist if x.size > _PARALLEL_SEEDING_SIZE
            else lower_min_sq_dist_serial)
    for j in range(1, n_clusters):
        step(xt, x[seeds[j - 1]], min_sq_dist, chunk_sums, scratch)
        seeds[j] = _sample_by_weight(min_sq_dist, chunk_sums, uniforms[j])
    return seeds


def _unit_rows(rows: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; a zero row (its points sum to 0) takes ``fallback``'s row.

    For a cluster whose points sum to zero every unit centre has the same objective, so
    keeping the previous one never increases it.
    """
    zero = ~np.any(rows, axis=1)
    rows = normalise_rows(rows)
    rows[zero] = fallback[zero]
    return rows


class KMeans:
    """k-means clustering with Lloyd iterations in Numba, FAISS's defaults.

    Parameters
    ----------
    n_clusters : int
        ``k``.
    n_iter : int
        Lloyd iterations (FAISS ``niter=25``).
    seed : int
        Seed of every random choice (initialisation, subsampling, splits).
    init : {"k-means++", "random"}
        k-means++ seeding, or ``k`` distinct training points drawn uniformly (FAISS).
    max_points_per_centroid : int
        Training sets larger than ``max_points_per_centroid · n_clusters`` are subsampled
        to that size, with a warning (FAISS: 256).
    spherical : bool
        Keep centres at unit norm (after each update), for inner-product data. The
        assignment is then by largest inner product, which for unit centres is also the
        nearest centre in L2, so the objective stays ``Σ‖x − c‖²``.

    Attributes
    ----------
    cluster_centers_ : ndarray, shape (n_clusters, d), float32
    inertia_ : float
        ``Σ_i min_j ‖x_i − c_j‖²`` over the training points used, with the final centres.
    objective_history_ : ndarray, shape (n_iter,)
        The objective after each iteration's update (the last entry is ``inertia_``).
    n_splits_ : int
        Empty clusters re-seeded by splitting, over all iterations.
    """

    def __init__(self, n_clusters: int, *, n_iter: int = 25, seed: int = 0,
                 init: str = "k-means++", max_points_per_centroid: int = 256,
                 spherical: bool = False):
        self.n_clusters = check_int(n_clusters, "n_clusters")
        self.n_iter = check_int(n_iter, "n_iter", minimum=0)
        self.seed = check_int(seed, "seed", minimum=0)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; use one of {', '.join(map(repr, INITS))}")
        self.init = init
        self.max_points_per_centroid = check_int(max_points_per_centroid,
                                                 "max_points_per_centroid")
        self.spherical = bool(spherical)

    # -- fitting ------------------------------------------------------------------------
    def fit(self, x) -> "KMeans":
        """Cluster the rows of ``x`` (shape ``(n, d)``, ``n ≥ n_clusters``); return self."""
        x = as_array(x, "x", ndim=2, dtype=np.float32)
        n, k = x.shape[0], self.n_clusters
        if n < k:
            raise ValueError(f"cannot find {k} clusters in {n} points; "
                             f"pass at least n_clusters={k} rows or lower n_clusters")
        rng = np.random.default_rng(self.seed)
        limit = self.max_points_per_centroid * k
        if n > limit:
            warnings.warn(f"KMeans: subsampling {n} training points to {limit} "
                          f"(max_points_per_centroid={self.max_points_per_centroid} × "
                          f"n_clusters={k})", stacklevel=2)
            x = x[np.sort(rng.choice(n, size=limit, replace=False))]
        centres = self._initial_centres(x, rng)
        assign, dist = self._assign(x, centres)
        history, self.n_splits_ = [], 0
        # A bar on a terminal only (disable=None), so quiet in tests and when piped.
        for _ in tqdm(range(self.n_iter), desc=f"k-means k={self.n_clusters}", disable=None,
                      leave=False):
            centres, assign = self._update(x, assign, centres, rng)
            assign, dist = self._assign(x, centres)
            history.append(float(dist.sum(dtype=np.float64)))
        self.cluster_centers_ = centres
        self.objective_history_ = np.array(history)
        self.inertia_ = float(dist.sum(dtype=np.float64))
        return self

    def _initial_centres(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.init == "random":
            seeds = rng.choice(x.shape[0], size=self.n_clusters, replace=False)
        else:
            seeds = kmeans_plus_plus(x, self.n_clusters, rng)
        centres = x[seeds].copy()
        if self.spherical:  # a zero seed has no direction: give it the first axis
            fallback = np.zeros_like(centres)
            fallback[:, 0] = 1.0
            centres = _unit_rows(centres, fallback)
        return centres

    def _assign(self, x: np.ndarray, centres: np.ndarray):
        """Nearest centre of every row and its squared distance (float32)."""
        if self.spherical:
            ip, labels = fast_topk(x, centres, squared_norms(centres), 1, "ip")
            dist = squared_norms(x)[:, None] + squared_norms(centres)[labels] - 2.0 * ip
            return labels[:, 0], np.maximum(dist[:, 0], 0.0)
        dist, labels = fast_topk(x, centres, squared_norms(centres), 1, "l2")
        return labels[:, 0], dist[:, 0]

    def _update(self, x, assign, centres, rng):
        """New centres as cluster means; empty clusters re-seeded by splitting."""
        sums, counts = cluster_sums(x, assign, self.n_clusters)
        assign = assign.copy()
        for empty in np.flatnonzero(counts == 0):
            if self._split_into(empty, x, assign, sums, counts, rng):
                self.n_splits_ += 1
        filled = counts > 0
        new = centres.astype(np.float64)
        new[filled] = sums[filled] / counts[filled, None]
        new = new.astype(np.float32)
        return (_unit_rows(new, centres) if self.spherical else new), assign

    @staticmethod
    def _split_into(empty, x, assign, sums, counts, rng) -> bool:
        """Move half of a large cluster into cluster ``empty`` (in place); False if none can.

        The donor is drawn with probability proportional to ``size − 1``; its members are
        divided by the hyperplane through their mean orthogonal to a random direction.
        """
        for _ in range(10):  # a donor whose members all coincide cannot be split
            weights = np.maximum(counts - 1, 0).astype(np.float64)
            if weights.sum() == 0:
                return False
            donor = int(rng.choice(len(counts), p=weights / weights.sum()))
            members = np.flatnonzero(assign == donor)
            centre = sums[donor] / counts[donor]
            side = (x[members] - centre) @ rng.standard_normal(x.shape[1]) > 0
            if 0 < side.sum() < len(members):
                moved = members[side]
                assign[moved] = empty
                moved_sum = x[moved].sum(axis=0, dtype=np.float64)
                sums[empty], counts[empty] = moved_sum, len(moved)
                sums[donor] -= moved_sum
                counts[donor] -= len(moved)
                return True
        return False

    # -- using the centres -------------------------------------------------------------
    def _check_fitted_input(self, x) -> np.ndarray:
        if not hasattr(self, "cluster_centers_"):
            raise ValueError("this KMeans is not fitted yet; call fit(x) first")
        return as_array(x, "x", ndim=2, dtype=np.float32, d=self.cluster_centers_.shape[1],
                        d_name="d (the fitted data's dimension)")

    def predict(self, x) -> np.ndarray:
        """Index of the nearest centre of every row of ``x``: ``(n,)`` int64."""
        return self._assign(self._check_fitted_input(x), self.cluster_centers_)[0]

    def transform(self, x) -> np.ndarray:
        """Squared L2 distance of every row of ``x`` to every centre: ``(n, k)`` float32."""
        x = self._check_fitted_input(x)
        c = self.cluster_centers_
        dist = squared_norms(x)[:, None] + squared_norms(c)[None, :] - 2.0 * (x @ c.T)
        return np.maximum(dist, 0.0)
