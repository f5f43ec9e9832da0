"""The harness's position-bias figures (llmrec.eval.llm_systems.position_bias) on scores with a known
position prior and a known item preference."""

import numpy as np
import pytest

from llmrec.eval.llm_systems import position_bias


def _orders(scores, n=8, users=30, seed=0):
    """Label log-probabilities of ``users`` users whose candidates (items 0..n-1 in the retriever's
    order) are shown in the retriever's order, reversed and shuffled; ``scores(shown)`` gives [n]."""
    rng = np.random.default_rng(seed)
    test, rev, shu, perms = {}, {}, {}, {}
    for u in map(str, range(users)):
        perms[u] = rng.permutation(n)
        test[u], rev[u], shu[u] = scores(np.arange(n)), scores(np.arange(n)[::-1]), scores(perms[u])
    return test, rev, shu, perms


PRIOR = -np.linspace(0.5, 4.0, 8)  # label A is the most likely answer, whatever it shows


def test_pure_position_prior_always_picks_a_and_carries_no_item_order():
    test, rev, shu, perms = _orders(lambda shown: PRIOR.copy())
    b = position_bias(test, rev, shu, perms)
    assert b["users"] == 30 and b["top_is_A"] == {"retriever": 1.0, "reversed": 1.0, "shuffled": 1.0}
    assert b["kendall_tau_reversed"] == pytest.approx(-1.0)  # the ranking follows the labels, not the items
    assert abs(b["kendall_tau_shuffled"]) < 0.2


def test_calibration_removes_the_prior_and_keeps_the_item_preference():
    value = np.linspace(1.0, 0.0, 8) * 0.3  # prefers the retriever's first items, weaker than the prior
    test, rev, shu, perms = _orders(lambda shown: PRIOR + value[shown])
    raw = position_bias(test, rev, shu, perms)
    assert raw["top_is_A"]["shuffled"] == 1.0 and raw["kendall_tau_shuffled"] < 0.9
    cal = position_bias(test, rev, shu, perms, PRIOR)
    assert cal["kendall_tau_shuffled"] == pytest.approx(1.0) and cal["kendall_tau_reversed"] == pytest.approx(1.0)
    assert cal["top_is_A"]["retriever"] == 1.0 and cal["top_is_A"]["reversed"] == 0.0


def test_no_users():
    b = position_bias({}, {}, {}, {})
    assert b["users"] == 0 and b["kendall_tau_shuffled"] is None and b["top_is_A"]["retriever"] is None
