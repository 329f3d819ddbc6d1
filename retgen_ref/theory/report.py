"""``docs/theorems.md``, the papers' errata, written from the rows of ``retgen-ref verify``.

Regenerate with ``retgen-ref verify --markdown docs/theorems.md``: the full run at the
default seed, plus a fast run at every seed of :data:`~.registry.SEEDS` for the stability
column. The page opens with one summary table whose first three columns (claim, verdict,
corrected and verified) are the same in a ``--fast`` run; ``tests/test_theory.py``
compares them with a fast run, so a change of any verdict leaves the page stale and fails
the test.

Each false claim gets a three-line box (the paper's statement, the counterexample, the
corrected statement with its check's margin); evidence is shown as small rounded tables
(the raw numbers are in ``--json``); a claim whose evidence holds a log-log sweep
(``evidence["loglog"]``, see :func:`~.registry.loglog_evidence`) gets a plot in ``docs/theory/``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .registry import CLAIMS, PAPERS, VERDICTS, loglog_slope

INTRO = """# The papers' claims, checked by computation

Every theorem, corollary and numeric claim of the papers in `../shared/papers/` that
`retgen-ref verify` checks, with the reading tested where the statement is ambiguous, the
evidence it computed, and its verdict: `holds`, `holds-under-conditions` (the conditions
named, and measured to be needed), `false` (with a counterexample and a corrected
statement, itself checked) or `not-checkable` (with the reason). Every verdict is decided
by the computation in `retgen_ref/theory/`: each check takes the claimed quantities as
parameters, and the wrong claims it must refute (its mutants) are run by
`tests/test_theory_mutants.py`.

Regenerate: `retgen-ref verify --markdown docs/theorems.md` (the full run took {seconds:.0f} s,
the fast runs over seeds {seeds} {fast_seconds:.0f} s, on 2 cores). One claim:
`retgen-ref verify --id retgen/thm4.3 [--json]`; against another claim:
`retgen-ref verify --id retgen/thm4.2 --claim kl_factor=60`.
"""

#: How a false verdict reads: a statement wrong as mathematics, or a measured claim about
#: a system that does not reproduce here (registered with ``nature="measurement"``).
NATURE = {"mathematics": "false in mathematics",
          "measurement": "does not reproduce on this system"}
MAX_TABLE_ROWS = 8


def summary_rows(rows: list[dict]) -> list[tuple[str, str, str]]:
    """``(id, verdict, corrected?)`` per claim: the part of the page a fast run reproduces."""
    def corrected(row):
        if row["verdict"] != "false":
            return ""
        return "verified" if row["corrected_verified"] else "NOT verified"
    return [(row["id"], row["verdict"], corrected(row)) for row in rows]


def stability(seed_rows: dict[int, list[dict]]) -> dict[str, str]:
    """Per claim, ``"10/10"``: the seeds whose (verdict, corrected_verified) is seed 0's."""
    seeds = sorted(seed_rows)
    out = {}
    for i, row in enumerate(seed_rows[seeds[0]]):
        same = sum((seed_rows[s][i]["verdict"], seed_rows[s][i]["corrected_verified"]) ==
                   (row["verdict"], row["corrected_verified"]) for s in seeds)
        out[row["id"]] = f"{same}/{len(seeds)}"
    return out


def margin(row: dict) -> str:
    """The worst violation against the tolerance, as ``violation / tolerance`` rounded."""
    ev = row["evidence"]
    if "worst_violation" not in ev:
        return ""
    return f"{_num(ev['worst_violation'])} / {_num(ev['tolerance'])}"


def summary_table(rows: list[dict], stable: dict[str, str] | None = None) -> str:
    lines = ["| claim | verdict | corrected statement | same verdict over seeds (fast) | "
             "worst violation / tolerance |", "|---|---|---|---|---|"]
    for row, (i, v, c) in zip(rows, summary_rows(rows)):
        if v == "false":
            v = f"{v} ({NATURE[_nature(row)]})"
        lines.append(f"| `{i}` | {v} | {c} | {(stable or {}).get(i, '')} | {margin(row)} |")
    return "\n".join(lines)


def mutation_score(claim_ids) -> tuple[int, int]:
    """``(refuted, registered)`` over the mutants of ``claim_ids``, each run fast at seed 0:
    refuted = verdict ``false`` (and, for a tightened correction, not verified)."""
    from .registry import run_claim
    refuted = total = 0
    for claim_id in claim_ids:
        for what, mutant in CLAIMS[claim_id].mutants:
            row = run_claim(claim_id, fast=True, claimed=mutant)
            total += 1
            refuted += row["verdict"] == "false" and not (
                what == "correction broken" and row["corrected_verified"])
    return refuted, total


