"""Indexes over 8-bit scalar-quantized codes: SQ-Flat and IVF-SQ (FAISS ``SQ8``).

Every stored vector is kept as its :class:`~retgen_ref.sq.ScalarQuantizer` code, ``d``
bytes (a quarter of float32). A query is scored against the decoded vector
``x̂_t = lut[t, c_t]`` (:func:`~retgen_ref.sq.decode_table`) without materialising it: the
kernels read the codes directly and accumulate, in float64,

    l2:          Σ_t (q_t − x̂_t)²          summed directly, so data far from the origin
                                            loses nothing to ‖x‖² − 2q·x cancellation
    ip, cosine:  − Σ_t q_t · x̂_t            (cosine: q and the encoded rows unit-normalised)

keeping the k smallest values in a heap of :mod:`retgen_ref.heap`. The result is the
float64 brute force over ``decode(codes)`` (ties by id), rounded to float32 at the end.

IVF-SQ (FAISS ``IndexIVFScalarQuantizer``) stores, by default, the code of the residual
``r = x − y_l`` to the list's centroid ``y_l`` (the quantizer is trained on residuals, so
its ranges are narrower and its bins finer). A probed list is scored as

    l2:  Σ_t ((q_t − y_l,t) − r̂_t)²  = ‖q − (y_l + r̂)‖²
    ip:  − (q·y_l + Σ_t q_t · r̂_t)   = − q·(y_l + r̂)

with ``q − y_l`` and ``q·y_l`` formed once per probed list. Cost per query:
``nlist · d`` for the coarse search plus ``d`` per scanned code (``ivf.py``'s cost model).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ..heap import EMPTY, heap_replace_top, heap_sort, new_heap
from ..sq import ScalarQuantizer
from .base import Index, register_index
from .growable import GrowableRows
from .ivf import _IVFIndex
from ..distances import write_result_row
from .ivf_kernels import coarse_one
from .rowids import PositionalIds


# -- kernels ------------------------------------------------------------------------------
@njit(fastmath=True, inline="always", cache=True)
def code_value(qr, codes, e, lut, use_l2):
    """Minimised value of code row ``e`` for the float64 query ``qr``: ``Σ_t (qr_t − x̂_t)²``
    (``use_l2``) or ``−Σ_t qr_t · x̂_t``, with ``x̂_t = lut[t, codes[e, t]]``, in float64."""
    s = 0.0
    code = codes[e]
    if use_l2:
        for t in range(qr.shape[0]):
            u = qr[t] - lut[t, code[t]]
            s += u * u
        return s
    for t in range(qr.shape[0]):
        s += qr[t] * lut[t, code[t]]
    return -s


@njit(fastmath=True, cache=True)
def flat_scan_sorted(q, codes, lut, use_l2, allowed, hv, hi):
    """SQ-Flat, one query: every code's :func:`code_value` into the float64 heap
    ``(hv, hi)``, then sorted. Serial (the single-query path; no thread-pool wake-up).
    Rows ``e`` with ``allowed[e]`` false are skipped when ``allowed`` is not empty.

    ``fastmath`` only reassociates the float64 sums; the tests check the ids against a
    float64 NumPy brute force over the decoded vectors.
    """
    filtered = allowed.shape[0] > 0
    qr = q.astype(np.float64)
    for e in range(codes.shape[0]):
        if filtered and not allowed[e]:
            continue
        v = code_value(qr, codes, e, lut, use_l2)
        if v < hv[0]:
            heap_replace_top(hv, hi, v, e)
    heap_sort(hv, hi)


@njit(parallel=True, cache=True)
def flat_search_batch(queries, codes, lut, use_l2, allowed, heap_vals, heap_ids):
    """:func:`flat_scan_sorted` of every query, in parallel across queries."""
    for i in prange(queries.shape[0]):
        flat_scan_sorted(queries[i], codes, lut, use_l2, allowed, heap_vals[i], heap_ids[i])


@njit(fastmath=True, cache=True)
def ivf_scan_one(q, probes, centroids, by_residual, codes, lut, offsets, sizes, use_l2,
                 allowed, hv, hi):
    """IVF-SQ, one query: score the codes of the lists in ``probes`` (``-1`` skipped).

    Values as in the module docstring, computed in float64 and kept in the float32 heap
    ``(hv, hi)`` of pool positions; positions ``e`` with ``allowed[e]`` false are skipped
    when ``allowed`` is not empty (a filtered search). Returns the number of codes scored.
    """
    filtered = allowed.shape[0] > 0
    d = q.shape[0]
    qr = np.empty(d, dtype=np.float64)
    count = 0
    for p in range(probes.shape[0]):
        lst = probes[p]
        if lst < 0:
            continue
        base = 0.0
        if by_residual and use_l2:
            for t in range(d):
                qr[t] = np.float64(q[t]) - np.float64(centroids[lst, t])
        else:
            for t in range(d):
                qr[t] = q[t]
            if by_residual:
                for t in range(d):
                    base -= qr[t] * centroids[lst, t]
        start = offsets[lst]
        end = start + sizes[lst]
        count += end - start
        for e in range(start, end):
            if filtered and not allowed[e]:
                count -= 1
                continue
            v = np.float32(base + code_value(qr, codes, e, lut, use_l2))
            if v < hv[0]:
                heap_replace_top(hv, hi, v, e)
    return count


@njit(parallel=True, cache=True)
def scan_sq_lists(queries, probes, centroids, by_residual, codes, lut, offsets, sizes,
                  use_l2, allowed, heap_vals, heap_ids, scanned):
    """:func:`ivf_scan_one` for every query, in parallel; counts into ``scanned``."""
    for i in prange(queries.shape[0]):
        scanned[i] = ivf_scan_one(queries[i], probes[i], centroids, by_residual, codes, lut,
                                  offsets, sizes, use_l2, allowed, heap_vals[i], heap_ids[i])


@njit(cache=True)
def ivf_search_serial(queries, centroids, centroid_norms, alpha, beta, nprobe, by_residual,
                      codes, lut, offsets, sizes, use_l2, allowed, ids, out_d, out_i, scanned):
    """IVF-SQ search of each query in turn, on the calling thread, as
    :func:`~.ivf_kernels.flat_search_serial`."""
    for i in range(queries.shape[0]):
        q = queries[i]
        _, lists = coarse_one(q, centroids, centroid_norms, alpha, beta, nprobe)
        hv, hi = new_heap(out_d.shape[1])
        scanned[i] = ivf_scan_one(q, lists, centroids, by_residual, codes, lut, offsets,
                                  sizes, use_l2, allowed, hv, hi)
        heap_sort(hv, hi)
        write_result_row(hv, hi, ids, use_l2, out_d[i], out_i[i])


# -- indexes ------------------------------------------------------------------------------
@register_index
class SQIndex(PositionalIds, Index):
    """Brute-force search over 8-bit scalar-quantized vectors (FAISS
    ``IndexScalarQuantizer(d, QT_8bit)``).

    Parameters
    ----------
    d : int
    metric : {"l2", "ip", "cosine"}
        ``cosine`` unit-normalises the rows before training and encoding, and the queries;
        ``D`` is then the inner product of the unit query with the decoded row.
    range_stat, quantile
        How the quantizer's ranges are trained (:class:`~retgen_ref.sq.ScalarQuantizer`).

    Attributes
    ----------
    sq : ScalarQuantizer
        Fitted by :meth:`train`. Training again discards the stored vectors (and their ids).
    last_search_stats : dict
        ``entries_scanned`` (array, per query) of the last search: ``ntotal`` each, or the
        number of allowed rows in a filtered search.

    Ids are positions unless ``add_with_ids`` or ``remove_ids`` is used (FAISS's
    ``IndexIDMap``, :mod:`~.rowids`); ``reconstruct`` returns the decoded code.

    Examples
    --------
    >>> import numpy as np
    >>> from retgen_ref.index.sq import SQIndex
    >>> x = np.random.default_rng(0).standard_normal((1000, 8)).astype(np.float32)
    >>> index = SQIndex(8)
    >>> index.train(x)
    >>> index.add(x)
    >>> D, I = index.search(x[:3], k=2)
    >>> I[:, 0].tolist(), index.nbytes
    ([0, 1, 2], 8064)
    """

    kind = "SQIndex"

    def __init__(self, d: int, metric: str = "l2", *, range_stat: str = "minmax",
                 quantile: float = 0.001):
        super().__init__(d, metric)
        self.sq = ScalarQuantizer(self.d, range_stat=range_stat, quantile=quantile)
        self._codes = GrowableRows(self.d, np.uint8)
        self.last_search_stats: dict | None = None

    @property
    def ntotal(self) -> int:
        return len(self._codes)

    @property
    def is_trained(self) -> bool:
        return hasattr(self.sq, "lut_")

    @property
    def codes(self) -> np.ndarray:
        """Read-only view of the stored codes ``(ntotal, d)`` uint8."""
        return self._codes.view()

    def train(self, x) -> None:
        """Learn the quantizer's per-dimension ranges from ``x`` ``(n, d)``."""
        x = self._prepare(x, "x")
        self._write(self._train, x)

    def _train(self, x: np.ndarray) -> None:
        self.sq.fit(x)
        self._reset()  # codes of the old quantizer mean nothing under the new one

    def _add_rows(self, x: np.ndarray, codes: np.ndarray | None = None) -> None:
        """Append the codes of ``x``, or ``codes`` themselves when given (loading)."""
        self._codes.append(self.sq.encode_unchecked(x) if codes is None else codes)

    def _keep_rows(self, keep: np.ndarray) -> None:
        self._codes.keep(keep)

    def _rows_at(self, positions: np.ndarray) -> np.ndarray:
        return self.sq.decode(self._codes.view()[positions])

    def _reset(self) -> None:
        self._codes.clear()
        self._clear_ids()

    def _search(self, xq: np.ndarray, k: int, id_filter=None):
        codes, lut, use_l2 = self._codes.view(), self.sq.lut_, self.metric == "l2"
        allowed = self._allowed(id_filter)
        heap_vals = np.full((len(xq), k), EMPTY, dtype=np.float64)
        heap_ids = np.full((len(xq), k), -1, dtype=np.int64)
        if len(xq) == 1:
            flat_scan_sorted(xq[0], codes, lut, use_l2, allowed, heap_vals[0], heap_ids[0])
        else:
            flat_search_batch(xq, codes, lut, use_l2, allowed, heap_vals, heap_ids)
        scanned = len(codes) if id_filter is None else int(allowed.sum())
        self.last_search_stats = {"entries_scanned": np.full(len(xq), scanned)}
        D = heap_vals.astype(np.float32)
        D[heap_ids < 0] = np.inf  # empty slots (a filter allowing fewer than k rows)
        return (D if use_l2 else np.negative(D, out=D)), self._labels(heap_ids)

    def _state(self):
        params = {"trained": self.is_trained, "range_stat": self.sq.range_stat,
                  "quantile": self.sq.quantile}
        arrays = {"codes": self._codes.view(), **self._ids_state()}
        if self.is_trained:
            arrays.update(vmin=self.sq.vmin_, vdiff=self.sq.vdiff_)
        return params, arrays

    @classmethod
    def _from_state(cls, params, arrays):
        index = cls(params["d"], params["metric"], range_stat=params["range_stat"],
                    quantile=params["quantile"])
        codes = arrays["codes"]
        if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] != index.d:
            raise ValueError(f"codes have shape {codes.shape} and dtype {codes.dtype}")
        ids = index._checked_saved_ids(arrays, len(codes))  # None: a file without ids
        if params["trained"]:
            index.sq.set_range(arrays["vmin"], arrays["vdiff"])
        elif len(codes):
            raise ValueError("an untrained index cannot hold codes")
        if len(codes) or ids is not None:
            index._add(codes, ids, codes)  # the codes as they are (x is only counted)
        return index


