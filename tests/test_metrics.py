"""Metrics with hand-derived expected values (RecBole style)."""

import math

import numpy as np
import pytest

from llmrec.metrics import (
    bootstrap_ci,
    mrr_at_k,
    mrr_list,
    ndcg_at_k,
    ndcg_list,
    ranks_from_scores,
    recall_at_k,
    recall_list,
    summarize,
    target_rank,
)


def test_target_rank_ties_count_against_the_target():
    assert target_rank([0.1, 0.5, 0.3, 0.5], 1) == 1  # one other item ties at 0.5
    assert target_rank([0.1, 0.5, 0.3, 0.4], 1) == 0
    assert target_rank([1.0, 1.0, 1.0, 1.0], 0) == 3  # a constant scorer ranks the target last
    assert target_rank([0.9, 0.5, 0.3], 2, masked=[0]) == 1  # masked history item does not count
    with pytest.raises(ValueError):
        target_rank([0.9, 0.5], 0, masked=[0])


def test_constant_scorer_gets_zero():
    ranks = ranks_from_scores(np.ones((3, 30)), np.array([0, 5, 29]))
    assert ranks.tolist() == [29, 29, 29]
    assert summarize(ranks)["NDCG@20"] == 0.0 and summarize(ranks)["Recall@20"] == 0.0


def test_vectorised_ranks_equal_the_scalar_definition():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(40, 12)).astype(float)  # many ties
    targets = rng.integers(0, 12, size=40)
    masked = [[int(j) for j in rng.choice(12, 3, replace=False) if j != t] for t in targets]
    got = ranks_from_scores(scores, targets, masked)
    want = [target_rank(scores[b], int(targets[b]), masked[b]) for b in range(40)]
    assert got.tolist() == want


def test_masked_minus_inf_target_ties():
    # a target scored -inf ranks below every unmasked item but masked items never count
    r = ranks_from_scores(np.array([[0.0, -np.inf, 1.0, 2.0]]), np.array([1]), [[3]])
    assert r.tolist() == [2] == [target_rank([0.0, -np.inf, 1.0, 2.0], 1, [3])]


def test_single_target_values():
    ranks = np.array([0, 1, 2, 9, 10])
    assert recall_at_k(ranks, 10).tolist() == [1, 1, 1, 1, 0]
    assert recall_at_k(ranks, 1).tolist() == [1, 0, 0, 0, 0]
    assert ndcg_at_k(ranks, 10) == pytest.approx([1.0, 1 / math.log2(3), 0.5, 1 / math.log2(11), 0.0])
    assert ndcg_at_k(ranks, 10)[1] == pytest.approx(0.6309298)
    assert mrr_at_k(ranks, 5) == pytest.approx([1.0, 0.5, 1 / 3, 0.0, 0.0])
    s = summarize(ranks, ks=(10,))
    assert s["Recall@10"] == pytest.approx(0.8)
    assert s["MRR@10"] == pytest.approx((1 + 0.5 + 1 / 3 + 0.1) / 5)


def test_list_metrics_with_several_relevant_items():
    ranked = ["a", "b", "c", "d"]
    assert recall_list(ranked, {"c", "z"}, 2) == 0.0
    assert recall_list(ranked, {"c", "z"}, 3) == 0.5
    assert recall_list(ranked, {"b", "c", "d"}, 2) == 0.5  # 1 hit / min(3, 2)
    # DCG = 1/log2(3) + 1/log2(4) = 1.130930; IDCG over 2 = 1 + 1/log2(3) = 1.630930
    assert ndcg_list(ranked, {"b", "c"}, 3) == pytest.approx(0.693426, abs=1e-6)
    assert ndcg_list(ranked, {"a"}, 1) == 1.0
    # IDCG over min(|rel| = 3, K = 2) positions: DCG 1/log2(3) / (1 + 1/log2(3))
    assert ndcg_list(ranked, {"b", "x", "y"}, 2) == pytest.approx(0.386853, abs=1e-6)
    assert mrr_list(ranked, {"c", "d"}, 4) == pytest.approx(1 / 3)
    assert mrr_list(ranked, {"d"}, 3) == 0.0


def test_single_target_metrics_equal_list_metrics():
    rng = np.random.default_rng(1)
    for _ in range(30):
        scores = rng.normal(size=25)
        t = int(rng.integers(0, 25))
        ranked = list(np.argsort(-scores, kind="stable"))
        r = np.array([target_rank(scores, t)])
        for k in (1, 5, 10, 20):
            assert recall_at_k(r, k)[0] == recall_list(ranked, {t}, k)
            assert ndcg_at_k(r, k)[0] == pytest.approx(ndcg_list(ranked, {t}, k))
            assert mrr_at_k(r, k)[0] == pytest.approx(mrr_list(ranked, {t}, k))


def test_bootstrap_interval():
    assert bootstrap_ci(np.full(20, 0.25), 100) == (0.25, 0.25)
    v = np.r_[np.ones(50), np.zeros(50)]
    lo, hi = bootstrap_ci(v, 1000, seed=0)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.2, abs=0.05)  # ~ 2 * 1.96 * 0.05
    assert bootstrap_ci(v, 1000, seed=0) == (lo, hi)  # seeded


def test_paired_difference_interval():
    from llmrec.metrics import paired_diff_ci

    a = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    d, lo, hi = paired_diff_ci(a, a)
    assert (d, lo, hi) == (0.0, 0.0, 0.0)  # identical systems: no difference in any resample
    b = a - 0.25
    d, lo, hi = paired_diff_ci(a, b)
    assert d == lo == hi == 0.25  # a constant per-user gain: every resample has the same mean
    d, lo, hi = paired_diff_ci(a, np.zeros(6))
    assert d == 4 / 6 and 0 <= lo <= d <= hi <= 1
    with pytest.raises(ValueError, match="same users"):
        paired_diff_ci(a, a[:3])