def markdown(rows: list[dict], seed_rows: dict[int, list[dict]] | None = None,
             plots: dict[str, str] | None = None,
             mutants: tuple[int, int] | None = None) -> str:
    """The whole page; ``seed_rows`` (fast rows per seed) gives the stability column,
    ``plots`` (claim id → image path relative to the page) the figures and ``mutants``
    the :func:`mutation_score`."""
    seconds = sum(row["seconds"] for row in rows)
    fast_seconds = sum(r["seconds"] for rs in (seed_rows or {}).values() for r in rs)
    seeds = (f"{min(seed_rows)}–{max(seed_rows)}" if seed_rows else "(none)")
    counts = {v: sum(row["verdict"] == v for row in rows) for v in VERDICTS}
    stable = stability(seed_rows) if seed_rows else None
    parts = [INTRO.format(seconds=seconds, seeds=seeds, fast_seconds=fast_seconds),
             f"{len(rows)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".",
             ""]
    if mutants:
        parts += [f"Mutation score: {mutants[0]} of {mutants[1]} mutants refuted "
                  f"({100 * mutants[0] / max(mutants[1], 1):.0f} %): wrong claims and tightened "
                  "corrections that the evidence must reject (`tests/test_theory_mutants.py`).",
                  ""]
    parts += [summary_table(rows, stable), ""]
    for paper in PAPERS:
        paper_rows = [row for row in rows if row["paper"] == paper]
        if not paper_rows:
            continue
        parts.append(f"## `{paper}.md`\n")
        for row in paper_rows:
            parts.append(_section(row, (plots or {}).get(row["id"])))
    return "\n".join(parts).rstrip() + "\n"


def _nature(row: dict) -> str:
    c = CLAIMS.get(row["id"])
    return c.nature if c is not None else "mathematics"


def _section(row: dict, plot: str | None) -> str:
    out = [f"### `{row['id']}`: {row['verdict']}", ""]
    if row["verdict"] == "false":
        ev = row["evidence"]
        verified = "verified" if row["corrected_verified"] else "NOT verified"
        check = (f"worst excess {_num(ev.get('corrected_worst_violation'))} against a "
                 f"tolerance of {_num(ev['tolerance'])}")
        out += [f"> **Paper ({NATURE[_nature(row)]}).** {row['statement']}  ",
                f"> **Counterexample.** {_inline(row['counterexample'])}  ",
                f"> **Corrected ({verified}; {check}).** "
                f"{row['corrected'] or 'no corrected statement is offered'}", ""]
    else:
        out += [f"**Statement.** {row['statement']}", ""]
    out += [f"**Reading tested.** {row['reading']}", ""]
    if row.get("claimed"):
        out += [f"**Claimed quantities** (parameters of the check): {_inline(row['claimed'])}",
                ""]
    if row.get("conditions"):
        out += [f"**Conditions.** {row['conditions']}", ""]
    out += ["**Evidence.**", "", _evidence_tables(row["evidence"]), ""]
    if plot:
        out += [f"![{row['id']}]({plot})", "", _slopes_caption(row["evidence"]), ""]
    return "\n".join(out)


def _slopes_caption(evidence: dict) -> str:
    """One line per plotted curve: its least-squares log-log slope next to the claimed
    (and corrected) one."""
    lines = []
    for curves in loglog_panels(evidence):
        for c in curves:
            predicted = ", ".join(f"{name} {_slope(c[f'{name}_slope'])}"
                                  for name in ("claimed", "corrected")
                                  if c[f"{name}_slope"] is not None)
            lines.append(f"*{c['ylabel']} vs {c['xlabel']}, {c['label']}*: fitted slope "
                         f"{_slope(loglog_slope(c['x'], c['y']))}"
                         + (f" ({predicted})" if predicted else ""))
    return "  \n".join(lines)


def _slope(x: float) -> str:
    """A slope to 3 decimals (a fitted 1e-16 reads as 0)."""
    return f"{round(x, 3) + 0.0:g}"


def _num(x) -> str:
    """A number rounded for reading (4 significant digits), anything else as JSON."""
    if isinstance(x, bool) or x is None:
        return json.dumps(x)
    if isinstance(x, int):
        return f"{x:,}" if abs(x) >= 10_000 else str(x)
    if isinstance(x, float):
        return "0" if x == 0 else f"{x:.4g}"
    if isinstance(x, str):
        return x
    return json.dumps(x, ensure_ascii=False)


