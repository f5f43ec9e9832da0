"""The sampled protocol's paired differences against the retriever alone (llmrec.eval.report), with
values derived by hand."""

import math

import pytest

from llmrec.eval.report import markdown, paired_sampled


def test_paired_sampled_differences_by_hand():
    # Four users. Retriever: ranks 0, 0, 1, 3 -> HR@1 0.5. LLM: 0, 1, 0, 0 -> HR@1 0.75 (diff +0.25).
    # NDCG@5 per user: rank r -> 1 / log2(r + 2): retriever 1, 1, 1/log2(3), 1/log2(5);
    # LLM 1, 1/log2(3), 1, 1 -> differences 0, 1/log2(3) - 1, 1 - 1/log2(3), 1 - 1/log2(5).
    results = {"fusion": {"sampled": {"ranks": [0, 0, 1, 3]}},
               "fusion+trained": {"sampled": {"ranks": [0, 1, 0, 0]}},
               "fusion+trained+fused": {"full": {"ranks": [0, 0, 0, 0]}},   # no sampled ranks: left out
               "fusion+other": {"sampled": {"ranks": [0, 0]}}}               # other users: left out
    d = paired_sampled(results, "fusion", ["fusion+trained", "fusion+trained+fused", "fusion+other"], 200, 0)
    assert set(d) == {"fusion+trained"}
    hr, nd = d["fusion+trained"]["HR@1"], d["fusion+trained"]["NDCG@5"]
    assert hr[0] == pytest.approx(0.25)
    assert nd[0] == pytest.approx((1 - 1 / math.log2(5)) / 4)
    for diff, lo, hi in (hr, nd):
        assert lo <= diff <= hi
    assert -1 <= hr[1] and hr[2] <= 1 and hr[1] < hr[2]   # the per-user differences vary: a real interval


def test_paired_sampled_constant_difference_and_no_base():
    # Every user: the LLM hits, the retriever does not -> the difference is 1 in every resample.
    results = {"fusion": {"sampled": {"ranks": [2, 5, 1]}}, "fusion+zero-shot": {"sampled": {"ranks": [0, 0, 0]}}}
    assert paired_sampled(results, "fusion", ["fusion+zero-shot"], 100, 1)["fusion+zero-shot"]["HR@1"] == [1.0, 1.0, 1.0]
    assert paired_sampled({"fusion": {"full": {"ranks": [0]}}, "x": {"sampled": {"ranks": [0]}}}, "fusion", ["x"]) == {}


def test_report_shows_the_sampled_paired_table():
    metrics = {"dataset": {"name": "d", "users": 2, "items": 3, "interactions": 4, "fingerprint": "f"},
               "protocol": {"sampled": {"candidates": 20}}, "results": {}, "intervals": {}, "details": {},
               "sampled": {"fusion": {"HR@1": 0.5, "HR@1_ci": [0.0, 1.0], "HR@1_valid_only": 0.5, "NDCG@5": 0.6,
                                      "valid_ratio": 1.0}},
               "vs_retriever": {"retriever": "fusion", "systems": {},
                                "sampled": {"fusion+trained": {"HR@1": [0.25, -0.1, 0.6], "NDCG@5": [0.1, 0.0, 0.2]}}}}
    text = markdown(metrics)
    assert "| fusion+trained | +0.2500 [-0.1000, +0.6000] | +0.1000 [+0.0000, +0.2000] |" in text
    assert "Δ HR@1 | Δ NDCG@5" in text
