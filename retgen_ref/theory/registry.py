"""The registry of the papers' claims and the machinery that checks them.

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

A check is worth what it can refute, so every claimed quantity (a bound's constant, a rate
exponent, an optimum, a formula) is a keyword-only parameter of the check with the paper's
value as default: ``run_claim(id, claimed={"constant": 60})`` checks another claim with the
same evidence. Each claim registers *mutants*: claims the evidence must refute
(``refuted_by``) and, for a false claim, tightened corrections it must break
(``correction_broken_by``); ``tests/test_theory_mutants.py`` runs them all.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

VERDICTS = ("holds", "holds-under-conditions", "false", "not-checkable")
PAPERS = ("retgen", "retgen_v2", "rag_math_foundations", "rag_math_notes_part5", "rag_overview")
SEEDS = tuple(range(10))  # the default seed first; every verdict must hold over all (fast)


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
        if self.verdict == "false" and not self.counterexample:
            raise ValueError("a 'false' verdict needs a counterexample")
        if self.verdict == "holds-under-conditions" and not self.conditions:
            raise ValueError("a 'holds-under-conditions' verdict must name its conditions")


@dataclass
class Claim:
    """A registered claim: ``id`` is ``paper/name`` (paper = file name without ``.md``).

    ``claimed`` holds the paper's value of every claimed quantity (the check's keyword-only
    parameters and their defaults); ``refuted_by`` and ``correction_broken_by`` are the
    mutants, each a dict of other values for some of them. ``nature`` is
    ``"mathematics"`` (a statement that is true or false as mathematics) or
    ``"measurement"`` (a measured claim about the papers' system, which may not reproduce
    here without being wrong as mathematics).
    """

    id: str
    statement: str
    reading: str
    check: Callable = field(repr=False)
    claimed: dict = field(default_factory=dict)
    refuted_by: tuple = ()
    correction_broken_by: tuple = ()
    nature: str = "mathematics"

    @property
    def paper(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def mutants(self) -> list[tuple[str, dict]]:
        """``(what must happen, overrides)``: ``"refuted"`` or ``"correction broken"``."""
        return ([("refuted", m) for m in self.refuted_by]
                + [("correction broken", m) for m in self.correction_broken_by])


CLAIMS: dict[str, Claim] = {}


def claimed_quantities(check: Callable) -> dict:
    """The keyword-only parameters of ``check(rng, fast, *, ...)`` with their defaults."""
    params = inspect.signature(check).parameters.values()
    out = {}
    for p in params:
        if p.kind is p.KEYWORD_ONLY:
            if p.default is p.empty:
                raise ValueError(f"{check.__name__}: claimed quantity {p.name!r} needs the "
                                 "paper's value as its default")
            out[p.name] = p.default
    return out


NATURES = ("mathematics", "measurement")


def claim(id: str, statement: str, reading: str, *, refuted_by=(), correction_broken_by=(),
          nature: str = "mathematics"):
    """Register the decorated ``check(rng, fast, *, claimed...) -> Finding`` as claim ``id``,
    with the mutants that its evidence must refute (module docstring)."""
    paper = id.split("/", 1)[0]
    if "/" not in id or paper not in PAPERS:
        raise ValueError(f"claim id {id!r} must be 'paper/name' with paper in {PAPERS}")
    if nature not in NATURES:
        raise ValueError(f"nature={nature!r}; choose one of {NATURES}")

    def register(check):
        if id in CLAIMS:
            raise ValueError(f"claim {id!r} is registered twice")
        claimed = claimed_quantities(check)
        for mutant in (*refuted_by, *correction_broken_by):
            unknown = set(mutant) - set(claimed)
            if not mutant or unknown:
                raise ValueError(f"claim {id!r}: mutant {mutant} must change some of the "
                                 f"claimed quantities {sorted(claimed)}")
        CLAIMS[id] = Claim(id, statement, reading, check, claimed, tuple(refuted_by),
                           tuple(correction_broken_by), nature)
        return check

    return register


def judge(evidence: dict, violation: float, tolerance: float, *, counterexample=None,
          corrected: str | None = None, corrected_violation: float | None = None,
          conditions: str | None = None,
          unconditional_violation: float | None = None) -> Finding:
    """The verdict from the numbers alone.

    ``violation`` is the worst measured excess of the claim over what it allows, on the
    cases it speaks of (``≤ tolerance``: no case broke it). A broken claim is ``false``,
    whatever else is passed: ``counterexample`` is its worst case (the numbers that broke
    it; pass it always, it is only shown when the claim fails) and ``corrected`` a
    corrected statement whose own worst excess on the same cases is
    ``corrected_violation``; it is ``corrected_verified`` when that is within
    ``tolerance``. A check without a correction still returns ``false``, unverified.

    A claim that needs ``conditions`` passes ``unconditional_violation``, the worst excess
    measured on cases that break the conditions: the verdict is ``holds-under-conditions``
    if that exceeds ``tolerance`` (the conditions are needed) and ``holds`` if not.
    """
    evidence = {**evidence, "worst_violation": float(violation), "tolerance": float(tolerance)}
    if (conditions is None) != (unconditional_violation is None):
        raise ValueError("conditions and unconditional_violation go together: measure the "
                         "claim on cases outside its conditions")
    if corrected_violation is not None:
        evidence["corrected_worst_violation"] = float(corrected_violation)
    if unconditional_violation is not None:
        evidence["unconditional_worst_violation"] = float(unconditional_violation)
    if not violation <= tolerance:  # NaN counts as broken
        verified = corrected is not None and corrected_violation is not None and \
            bool(corrected_violation <= tolerance)
        return Finding("false", evidence, counterexample or {"worst_violation": violation},
                       corrected, verified, conditions)
    if conditions is not None and not unconditional_violation <= tolerance:
        return Finding("holds-under-conditions", evidence, conditions=conditions)
    return Finding("holds", evidence)


def loglog_slope(xs, ys, last: int | None = None) -> float:
    """Least-squares slope of ``log y`` on ``log x`` (the exponent of a power law), over the
    ``last`` points only when given (the asymptotic end of a sweep)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if last is not None:
        xs, ys = xs[-last:], ys[-last:]
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def loglog_evidence(x, y, *, xlabel: str, ylabel: str, claimed_slope: float | None,
                    corrected_slope: float | None = None, label: str = "measured") -> dict:
    """One curve of the evidence entry ``loglog`` of a rate or complexity claim: the
    measured sweep ``y(x)`` and the slopes the paper and the correction predict (None: no
    line, for a curve shown beside the one judged), drawn by :func:`~.report.write_plots`.
    ``evidence["loglog"]`` is one such curve or a list of them; curves with the same axes
    share a panel."""
    def optional(slope):
        return None if slope is None else float(slope)
    return {"label": label, "x": [float(v) for v in x], "y": [float(v) for v in y],
            "xlabel": xlabel, "ylabel": ylabel, "claimed_slope": optional(claimed_slope),
            "corrected_slope": optional(corrected_slope)}


