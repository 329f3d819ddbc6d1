"""No internal tracker references in what users read: "issue 8", "(issue 7)", "issue #17"
mean nothing to a reader of a clone. Checked: the chapters in docs/ and the README, the
help of every ``retgen-ref`` command, and the docstrings and string literals (messages) of
the package, which ``help()`` and errors show. Comments and tests are not user-facing and
are not checked.

docs/benchmarks.md is written by the scripts in benchmarks/ (``replace_doc_section``): a
reference there is fixed in the script that prints it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from retgen_ref.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
STALE = re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE)


def _stale_lines(text: str) -> list[str]:
    return [f"line {n}: {line.strip()[:120]}" for n, line in enumerate(text.splitlines(), 1)
            if STALE.search(line)]


def test_the_pattern_finds_what_it_should():
    for text in ("`verify` (issue 8) will check", "(issue 7)", "see issue #17", "Issue 7 targets",
                 "issues 7 and 8"):
        assert STALE.search(text), text
    for text in ("no issue with this", "an issue of scale: 8 bits", "tissue 3"):
        assert not STALE.search(text), text


@pytest.mark.parametrize("page", sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_have_no_stale_references(page):
    assert _stale_lines(page.read_text()) == []


def _help_texts():
    parser = build_parser()
    yield "retgen-ref", parser.format_help()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for name, command in sub.choices.items():
        yield f"retgen-ref {name}", command.format_help()


def test_command_help_has_no_stale_references():
    found = {name: _stale_lines(text) for name, text in _help_texts()}
    assert len(found) > 5 and {name: lines for name, lines in found.items() if lines} == {}


def _package_strings(path: Path):
    """(line, text) of every string literal of a module: docstrings and messages."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_package_docstrings_and_messages_have_no_stale_references():
    files = sorted((ROOT / "retgen_ref").rglob("*.py"))
    assert len(files) > 20
    found = [f"{path.relative_to(ROOT)}:{line}: {STALE.search(text)[0]!r}"
             for path in files for line, text in _package_strings(path) if STALE.search(text)]
    assert found == []
