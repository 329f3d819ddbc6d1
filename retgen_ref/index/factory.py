"""``index_factory(d, "IVF1024,PQ48x8")``: an index from FAISS's description strings.

A benchmark or a port from FAISS builds both libraries from one string. Each string means
what it means in ``faiss.index_factory`` (FAISS wiki, "The index factory"):

* ``Flat``: :class:`FlatIndex` (``IndexFlat``);
* ``HNSW32`` or ``HNSW32,Flat``: :class:`HNSWIndex` with ``M = 32`` (``IndexHNSWFlat``);
* ``IVF1024,Flat``: :class:`IVFFlatIndex` with 1024 lists (``IndexIVFFlat``);
* ``IVF1024,PQ48x8``: :class:`IVFPQIndex` with 48 sub-quantizers of 8 bits (``x8`` may be
  left out) (``IndexIVFPQ``);
* ``IVF1024,PQ48x8,Refine(Flat)``: the same keeping the vectors and re-ranking the PQ
  candidates by their exact distance (``IndexRefine`` over a flat index, ``k_factor = 1``);
* ``PQ48x8``: PQ codes of every vector searched exhaustively (``IndexPQ``): an
  :class:`IVFPQIndex` with one list and no residual, which computes the same asymmetric
  distances over every code;
* ``SQ8``: 8 bits per dimension, every code scanned (``IndexScalarQuantizer`` with
  ``QT_8bit``): :class:`SQIndex`;
* ``IVF1024,SQ8``: :class:`IVFSQIndex`, residuals coded (``IndexIVFScalarQuantizer``);
* ``OPQ16,...``: the index ``...`` behind a learned rotation for 16 sub-quantizers
  (``IndexPreTransform`` of an ``OPQMatrix``): :class:`PreTransformIndex` of an
  :class:`~retgen_ref.opq.OPQ` trained with FAISS's 50 alternations (``OPQ``'s own default
  is 25) (``OPQ16_D`` only with ``D = d``: no dimension reduction);
* ``LSH16x8``: ours, not FAISS's: :class:`LSHIndex` with 16 hyperplanes per table and 8
  tables. FAISS's ``LSH`` is one table of binary codes searched by Hamming distance, which
  the project does not have.

Indexes that need training (IVF, PQ) are returned untrained, as FAISS does.
"""

from __future__ import annotations

import re

from .._validation import check_int, check_metric
from .base import Index
from .flat import FlatIndex
from .hnsw import HNSWIndex
from .ivf import IVFFlatIndex, IVFPQIndex
from ..opq import OPQ
from .lsh import LSHIndex
from .pretransform import PreTransformIndex
from .sq import IVFSQIndex, SQIndex

#: Alternations of an ``OPQm`` string's rotation: ``faiss.OPQMatrix.niter``'s default.
#: ``benchmarks/opq_iterations.py`` (20k clustered unit vectors, d = 96, ip): with 25 the
#: reconstruction error was 4 % above FAISS's and the rotation lowered recall; with 50,
#: MSE 0.1124 vs FAISS's 0.1114 and recall 0.297 vs 0.288.
FAISS_OPQ_ITERATIONS = 50

_PQ = re.compile(r"PQ(\d+)(?:x(\d+))?")
_GRAMMAR = ("Flat, HNSW<M>[,Flat], IVF<nlist>,Flat, IVF<nlist>,PQ<m>[x<bits>][,Refine(Flat)], "
            "IVF<nlist>,SQ8, PQ<m>[x<bits>], SQ8, LSH<bits>x<tables>, and OPQ<m>,<any of "
            "these>")


def index_factory(d: int, description: str, metric: str = "l2") -> Index:
    """The index ``description`` names, for ``d``-dimensional vectors and ``metric``
    ("l2", "ip" or "cosine"); see the module's table for the strings."""
    d, metric = check_int(d, "d"), check_metric(metric)
    if not isinstance(description, str):
        raise TypeError(f"description must be a string such as 'IVF1024,PQ48x8', got "
                        f"{type(description).__name__}")
    parts = [p.strip() for p in description.split(",")]
    refine = parts[-1] == "Refine(Flat)"
    if refine:
        parts = parts[:-1]
    opq = re.fullmatch(r"OPQ(\d+)(?:_(\d+))?", parts[0])
    if opq and opq[2] and int(opq[2]) != d:
        raise ValueError(f"{parts[0]}: OPQ with an output dimension {opq[2]} ≠ d = {d} "
                         "(a dimension reduction) is not implemented; use OPQ{m} or "
                         f"OPQ{{m}}_{d}")
    index = _build(d, parts[1:] if opq else parts, metric, refine) if len(parts) > bool(opq) \
        else None
    if index is None:
        raise ValueError(f"cannot read the index description {description!r}; the strings "
                         f"understood are: {_GRAMMAR}")
    return (PreTransformIndex(OPQ(d, int(opq[1]), n_iter=FAISS_OPQ_ITERATIONS), index) if opq
            else index)


def _build(d: int, parts: list[str], metric: str, refine: bool) -> Index | None:
    """The index of the comma-separated ``parts``, or None when they match no form."""
    head, rest = parts[0], parts[1:]
    if refine and not (head.startswith("IVF") and rest and _PQ.fullmatch(rest[0])):
        raise ValueError("Refine(Flat) is supported after IVF<nlist>,PQ<m>: that is the "
                         "index that can keep its vectors (IVFPQIndex(store_vectors=True))")
    if head == "Flat" and not rest:
        return FlatIndex(d, metric)
    if (found := re.fullmatch(r"HNSW(\d+)", head)) and rest in ([], ["Flat"]):
        return HNSWIndex(d, int(found[1]), metric=metric)
    if (found := re.fullmatch(r"LSH(\d+)x(\d+)", head)) and not rest:
        return LSHIndex(d, int(found[1]), int(found[2]), metric=metric)
    if head.startswith("LSH"):
        raise ValueError(f"{head!r}: FAISS's LSH (one table of binary codes searched by "
                         "Hamming distance) is not implemented; our bucketed LSHIndex is "
                         "'LSH<bits>x<tables>', e.g. 'LSH16x8'")
    if head == "SQ8" and not rest:
        return SQIndex(d, metric)
    if (found := _PQ.fullmatch(head)) and not rest:
        return _ivfpq(d, 1, found, metric, by_residual=False)
    if (found := re.fullmatch(r"IVF(\d+)", head)) and len(rest) == 1:
        nlist = int(found[1])
        if rest[0] == "Flat":
            return IVFFlatIndex(d, nlist, metric)
        if rest[0] == "SQ8":
            return IVFSQIndex(d, nlist, metric)
        if pq := _PQ.fullmatch(rest[0]):
            index = _ivfpq(d, nlist, pq, metric, store_vectors=refine)
            if refine:
                index.refine_k = 1  # FAISS's k_factor = 1: the best k by PQ, re-ranked
            return index
    return None


def _ivfpq(d: int, nlist: int, pq: re.Match, metric: str, **options) -> IVFPQIndex:
    return IVFPQIndex(d, nlist, int(pq[1]), int(pq[2] or 8), metric, **options)
