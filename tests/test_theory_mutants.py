"""Every check of ``retgen-ref verify`` can say "false" (issue 16).

A check is worth what it can refute. Each claim's check takes the claimed quantities as
parameters (the paper's values by default) and registers mutants: wrong claims its
evidence must refute (a constant moved by 2×, an exponent by 0.1, a dropped variable, a
rule that ignores the data) and, for a false claim, tightened corrections it must break,
so that a vacuous correction cannot pass. Here every mutant runs in the fast mode.
"""

from __future__ import annotations

import pytest

from retgen_ref.theory import CLAIMS, run_claim

MUTANTS = [(claim_id, what, mutant) for claim_id, c in CLAIMS.items()
           for what, mutant in c.mutants]


def _mutant_id(case) -> str:
    claim_id, what, mutant = case
    return f"{claim_id}:{what}:" + ",".join(f"{k}={v}" for k, v in mutant.items())


@pytest.mark.parametrize("case", MUTANTS, ids=[_mutant_id(c) for c in MUTANTS])
def test_the_evidence_refutes_every_mutant(case):
    claim_id, what, mutant = case
    row = run_claim(claim_id, seed=0, fast=True, claimed=mutant)
    assert row["verdict"] == "false", f"{claim_id} with {mutant}: {row['evidence']}"
    if what == "correction broken":
        assert not row["corrected_verified"], f"{claim_id}: correction survives {mutant}"


def test_every_checkable_claim_has_mutants_and_every_correction_is_tested():
    paper = {claim_id: run_claim(claim_id, seed=0, fast=True)["verdict"]
             for claim_id in CLAIMS}
    for claim_id, c in CLAIMS.items():
        if paper[claim_id] == "not-checkable":
            continue
        assert len(c.mutants) >= 2, f"{claim_id} registers {len(c.mutants)} mutants"
        if paper[claim_id] == "false":
            assert c.correction_broken_by, f"{claim_id}: no tightened correction is tried"