def rounding_excess(value: float, printed: float, significant: int | None = None) -> float:
    """How far ``value`` lies outside the rounding of a printed number: ``|value − printed|``
    less half a unit of its last digit (printed to units, or to ``significant`` digits).
    ``≤ 0``: the printed number is ``value`` rounded."""
    unit = 1.0 if significant is None else 10.0 ** (math.floor(math.log10(abs(printed)))
                                                     - significant + 1)
    return abs(value - printed) - 0.5 * unit


def not_checkable(why: str, evidence: dict | None = None) -> Finding:
    """A claim with nothing a computation can test; ``why`` goes into the evidence."""
    return Finding("not-checkable", {"why": why, **(evidence or {})})


def claim_order(claim_id: str) -> tuple:
    """Sort key: the paper (in :data:`PAPERS` order), then the section numbers in the
    name (``thm4.2`` → (4, 2); ``table6`` → (6,); ``s10-gpt3`` → (10,)), in a section its
    definitions, then theorems, then corollaries, tables and the rest; names without
    numbers keep their registration order."""
    import re
    paper, name = claim_id.split("/", 1)
    numbered = re.fullmatch(r"(def|thm|cor|table|app|s)([\d.]+)(-.*)?", name)
    numbers = ([int(n) for n in numbered.group(2).split(".") if n] if numbered
               else [float("inf")])
    rank = {"def": 0, "thm": 1}.get(numbered.group(1), 2) if numbered else 2
    return (PAPERS.index(paper), numbers[0], rank, numbers[1:])


def run_claim(claim_id: str, seed: int = SEEDS[0], fast: bool = False,
              claimed: dict | None = None) -> dict:
    """Check one claim, against the paper's quantities or the ``claimed`` ones given; the
    row of ``retgen-ref verify --json``."""
    if claim_id not in CLAIMS:
        raise ValueError(f"no claim {claim_id!r}; `retgen-ref verify --list` shows them")
    c = CLAIMS[claim_id]
    unknown = set(claimed or {}) - set(c.claimed)
    if unknown:
        raise ValueError(f"{claim_id} claims no quantity {sorted(unknown)}; its claimed "
                         f"quantities are {sorted(c.claimed) or 'none'}")
    values = {**c.claimed, **(claimed or {})}
    start = time.perf_counter()
    finding = c.check(np.random.default_rng(seed), fast, **values)
    if not isinstance(finding, Finding):
        raise TypeError(f"the check of {claim_id} returned {type(finding).__name__}, "
                        "not a Finding")
    row = {"id": c.id, "paper": c.paper, "statement": c.statement, "reading": c.reading,
           "claimed": _plain(values), **asdict(finding)}
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
