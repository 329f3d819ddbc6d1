"""The docs (and the README) are executed: every ```python block runs, and an ```output block right after
it must equal what the block printed. So every number printed in docs/ comes from code.

An output block whose numbers depend on the machine's arithmetic (a local optimum that the
last bits of BLAS decide) says so in its info string, ```` ```output tolerance=0.01 ````:
its text must still be equal, and each number within that absolute tolerance.

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
_BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```[ \t]*$", re.S | re.M)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_TOLERANCE = re.compile(r"tolerance=([0-9.e-]+)")


def _chapters():
    pages = [*sorted(DOCS.glob("*.md")), DOCS.parent / "README.md"]
    return [p for p in pages if "```python" in p.read_text()]


def doc_blocks(text: str):
    """Yield ``(code, expected_output_or_None, tolerance)`` for every python block of
    ``text`` (tolerance 0 unless the output block states one)."""
    blocks = [(m.group(1), m.group(2), m.group(3)) for m in _BLOCK.finditer(text)]
    for i, (lang, _, body) in enumerate(blocks):
        if lang != "python":
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        if following and following[0] == "output":
            tolerance = _TOLERANCE.search(following[1])
            yield body, following[2], float(tolerance[1]) if tolerance else 0.0
        else:
            yield body, None, 0.0


def outputs_agree(printed: str, expected: str, tolerance: float) -> bool:
    """Equal text; with a tolerance, the numbers may differ by up to it."""
    if not tolerance:
        return printed == expected
    split = (_NUMBER.split, _NUMBER.findall)
    (text_p, nums_p), (text_e, nums_e) = ([f(s) for f in split] for s in (printed, expected))
    return (text_p == text_e and len(nums_p) == len(nums_e)
            and all(abs(float(a) - float(b)) <= tolerance for a, b in zip(nums_p, nums_e)))


def run_blocks(chapter: Path):
    """Execute the chapter's python blocks in one namespace; yield (code, expected, printed)."""
    namespace: dict = {"__name__": "__docs__"}
    for n, (code, expected, tolerance) in enumerate(doc_blocks(chapter.read_text()), 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{chapter.name}[block {n}]", "exec"), namespace)
        yield code, expected, tolerance, out.getvalue().rstrip()


@pytest.mark.parametrize("chapter", _chapters(), ids=lambda p: p.name)
def test_chapter_runs_and_prints_what_it_shows(chapter, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for n, (_, expected, tolerance, printed) in enumerate(run_blocks(chapter), 1):
        if expected is not None:
            assert outputs_agree(printed, expected.rstrip(), tolerance), \
                f"{chapter.name} block {n} printed:\n{printed}"


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
    for match, (_, expected, _, printed) in zip(python_blocks, results):
        pieces.append(text[pos:match.end()])
        pos = match.end()
        if expected is not None:  # replace the existing output block
            following = _BLOCK.search(text, pos)
            pieces.append(text[pos:following.start()]
                          + f"```output{following.group(2)}\n{printed}\n```")
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
    assert list(doc_blocks(text)) == [("print(1)\n", "1\n", 0.0), ("x = 2\n", None, 0.0)]
    tagged = "```python\nprint(1)\n```\n```output tolerance=0.01\n1\n```\n"
    assert list(doc_blocks(tagged)) == [("print(1)\n", "1\n", 0.01)]


def test_a_tolerance_admits_close_numbers_and_nothing_else():
    assert outputs_agree("recall 0.347", "recall 0.343", 0.01)
    assert not outputs_agree("recall 0.347", "recall 0.343", 0.0)
    assert not outputs_agree("recall 0.367", "recall 0.343", 0.01)  # too far
    assert not outputs_agree("recall@10 0.347", "recall@5 0.347", 0.01)  # 10 vs 5: text
    assert not outputs_agree("precision 0.347", "recall 0.347", 0.01)
    assert not outputs_agree("recall 0.347 0.1", "recall 0.347", 0.01)
