"""The registry of the papers' claims and the machinery that checks them (issue 8).

Every claim is a function registered with :func:`claim`: it receives a seeded
``numpy.random.Generator`` and ``fast`` (a smaller but still meaningful experiment) and
returns a :class:`Finding` built from what it computed. The verdict is never written by
hand: :func:`judge` derives it from the measured worst violation of the claimed
inequality or identity, and a ``false`` verdict must carry a counterexample and a
corrected statement whose own check (run by :func:`judge` too) decides
``corrected_verified``.

Verdicts:

``holds``
    the statement, read as written, survived every test case.
``holds-under-conditions``
    it holds only with extra conditions, named in ``conditions`` (e.g. "balanced lists").
``false``
    a concrete counterexample breaks it.
``not-checkable``
    it makes no statement a computation can test (undefined symbols, an O(·) with no
    constants over an unbounded range, ...); ``reading`` says why.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

VERDICTS = ("holds", "holds-under-conditions", "false", "not-checkable")
PAPERS = ("retgen", "retgen_v2", "rag_math_foundations", "rag_math_notes_part5")
SEEDS = (0, 1)  # the default seed and the second seed the tests re-run every check with


@dataclass
class Finding:
    """What one check found. Build it with :func:`judge` or :func:`not_checkable`."""

    verdict: str
    evidence: dict
    counterexample: dict | None = None
    corrected: str | None = None
    corrected_verified: bool = False
    conditions: str | None = None

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r}; choose one of {VERDICTS}")
        if self.verdict == "false" and (not self.counterexample or not self.corrected):
            raise ValueError("a 'false' verdict needs a counterexample and a corrected statement")
        if self.verdict == "holds-under-conditions" and not self.conditions:
            raise ValueError("a 'holds-under-conditions' verdict must name its conditions")


@dataclass
class Claim:
    """A registered claim: ``id`` is ``paper/name`` (paper = file name without ``.md``)."""

    id: str
    statement: str
    reading: str
    check: Callable = field(repr=False)

    @property
    def paper(self) -> str:
        return self.id.split("/", 1)[0]


CLAIMS: dict[str, Claim] = {}


def claim(id: str, statement: str, reading: str):
    """Register the decorated ``check(rng, fast) -> Finding`` as claim ``id``."""
    paper = id.split("/", 1)[0]
    if "/" not in id or paper not in PAPERS:
        raise ValueError(f"claim id {id!r} must be 'paper/name' with paper in {PAPERS}")

    def register(check):
        if id in CLAIMS:
            raise ValueError(f"claim {id!r} is registered twice")
        CLAIMS[id] = Claim(id, statement, reading, check)
        return check

    return register


def judge(evidence: dict, violation: float, tolerance: float, *, counterexample=None,
          corrected: str | None = None, corrected_violation: float | None = None,
          conditions: str | None = None, holds_without_conditions: bool = True) -> Finding:
    """The verdict from the numbers: ``violation`` is the worst measured excess of the
    claim over what it allows (``≤ tolerance`` means no test case broke it).

    A broken claim is ``false``: pass the ``counterexample`` (numbers) that broke it and a
    ``corrected`` statement with ``corrected_violation``, its own worst excess on the same
    cases; it is ``corrected_verified`` when that is within ``tolerance``. A claim that
    holds but needed ``conditions`` to be true is ``holds-under-conditions``
    (``holds_without_conditions=False``).
    """
    evidence = {**evidence, "worst_violation": float(violation), "tolerance": float(tolerance)}
    if violation > tolerance:
        if counterexample is None or corrected is None or corrected_violation is None:
            raise ValueError("the claim failed: give the counterexample, a corrected statement "
                             "and the corrected statement's measured violation")
        evidence["corrected_worst_violation"] = float(corrected_violation)
        return Finding("false", evidence, counterexample, corrected,
                       bool(corrected_violation <= tolerance), conditions)
    if not holds_without_conditions:
        if not conditions:
            raise ValueError("name the conditions the claim needs")
        return Finding("holds-under-conditions", evidence, conditions=conditions)
    return Finding("holds", evidence)


def loglog_slope(xs, ys, last: int | None = None) -> float:
    """Least-squares slope of ``log y`` on ``log x`` (the exponent of a power law), over the
    ``last`` points only when given (the asymptotic end of a sweep)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if last is not None:
        xs, ys = xs[-last:], ys[-last:]
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def not_checkable(why: str, evidence: dict | None = None) -> Finding:
    """A claim with nothing a computation can test; ``why`` goes into the evidence."""
    return Finding("not-checkable", {"why": why, **(evidence or {})})


def claim_order(claim_id: str) -> tuple:
    """Sort key: the paper (in :data:`PAPERS` order), then the section numbers in the
    name (``thm4.2`` → (4, 2); ``table6`` → (6,)), a section's theorems before its
    corollaries and tables; names without numbers keep their registration order."""
    import re
    paper, name = claim_id.split("/", 1)
    numbered = re.fullmatch(r"(thm|cor|table|app)([\d.]+)", name)
    numbers = ([int(n) for n in numbered.group(2).split(".") if n] if numbered
               else [float("inf")])
    return (PAPERS.index(paper), numbers[0], not name.startswith("thm"), numbers[1:])


def run_claim(claim_id: str, seed: int = SEEDS[0], fast: bool = False) -> dict:
    """Check one claim; the row of ``retgen-ref verify --json``."""
    if claim_id not in CLAIMS:
        raise ValueError(f"no claim {claim_id!r}; `retgen-ref verify --list` shows them")
    c = CLAIMS[claim_id]
    start = time.perf_counter()
    finding = c.check(np.random.default_rng(seed), fast)
    if not isinstance(finding, Finding):
        raise TypeError(f"the check of {claim_id} returned {type(finding).__name__}, "
                        "not a Finding")
    row = {"id": c.id, "paper": c.paper, "statement": c.statement, "reading": c.reading,
           **asdict(finding)}
    row["evidence"] = _plain(row["evidence"])
    row["counterexample"] = _plain(row["counterexample"])
    row["seconds"] = time.perf_counter() - start
    return row


def _plain(value):
    """JSON-able copy: numpy scalars and arrays become Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value
