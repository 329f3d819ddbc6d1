"""Pickling and ``copy.deepcopy`` on every index kind (issue 17): multiprocessing and Dask
send indexes between processes, as they do FAISS's and hnswlib's.

A copy answers every search as the original does, is independent of it (adding to one
leaves the other as it was), and carries no lock or scratch buffer of the original's
process (those are made afresh, :attr:`~retgen_ref.index.base.Index._transient`).
"""

from __future__ import annotations

import copy
import pickle
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import pytest

from index_kinds import KINDS, build, data

COPIES = {"pickle": lambda index: pickle.loads(pickle.dumps(index)),
          "deepcopy": copy.deepcopy}


def _filled(kind, tmp_path):
    index = build(kind, tmp_path)
    index.add(data(600, seed=1))
    index.search(data(5, seed=2), 3)  # fill scratch pools and lazy structures first
    return index


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("kind", KINDS)
def test_a_copy_searches_like_the_original_and_is_independent(kind, how, tmp_path):
    index = _filled(kind, tmp_path)
    xq = data(20, seed=3)
    D, I = index.search(xq, 10)
    other = COPIES[how](index)
    assert type(other) is type(index) and other.ntotal == index.ntotal
    D2, I2 = other.search(xq, 10)
    assert np.array_equal(I, I2) and np.array_equal(D, D2)
    assert other._lock is not index._lock
    if kind == "sharded":   # a store is a folder: a copy is a handle on the same folder
        return
    other.add(data(50, seed=4))
    assert other.ntotal == index.ntotal + 50
    D3, I3 = index.search(xq, 10)
    assert np.array_equal(I, I3) and np.array_equal(D, D3)


def _search_in_child(index, xq):
    return index.search(xq, 10)


@pytest.mark.parametrize("kind", ["hnsw", "lsh"])
def test_an_index_sent_to_another_process_answers_there(kind, tmp_path):
    """The two kinds that held a plain lock (``cannot pickle '_thread.lock'``)."""
    index = _filled(kind, tmp_path)
    xq = data(20, seed=3)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        D, I = pool.submit(_search_in_child, index, xq).result(timeout=120)
    De, Ie = index.search(xq, 10)
    assert np.array_equal(I, Ie) and np.array_equal(D, De)
