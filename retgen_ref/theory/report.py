"""``docs/theorems.md``, the papers' errata, written from the rows of ``retgen-ref verify``.

Regenerate with ``retgen-ref verify --markdown docs/theorems.md`` (the full run). The page
opens with one summary table, whose columns (claim, verdict, corrected and verified) are
the same in a ``--fast`` run; ``tests/test_theory.py`` compares that table with a fast
run, so a change of any verdict leaves the page stale and fails the test.
"""

from __future__ import annotations

import json

from .registry import PAPERS, VERDICTS

INTRO = """# The papers' claims, checked by computation

Every theorem, corollary and numeric claim of the papers in `../shared/papers/` that
`retgen-ref verify` checks, with the reading tested where the statement is ambiguous, the
evidence it computed, and its verdict: `holds`, `holds-under-conditions` (the conditions
named), `false` (with a counterexample and a corrected statement, itself checked) or
`not-checkable` (with the reason). Every verdict is decided by the computation in
`retgen_ref/theory/`, with fixed seeds.

Regenerate: `retgen-ref verify --markdown docs/theorems.md` (the full run took {seconds:.0f} s
on 2 cores). One claim: `retgen-ref verify --id retgen/thm4.3 [--json]`.
"""


def summary_rows(rows: list[dict]) -> list[tuple[str, str, str]]:
    """``(id, verdict, corrected?)`` per claim: the part of the page a fast run reproduces."""
    def corrected(row):
        if row["verdict"] != "false":
            return ""
        return "verified" if row["corrected_verified"] else "NOT verified"
    return [(row["id"], row["verdict"], corrected(row)) for row in rows]


def summary_table(rows: list[dict]) -> str:
    lines = ["| claim | verdict | corrected statement |", "|---|---|---|"]
    lines += [f"| `{i}` | {v} | {c} |" for i, v, c in summary_rows(rows)]
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    """The whole page."""
    seconds = sum(row["seconds"] for row in rows)
    counts = {v: sum(row["verdict"] == v for row in rows) for v in VERDICTS}
    parts = [INTRO.format(seconds=seconds),
             f"{len(rows)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".",
             "", summary_table(rows), ""]
    for paper in PAPERS:
        paper_rows = [row for row in rows if row["paper"] == paper]
        if not paper_rows:
            continue
        parts.append(f"## `{paper}.md`\n")
        for row in paper_rows:
            parts.append(_section(row))
    return "\n".join(parts).rstrip() + "\n"


def _section(row: dict) -> str:
    out = [f"### `{row['id']}`: {row['verdict']}", "",
           f"**Statement.** {row['statement']}", "", f"**Reading tested.** {row['reading']}", ""]
    if row.get("conditions"):
        out += [f"**Conditions.** {row['conditions']}", ""]
    out += [f"**Evidence.** `{json.dumps(row['evidence'], ensure_ascii=False)}`", ""]
    if row["verdict"] == "false":
        verified = "verified" if row["corrected_verified"] else "NOT verified"
        out += [f"**Counterexample.** `{json.dumps(row['counterexample'], ensure_ascii=False)}`",
                "", f"**Corrected ({verified}).** {row['corrected']}", ""]
    return "\n".join(out)


def read_summary(text: str) -> list[tuple[str, str, str]]:
    """The summary table of a page written by :func:`markdown`."""
    out = []
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out.append((cells[0].strip("`"), cells[1], cells[2]))
    return out
