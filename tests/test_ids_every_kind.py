"""Ids and removal behave alike on every index kind (issue 17, point 1): vectors stored
under ids of one's own, some removed, are found, reconstructed and numbered on the same
way whatever the kind."""

from __future__ import annotations

import numpy as np
import pytest

from index_kinds import KINDS, build, data


@pytest.mark.parametrize("kind", KINDS)
def test_own_ids_and_removals_on_every_kind(kind, tmp_path):
    x = data(310, seed=4)
    index = build(kind, tmp_path, x)
    ids = 3 * np.arange(300) + 7
    index.add_with_ids(x[:300], ids)
    assert index.remove_ids(np.r_[ids[::4], 1, 2]) == 75  # 1 and 2 were never stored
    live = np.setdiff1d(ids, ids[::4])
    assert index.ntotal == 225
    knobs = {"nprobe": 8} if "nprobe" in index._checked_knobs({}) else {}
    D, I = index.search(x[:300], 5, **knobs)
    assert np.isin(I[I >= 0], live).all()  # nothing removed, nothing unknown
    found_self = I[:, 0] == ids
    assert found_self[np.isin(ids, live)].mean() > 0.9 and not found_self[::4].any()
    with pytest.raises(ValueError, match=f"id {ids[4]} is not in this"):
        index.reconstruct(int(ids[4]))
    assert index.reconstruct_batch(live[:3]).shape == (3, 8)
    _, I = index.search(x[:300], 3, ids=live[::2], **knobs)
    assert np.isin(I[I >= 0], live[::2]).all()
    index.add(x[300:])  # the largest id 904 is still stored: every kind numbers on from it
    assert index.reconstruct_batch(np.arange(905, 915)).shape == (10, 8)
    with pytest.raises(ValueError, match="id 915 is not in this"):
        index.reconstruct(915)
