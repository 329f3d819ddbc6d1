"""Shared pieces of the benchmark scripts: timing, peers' thread control, report writing.

Timing follows DESIGN.md: one warm-up call is excluded (it pays for JIT compilation),
then the call is repeated until ``min_seconds`` have passed (at least ``min_repeats``
times) and the median is reported.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from retgen_ref import num_threads

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BENCH_DOC = ROOT / "docs" / "benchmarks.md"


def median_seconds(fn, min_seconds: float = 1.0, min_repeats: int = 3) -> float:
    """Median wall time of ``fn()`` after one excluded warm-up call."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@contextmanager
def threads(n: int):
    """``n`` threads for our Numba kernels, every BLAS, and FAISS's OpenMP pool."""
    try:
        import faiss
    except ImportError:
        faiss = None
    previous = faiss.omp_get_max_threads() if faiss else None
    if faiss:
        faiss.omp_set_num_threads(n)
    try:
        with num_threads(n):
            yield
    finally:
        if faiss:
            faiss.omp_set_num_threads(previous)


def machine() -> dict:
    import numba

    info = {"python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "cpu": _cpu_model(),
            "cores": numba.config.NUMBA_NUM_THREADS}
    try:
        import faiss
        info["faiss"] = faiss.__version__
    except ImportError:
        pass
    return info


def machine_line(info: dict) -> str:
    """One readable line for the docs: cpu, cores and library versions."""
    versions = ", ".join(f"{k} {info[k]}" for k in ("python", "numpy", "numba", "faiss")
                         if k in info)
    return f'{info["cpu"]}, {info["cores"]} cores; {versions}'


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def replace_doc_section(name: str, markdown: str, doc: Path = BENCH_DOC) -> None:
    """Put ``markdown`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in
    ``doc`` (docs/benchmarks.md by default), appending the section if it is not there yet."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
