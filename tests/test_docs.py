"""The docs (and the README) are executed: every ```python block runs, and an ```output block right after
it must equal what the block printed. So every number printed in docs/ comes from code.

After editing a chapter, regenerate its output blocks from a real run with
``python tests/test_docs.py docs/01-attention-as-retrieval.md`` (every chapter if no
argument is given); a block that prints and has no output block gets one.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _chapters():
    pages = [*sorted(DOCS.glob("*.md")), DOCS.parent / "README.md"]
    return [p for p in pages if "```python" in p.read_text()]


def doc_blocks(text: str):
    """Yield ``(code, expected_output_or_None)`` for every python block of ``text``."""
    blocks = [(m.group(1), m.group(2)) for m in _BLOCK.finditer(text)]
    for i, (lang, body) in enumerate(blocks):
        if lang != "python":
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        yield body, (following[1] if following and following[0] == "output" else None)


def run_blocks(chapter: Path):
    """Execute the chapter's python blocks in one namespace; yield (code, expected, printed)."""
    namespace: dict = {"__name__": "__docs__"}
    for n, (code, expected) in enumerate(doc_blocks(chapter.read_text()), 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{chapter.name}[block {n}]", "exec"), namespace)
        yield code, expected, out.getvalue().rstrip()


@pytest.mark.parametrize("chapter", _chapters(), ids=lambda p: p.name)
def test_chapter_runs_and_prints_what_it_shows(chapter, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for n, (_, expected, printed) in enumerate(run_blocks(chapter), 1):
        if expected is not None:
            assert printed == expected.rstrip(), f"{chapter.name} block {n} printed:\n{printed}"


def update_outputs(chapter: Path) -> None:
    """Rewrite the chapter's output blocks with what its code prints now."""
    import os
    import tempfile

    text = chapter.read_text()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            results = list(run_blocks(chapter))
        finally:
            os.chdir(cwd)
    pieces, pos = [], 0
    python_blocks = [m for m in _BLOCK.finditer(text) if m.group(1) == "python"]
    for match, (_, expected, printed) in zip(python_blocks, results):
        pieces.append(text[pos:match.end()])
        pos = match.end()
        if expected is not None:  # replace the existing output block
            following = _BLOCK.search(text, pos)
            pieces.append(text[pos:following.start()] + f"```output\n{printed}\n```")
            pos = following.end()
        elif printed:
            pieces.append(f"\n\n```output\n{printed}\n```")
    chapter.write_text("".join(pieces) + text[pos:])


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:] or [str(p) for p in _chapters()]:
        update_outputs(Path(arg).resolve())
        print(f"updated {arg}")


def test_doc_block_parser_pairs_code_with_its_output():
    text = "```python\nprint(1)\n```\n\n```output\n1\n```\n```python\nx = 2\n```\n"
    assert list(doc_blocks(text)) == [("print(1)\n", "1\n"), ("x = 2\n", None)]
