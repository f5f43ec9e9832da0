"""5-core filtering and the leave-one-out split, on the real data sets."""

from collections import Counter

import pytest

from llmrec.config import Config
from llmrec.data import load_ml100k, load_ml_latest_small
from llmrec.data.splits import kcore, leave_one_out
from llmrec.data.types import Interaction


@pytest.fixture(scope="module")
def mls():
    return load_ml_latest_small(Config().ml_latest_small_dir)


def test_ml_latest_small_counts_match_llamarec(mls):
    s = leave_one_out(mls)
    assert s.stats() == {"users": 610, "items": 3_650, "interactions": 90_274}
    assert sum(len(t) + 2 for t in s.train.values()) == 90_274


def test_ml100k_counts():
    cfg = Config()
    s = leave_one_out(load_ml100k(cfg.downloads_dir(), "recbole"))
    assert s.stats() == {"users": 943, "items": 1_349, "interactions": 99_287}


def test_kcore_is_a_fixed_point(mls):
    rows = kcore(mls.interactions, 5, 5)
    assert min(Counter(r.user for r in rows).values()) >= 5
    assert min(Counter(r.item for r in rows).values()) >= 5
    assert len(kcore(rows, 5, 5)) == len(rows)


def test_kcore_iterates():
    # c has 1 row -> dropped; then u3 has 1 row -> dropped; then a, b, u1, u2 all have 2.
    rows = [Interaction(u, i, 0) for u, i in [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"),
                                              ("u3", "a"), ("u3", "c")]]
    out = kcore(rows, 2, 2)
    assert [(r.user, r.item) for r in out] == [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]


def test_order_is_timestamp_then_item_id(mls):
    s = leave_one_out(mls)
    hist = mls.histories()
    for u in s.users[:50]:
        full = [s.item_ids[i] for i in s.train[u]] + [s.item_ids[s.valid[u]], s.item_ids[s.test[u]]]
        kept = set(s.item_ids)
        assert full == [i for i in hist[u] if i in kept]


def test_max_users_subsets_before_filtering(mls):
    s = leave_one_out(mls, max_users=50)
    assert len(s.users) <= 50 and all(int(u) <= 50 for u in s.users)
