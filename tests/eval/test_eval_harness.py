"""A small REAL run of the harness (eval/ci-small.yaml: 50 users of ml-latest-small)."""

import json
from pathlib import Path

from llmrec.config import Config
from llmrec.eval import runner
from llmrec.eval.__main__ import eval_main as main
from llmrec.retrieval.sasrec_retriever import load_ensemble

REPO = Path(__file__).resolve().parents[2]


def test_ci_config_runs_writes_report_and_resumes(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([str(REPO / "eval" / "ci-small.yaml"), "--out", str(out), "--home", str(tmp_path / "home")])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"]["name"] == "ml-latest-small" and m["dataset"]["users"] == 50
    assert set(m["dataset"]) >= {"name", "users", "items", "interactions"}
    assert m["protocol"]["full"]["ranker"]["candidates"] == 20
    for system in ("most-popular", "item-knn", "text-embedding", "ease", "sasrec", "sasrec-ensemble", "fusion"):
        r = m["results"][system]
        assert {"Recall@10", "NDCG@10", "MRR@10", "Recall@1", "NDCG@20"} <= set(r)
        lo, hi = m["intervals"][system]["NDCG@10"]
        assert 0.0 <= lo <= r["NDCG@10"] <= hi <= 1.0
        assert 0.0 <= m["sampled"][system]["HR@1"] <= 1.0 and m["sampled"][system]["valid_ratio"] == 1.0
    assert "| sasrec |" in (out / "report.md").read_text()
    assert (out / "metrics_at10.png").stat().st_size > 0 and (out / "recall_vs_k.png").stat().st_size > 0
    assert m["details"]["sasrec-ensemble"]["seeds"] == [0, 1]
    assert m["details"]["sasrec"]["selected"].startswith("sasrec[seed=")
    assert m["details"]["sasrec[seed=0]"]["stopped"] and m["details"]["sasrec[seed=0]"]["cap_hit"] is False
    fusion = m["details"]["fusion"]
    assert fusion["members"] == ["sasrec-ensemble", "ease", "item-knn"] and abs(sum(fusion["weights"]) - 1) < 1e-9
    assert fusion["valid_ndcg10"] == max(v for _, v in fusion["grid"])
    diff = m["vs_reference"]["systems"]["fusion"]["NDCG@10"]
    assert m["vs_reference"]["reference"] == "sasrec-ensemble" and diff[1] <= diff[0] <= diff[2]
    assert "sasrec-ensemble" not in m["vs_reference"]["systems"] and "Paired difference" in (out / "report.md").read_text()
    # the trained retriever is saved under home, for the Recommender
    assert (tmp_path / "home" / "retrievers" / "ml-latest-small-u50" / "sasrec.pt").exists()
    ens = load_ensemble(tmp_path / "home" / "retrievers" / "ml-latest-small-u50")
    assert len(ens.members) == 2 and ens.item_vectors().shape[1] == 2 * ens.members[0].dim
    # resume: a second run reuses every part and gives the same numbers
    capsys.readouterr()
    assert main([str(REPO / "eval" / "ci-small.yaml"), "--out", str(out), "--home", str(tmp_path / "home")]) == 0
    assert "resumed" in capsys.readouterr().err
    m2 = json.loads((out / "metrics.json").read_text())
    assert m2["results"] == m["results"]


def test_retraining_reuses_a_matching_checkpoint(tmp_path):
    cfg = Config.load(REPO / "eval" / "ci-small.yaml", overrides={"home": tmp_path, "eval_systems": ["sasrec"],
                                                                   "eval_protocols": ["full"]})
    a = runner.run(cfg, tmp_path / "a")
    b = runner.run(cfg, tmp_path / "b")  # new output folder, same checkpoint: no training, same result
    assert a["results"]["sasrec"] == b["results"]["sasrec"]


class ReverseRanker:
    """A deterministic ranker that reverses the retriever's order (exercises the ranker stage)."""

    name = "reverse"

    def rank(self, user_history_items, candidate_items):
        return [float(i) for i in range(len(candidate_items))]


def reverse_ranker(cfg):
    return ReverseRanker()


def test_ranker_stage_reorders_the_retrievers_top20(tmp_path):
    cfg = Config.load(REPO / "eval" / "ci-small.yaml", overrides={
        "home": tmp_path, "eval_systems": ["item-knn"], "eval_ranker": f"{__name__}:reverse_ranker",
        "eval_ranker_retriever": "item-knn"})
    m = runner.run(cfg, tmp_path / "out")
    base = json.loads((tmp_path / "out" / "parts" / "item-knn.json").read_text())["full"]["ranks"]
    rr = json.loads((tmp_path / "out" / "parts" / "item-knn+reverse.json").read_text())["full"]
    assert rr["called"] == sum(r < 20 for r in base) == rr["valid"]
    assert rr["ranks"] == [19 - r if r < 20 else r for r in base]
    assert m["results"]["item-knn+reverse"]["Recall@20"] == m["results"]["item-knn"]["Recall@20"]
    assert 0 <= m["sampled"]["item-knn+reverse"]["HR@1"] <= 1
