"""The docs are executed: every ```python block runs, and an ```output block right after
it must equal what the block printed. So every number printed in docs/ comes from code."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _chapters():
    return sorted(p for p in DOCS.glob("*.md") if _BLOCK.search(p.read_text()))


def doc_blocks(text: str):
    """Yield ``(code, expected_output_or_None)`` for every python block of ``text``."""
    blocks = [(m.group(1), m.group(2)) for m in _BLOCK.finditer(text)]
    for i, (lang, body) in enumerate(blocks):
        if lang != "python":
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        yield body, (following[1] if following and following[0] == "output" else None)


@pytest.mark.parametrize("chapter", _chapters(), ids=lambda p: p.name)
def test_chapter_runs_and_prints_what_it_shows(chapter, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for n, (code, expected) in enumerate(doc_blocks(chapter.read_text()), 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{chapter.name}[block {n}]", "exec"), namespace)
        if expected is not None:
            got = out.getvalue().rstrip()
            assert got == expected.rstrip(), f"{chapter.name} block {n} printed:\n{got}"


def test_doc_block_parser_pairs_code_with_its_output():
    text = "```python\nprint(1)\n```\n\n```output\n1\n```\n```python\nx = 2\n```\n"
    assert list(doc_blocks(text)) == [("print(1)\n", "1\n"), ("x = 2\n", None)]