@register_index
class IVFSQIndex(_IVFIndex):
    """IVF whose lists hold 8-bit scalar-quantized codes (FAISS
    ``IndexIVFScalarQuantizer(quantizer, d, nlist, QT_8bit)``).

    Parameters
    ----------
    d, nlist, metric, seed
        As :class:`~retgen_ref.index.IVFFlatIndex`.
    by_residual : bool
        Encode ``x − y_l`` (True, FAISS's default) or ``x`` itself.
    range_stat, quantile
        How the quantizer's ranges are trained (:class:`~retgen_ref.sq.ScalarQuantizer`),
        on the residuals of the training vectors when ``by_residual``.

    Attributes
    ----------
    nprobe : int
        Lists scanned per query (default 1).
    sq : ScalarQuantizer
        The trained quantizer.
    last_search_stats : dict
        ``coarse_distances`` (per query) and ``entries_scanned`` (array, per query).
    """

    kind = "IVFSQIndex"

    def __init__(self, d: int, nlist: int, metric: str = "l2", *, by_residual: bool = True,
                 seed: int = 0, range_stat: str = "minmax", quantile: float = 0.001):
        super().__init__(d, nlist, metric, seed=seed)
        self.sq = ScalarQuantizer(self.d, range_stat=range_stat, quantile=quantile)
        self.by_residual = bool(by_residual)

    @classmethod
    def _construct(cls, params):
        return cls(params["d"], params["nlist"], params["metric"],
                   by_residual=params["by_residual"], seed=params["seed"],
                   range_stat=params["range_stat"], quantile=params["quantile"])

    def _codec_params(self) -> dict:
        return {"by_residual": self.by_residual, "range_stat": self.sq.range_stat,
                "quantile": self.sq.quantile}

    def _codec_state(self) -> dict:
        return {"sq_vmin": self.sq.vmin_, "sq_vdiff": self.sq.vdiff_}

    def _load_codec(self, arrays) -> None:
        self.sq.set_range(arrays["sq_vmin"], arrays["sq_vdiff"])

    def _train_codec(self, x, assign) -> None:
        self.sq.fit(x - self.centroids[assign] if self.by_residual else x)

    def _list_fields(self) -> dict:
        return {"codes": (self.d, np.uint8)}

    def _entries(self, x, lists) -> dict:
        target = x - self.centroids[lists] if self.by_residual else x
        return {"codes": self.sq.encode_unchecked(np.ascontiguousarray(target))}

    def _decode(self, positions, lists) -> np.ndarray:
        """The reconstruction ``y_l + r̂`` (``x̂`` alone without residuals)."""
        decoded = self.sq.decode(self.lists.columns["codes"][positions])
        return decoded + self.centroids[lists] if self.by_residual else decoded

    def _scan(self, xq, coarse, probes, heap_vals, heap_pos, scanned, allowed):
        lists = self.lists
        scan_sq_lists(xq, probes, self.centroids, self.by_residual, lists.columns["codes"],
                      self.sq.lut_, lists.offsets, lists.sizes, self.metric == "l2",
                      allowed, heap_vals, heap_pos, scanned)

    def _search_serial(self, xq, nprobe, allowed, out_d, out_i, scanned):
        lists = self.lists
        ivf_search_serial(xq, *self._coarse_form(nprobe), self.by_residual,
                          lists.columns["codes"], self.sq.lut_, lists.offsets, lists.sizes,
                          self.metric == "l2", allowed, lists.ids, out_d, out_i, scanned)
