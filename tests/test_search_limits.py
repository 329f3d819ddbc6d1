"""Bounded requests, ids after reset, and searches racing adds, on every index kind.

* ``search(xq, k)`` with ``k`` far beyond ``ntotal`` does the work of ``k = ntotal`` and
  pads (it once built heaps of ``k`` entries: 12 GB and two minutes for ``k = 10⁹`` over
  100 vectors); a result that cannot fit in memory is refused before any work.
* ``reset()`` restarts ids at 0 on every kind (IVF kept counting: a reset-and-re-add
  benchmark then scored recall 0).
* Eight threads searching while a ninth adds: every search returns what the index gives
  sequentially at one of the states the adds pass through, and nothing crashes.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from index_kinds import D_DIM, KINDS, build, data
from retgen_ref import HNSWIndex



@pytest.mark.parametrize("kind", KINDS)
def test_k_beyond_ntotal_does_the_work_of_ntotal_and_pads(kind, tmp_path, monkeypatch):
    index = build(kind, tmp_path)
    x = data(100)
    index.add(x)
    seen = []
    inner = type(index)._search
    monkeypatch.setattr(type(index), "_search", lambda self, xq, k, *args, **knobs:
                        seen.append(k) or inner(self, xq, k, *args, **knobs))
    for nq in (1, 30):
        D, I = index.search(x[:nq], 100_000)
        assert D.shape == I.shape == (nq, 100_000)
        assert (I[:, 100:] == -1).all() and np.isinf(D[:, 100:]).all()
        assert (I[:, 0] >= 0).all()
    assert seen == [100, 100]  # the kernels never saw k = 100,000


@pytest.mark.parametrize("kind", KINDS)
def test_a_result_that_cannot_fit_is_refused_before_any_work(kind, tmp_path, monkeypatch):
    index = build(kind, tmp_path)
    index.add(data(100))
    monkeypatch.setattr(type(index), "_search", lambda *a, **kw: pytest.fail("work started"))
    with pytest.raises(ValueError, match="GiB.*fewer neighbours or search the queries in"):
        index.search(data(10), 10 ** 10)  # 1.2 TB of results


def test_hnsw_beam_wider_than_the_graph_allocates_nothing_more():
    index = HNSWIndex(D_DIM, M=8)
    index.add(data(50))
    index.ef_search = 10 ** 9  # a beam of a billion over 50 nodes: the beam is 50 wide
    D, I = index.search(data(3, seed=1), 5)
    assert (I >= 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_reset_restarts_ids_at_zero(kind, tmp_path):
    x = data(300)
    index = build(kind, tmp_path, x)
    index.add(x[:150])
    index.reset()
    assert index.ntotal == 0
    index.add(x[150:])
    D, I = index.search(x[150:160], 1)
    assert I[:, 0].tolist() == list(range(10))  # the first vectors added after the reset


# -- searches while another thread adds ---------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_eight_searching_threads_and_one_adding_thread(kind, tmp_path):
    """Each concurrent result equals the sequential result at one of the states the index
    passes through (before the adds, after the first, ...): adds run alone, searches see
    a whole state, and nothing crashes."""
    x = data(3000, seed=2)
    batches = np.array_split(x[600:], 6)
    queries = data(64, seed=3)
    reference = build(kind, tmp_path / "reference", x=x)  # the same adds, one by one
    reference.add(x[:600])
    expected = [reference.search(queries, 5)]
    for batch in batches:
        reference.add(batch)
        expected.append(reference.search(queries, 5))

    index = build(kind, tmp_path / "concurrent", x=x)
    index.add(x[:600])
    start = threading.Barrier(9)
    results, errors = [], []

    def search(i):
        start.wait()
        for repeat in range(12):
            try:
                results.append(index.search(queries, 5))
            except Exception as exc:  # noqa: BLE001 - any failure is the test's finding
                errors.append(exc)

    def add():
        start.wait()
        for batch in batches:
            index.add(batch)

    threads = [threading.Thread(target=search, args=(i,)) for i in range(8)]
    threads.append(threading.Thread(target=add))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(results) == 96
    for D, I in results:
        assert any(np.array_equal(I, Ie) and np.array_equal(D, De) for De, Ie in expected)
    assert np.array_equal(index.search(queries, 5)[1], expected[-1][1])