def _inline(d) -> str:
    """``key = value`` pairs with rounded numbers (lists shortened)."""
    if not isinstance(d, dict):
        return _num(d)
    return ", ".join(f"{k} = {_short(v)}" for k, v in d.items())


def _short(v) -> str:
    if isinstance(v, list):
        shown = ", ".join(_short(x) for x in v[:6])
        return f"[{shown}{', …' if len(v) > 6 else ''}]"
    if isinstance(v, dict):
        return "{" + _inline(v) + "}"
    return _num(v)


def _evidence_tables(evidence: dict) -> str:
    """Scalars in one two-column table; each list of dicts (a sweep) as a table of its own,
    at most :data:`MAX_TABLE_ROWS` rows; the log-log sweep is drawn, not tabled."""
    scalars, tables = [], []
    for key, value in evidence.items():
        if key == "loglog":
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append((key, value))
        else:
            scalars.append((key, value))
    out = []
    if scalars:
        out += ["| quantity | value |", "|---|---|"]
        out += [f"| {k} | {_short(v)} |" for k, v in scalars]
    for key, value in tables:
        columns = list(dict.fromkeys(c for v in value for c in v))
        out += ["", f"*{key}*" + (f" (first {MAX_TABLE_ROWS} of {len(value)})"
                                   if len(value) > MAX_TABLE_ROWS else ""), "",
                "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        out += ["| " + " | ".join(_short(v.get(c, "")) for c in columns) + " |"
                for v in value[:MAX_TABLE_ROWS]]
    return "\n".join(out)


def loglog_panels(evidence: dict) -> list[list[dict]]:
    """The curves of ``evidence["loglog"]`` grouped into panels by their axes, in order."""
    curves = evidence.get("loglog") or []
    panels: dict[tuple, list] = {}
    for curve in [curves] if isinstance(curves, dict) else curves:
        panels.setdefault((curve["xlabel"], curve["ylabel"]), []).append(curve)
    return list(panels.values())


def write_plots(rows: list[dict], folder: Path, relative_to: Path) -> dict[str, str]:
    """One PNG per claim with a log-log sweep: per curve, the measured points, and lines of
    the claimed (dashed) and corrected (dotted) slope through the curve's last point, one
    panel per pair of axes. Returns claim id → path of the image relative to
    ``relative_to`` (the page's folder). Needs matplotlib (bench extra)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import NullFormatter

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for row in rows:
        panels = loglog_panels(row["evidence"])
        if not panels:
            continue
        ncols = min(len(panels), 3)
        nrows = -(-len(panels) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), dpi=110,
                                 squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, curves in zip(axes.flat, panels):
            for colour, curve in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"],
                                     curves):
                x, y = np.array(curve["x"]), np.array(curve["y"])
                ax.loglog(x, y, "o-", color=colour, label=curve["label"])
                for slope, style, name in ((curve["claimed_slope"], "--", "claimed"),
                                           (curve["corrected_slope"], ":", "corrected")):
                    if slope is not None:
                        ax.loglog(x, y[-1] * (x / x[-1]) ** slope, style, color=colour,
                                  alpha=0.7, label=f"{name}: slope {slope:.3g}")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap
            ax.set_xlabel(curves[0]["xlabel"])
            ax.set_ylabel(curves[0]["ylabel"])
            ax.legend(fontsize=7)
        fig.suptitle(row["id"], fontsize=9)
        fig.tight_layout()
        path = folder / (row["id"].replace("/", "__") + ".png")
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
        out[row["id"]] = str(path.relative_to(relative_to))
    return out


def write_page(path, rows: list[dict]) -> None:
    """Write the errata page for the full ``rows`` to ``path``: fast runs at every seed of
    :data:`~.registry.SEEDS` for the stability column, every mutant for the mutation
    score, plots into ``theory/`` beside it (none when matplotlib is not installed)."""
    from .registry import SEEDS, run_claim
    path = Path(path)
    seed_rows = {seed: [run_claim(row["id"], seed, fast=True) for row in rows]
                 for seed in SEEDS}
    try:
        plots = write_plots(rows, path.parent / "theory", path.parent)
    except ImportError:
        plots = {}
    mutants = mutation_score([row["id"] for row in rows])
    path.write_text(markdown(rows, seed_rows, plots, mutants))


def read_summary(text: str) -> list[tuple[str, str, str]]:
    """``(id, verdict, corrected?)`` from the summary table of a page written by
    :func:`markdown` (the verdict without its "(false in …)" gloss)."""
    out = []
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out.append((cells[0].strip("`"), cells[1].split(" (")[0], cells[2]))
    return out
