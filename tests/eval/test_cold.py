"""The item cold-start protocol on a real ml-100k split (first 60 users)."""

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out
from llmrec.eval import cold


@pytest.fixture(scope="module")
def split(ml100k):
    return leave_one_out(ml100k, max_users=60)


def test_cold_items_are_a_seeded_share(split):
    c = cold.cold_items(split, 0.1, 0)
    assert len(c) == round(0.1 * split.n_items) and list(c) == sorted(set(c.tolist()))
    assert np.array_equal(c, cold.cold_items(split, 0.1, 0)) and not np.array_equal(c, cold.cold_items(split, 0.1, 1))
    with pytest.raises(ValueError, match="between 0 and 1"):
        cold.cold_items(split, 1.0)


def test_no_training_interaction_touches_a_cold_item(split):
    c = cold.cold_items(split, 0.2, 3)
    warm = cold.warm_split(split, c)
    cs = set(c.tolist())
    assert all(not cs & set(warm.train[u]) for u in warm.users)
    assert warm.test == split.test and warm.valid == split.valid and warm.users == split.users
    lost = sum(len(split.train[u]) - len(warm.train[u]) for u in split.users)
    assert lost > 0 and warm.n_interactions == split.n_interactions - lost
    users = cold.cold_users(split, c, "test")
    assert users and all(split.test[u] in cs for u in users)
    assert set(users) == {u for u in split.users if split.test[u] in cs}
    for u in split.users:
        h = cold.history(split, u, "test", c)
        assert not cs & set(h) and split.test[u] not in h
        assert h == [i for i in split.train[u] + [split.valid[u]] if i not in cs]
