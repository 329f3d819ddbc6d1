"""``retgen-ref verify`` (issue 8): the checking machinery, every claim's determinism, and
the errata page ``docs/theorems.md`` against a fresh run."""

import json
from pathlib import Path

import numpy as np
import pytest

from retgen_ref.cli import main
from retgen_ref.theory import CLAIMS, SEEDS, Finding, judge, not_checkable, run_claim
from retgen_ref.theory.report import markdown, read_summary, summary_rows

THEOREMS = Path(__file__).resolve().parent.parent / "docs" / "theorems.md"
KEYS = {"id", "paper", "statement", "reading", "claimed", "verdict", "evidence", "counterexample",
        "corrected", "corrected_verified", "seconds", "conditions"}


@pytest.fixture(scope="module")
def fast_rows():
    return {seed: [run_claim(claim_id, seed, fast=True) for claim_id in CLAIMS]
            for seed in SEEDS}


def _square_below_identity(rng, upper):
    """The claim "x² ≤ x for every x in [0, upper]", checked on random x."""
    x = rng.uniform(0, upper, 1_000)
    excess = x ** 2 - x
    worst = int(np.argmax(excess))
    inside = x[x <= 1]
    return judge({"samples": len(x)}, excess[worst], 0.0,
                 counterexample={"x": x[worst], "x_squared": x[worst] ** 2},
                 corrected="x² ≤ x for every x in [0, 1]",
                 corrected_violation=float(np.max(inside ** 2 - inside, initial=0.0)))


def test_a_false_claim_is_refuted_with_a_verified_correction():
    finding = _square_below_identity(np.random.default_rng(0), upper=2.0)
    assert finding.verdict == "false" and finding.corrected_verified
    assert finding.counterexample["x"] > 1
    assert finding.counterexample["x_squared"] > finding.counterexample["x"]


def test_a_true_claim_holds_and_a_conditional_one_names_its_conditions():
    assert _square_below_identity(np.random.default_rng(0), upper=1.0).verdict == "holds"
    conditional = judge({}, 0.0, 0.0, conditions="x in [0, 1]", unconditional_violation=0.5)
    assert conditional.verdict == "holds-under-conditions"
    assert conditional.conditions == "x in [0, 1]"
    assert conditional.evidence["unconditional_worst_violation"] == 0.5


def test_conditions_that_nothing_breaks_are_not_needed():
    assert judge({}, 0.0, 0.0, conditions="x in [0, 1]",
                 unconditional_violation=0.0).verdict == "holds"


def test_a_wrong_correction_is_not_marked_verified():
    finding = judge({}, 1.0, 0.0, counterexample={"x": 2}, corrected="still wrong",
                    corrected_violation=0.5)
    assert finding.verdict == "false" and not finding.corrected_verified


@pytest.mark.parametrize("violation", [1.0, float("nan")])
def test_a_broken_claim_is_false_even_without_a_correction(violation):
    finding = judge({}, violation, 0.0)
    assert finding.verdict == "false" and not finding.corrected_verified
    assert finding.corrected is None and finding.counterexample


@pytest.mark.parametrize("make,message", [
    (lambda: Finding("false", {}), "counterexample"),
    (lambda: Finding("plausible", {}), "choose one of"),
    (lambda: judge({}, 0.0, 0.0, conditions="x in [0, 1]"), "unconditional_violation"),
    (lambda: judge({}, 0.0, 0.0, unconditional_violation=1.0), "conditions"),
])
def test_the_machinery_refuses_verdicts_without_their_evidence(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_claimed_quantities_are_parameters_with_the_papers_defaults():
    from retgen_ref.theory.registry import claimed_quantities
    def check(rng, fast, *, constant=1.0, exponent=0.5):
        return judge({}, 0.0, 0.0)
    assert claimed_quantities(check) == {"constant": 1.0, "exponent": 0.5}
    with pytest.raises(ValueError, match="paper's value"):
        claimed_quantities(lambda rng, fast, *, constant: None)
    with pytest.raises(ValueError, match="claims no quantity"):
        run_claim("retgen/thm2.1", claimed={"not_a_quantity": 1})


def test_not_checkable_says_why():
    assert not_checkable("no constants").evidence == {"why": "no constants"}


def test_every_check_is_deterministic(fast_rows):
    again = [run_claim(claim_id, SEEDS[0], fast=True) for claim_id in CLAIMS]
    for first, second in zip(fast_rows[SEEDS[0]], again):
        assert set(first) == KEYS
        assert {k: v for k, v in first.items() if k != "seconds"} == \
               {k: v for k, v in second.items() if k != "seconds"}, first["id"]
        json.dumps(first)  # JSON-able
        if first["verdict"] == "false":
            assert first["counterexample"], first["id"]


@pytest.mark.slow
def test_every_verdict_is_stable_over_seeds_0_to_9(fast_rows):
    for seed in SEEDS[1:]:
        for first, other in zip(fast_rows[SEEDS[0]], fast_rows[seed]):
            assert (other["verdict"], other["corrected_verified"]) == \
                   (first["verdict"], first["corrected_verified"]), (first["id"], seed)


def test_the_errata_page_matches_a_fresh_run(fast_rows):
    """Regenerate with `retgen-ref verify --markdown docs/theorems.md`."""
    assert THEOREMS.exists(), "run `retgen-ref verify --markdown docs/theorems.md`"
    assert read_summary(THEOREMS.read_text()) == summary_rows(fast_rows[SEEDS[0]])
    assert read_summary(markdown(fast_rows[SEEDS[0]])) == summary_rows(fast_rows[SEEDS[0]])


def test_cli_json_has_the_documented_keys(capsys):
    claim_id = next(iter(CLAIMS))
    assert main(["verify", "--id", claim_id, "--fast", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in rows] == [claim_id] and set(rows[0]) == KEYS


def test_cli_unknown_claim_is_a_clear_error(capsys):
    assert main(["verify", "--id", "retgen/thm99.9"]) == 2
    assert "verify --list" in capsys.readouterr().err
