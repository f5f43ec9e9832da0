"""The harness's modality ablation (``eval_modal``) and its ``cold-items`` protocol on a small REAL configuration: the first 40 users
of ml-100k, item-kNN's top 20 reordered by SmolLM2-135M with text, + poster soft tokens (a projector
trained for one epoch on 24 real posters), + poster captions (the image labels)."""

import dataclasses
import json
from pathlib import Path

import pytest

from llmrec.config import Config
from llmrec.errors import ConfigError
from llmrec.eval import modal_systems, runner

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
USERS = 10


def _cfg(home, store, **kw):
    return Config.load(REPO / "eval" / "ci-small.yaml", overrides={
        "home": home, "dataset": "ml-100k", "ml100k_source": "recbole", "eval_max_users": 40,
        "eval_systems": ["item-knn"], "eval_protocols": ["full", "cold-items"], "eval_cold_share": 0.2, "eval_cold_llm_users": 2, "eval_ranker_retriever": "item-knn",
        "eval_modal": ["text", "image", "caption"], "eval_modal_users": USERS, "eval_modal_store": store,
        "threads": 1, **kw})


def test_ablation_scores_each_variant_and_resumes(tmp_path, base_cfg, poster_store):
    store = poster_store[0].data_dir
    cfg = _cfg(base_cfg.home, store)
    out = tmp_path / "out"
    m = runner.run(cfg, out)
    mod = m["modalities"]
    c = mod["setup"]["content"]
    assert mod["setup"]["users"] == USERS and 0 < c["posters"] <= 24  # those of the 24 in the 40 users' split
    assert 0 < c["captions"] <= c["posters"]  # the labels captioner names what it is confident of
    systems = set(mod["systems"])
    assert systems == {"item-knn"} | {f"item-knn+llm-{v}{s}" for v in ("text", "image", "caption") for s in ("", "+fused")}
    full = json.loads((out / "parts" / "modalities.json").read_text())
    base = full["systems"]["item-knn"]["ranks"]
    assert base == json.loads((out / "parts" / "item-knn.json").read_text())["full"]["ranks"][:USERS]
    called = mod["setup"]["called"]["test"]
    assert 0 < called <= USERS
    for name in systems - {"item-knn"}:
        r = full["systems"][name]["ranks"]
        # Only the users whose target is in the top 20 are reordered, and within the top 20.
        assert [x >= 20 for x in r] == [x >= 20 for x in base]
        assert 0 <= full["systems"].get(name, {}).get("fusion_weight", 0) <= 1
    # The soft tokens and the captions reached the LLM: a prompt with a poster item scores differently.
    lp = {v: json.loads((out / "parts" / f"modal-{v}.json").read_text()) for v in ("text", "image", "caption")}
    # Each cache depends on what its variant shows: the projector's weights for image only.
    assert len(lp["image"]["key"]["content"]["projector"]) == 16 and "projector" not in lp["caption"]["key"]["content"]
    assert lp["text"]["key"]["content"] is None
    lp = {v: {st: d[f"modal-{v} {st}"] for st in ("valid", "test")} for v, d in lp.items()}
    assert lp["text"]["valid"].keys() == lp["image"]["valid"].keys() == lp["caption"]["valid"].keys()
    assert len(lp["text"]["test"]) == called
    assert any(lp["image"][st][u] != lp["text"][st][u] for st in ("valid", "test") for u in lp["text"][st])
    assert any(lp["caption"][st][u] != lp["text"][st][u] for st in ("valid", "test") for u in lp["text"][st])
    s = mod["summary"]
    assert s["all"]["users"] == USERS and s["sparse"]["users"] == sum(full["sparse"])
    assert set(s["all"]["vs_text"]) == {f"item-knn+llm-{v}{x}" for v in ("image", "caption") for x in ("", "+fused")}
    for d in s["all"]["systems"].values():
        assert d["NDCG@10"][1] <= d["NDCG@10"][0] <= d["NDCG@10"][2]
    report = (out / "report.md").read_text()
    assert "## Modality ablation" in report and "## Item cold start" in report
    # The cold-items protocol ran through the harness, with the store's posters as the image system.
    cold = m["cold_items"]
    assert {"item-knn", "text", "image", "text+image"} <= set(cold["systems"]) and cold["test_users"] > 0
    assert cold["systems"]["item-knn"]["recall10"] == 0.0
    sm = cold["sampled"]
    assert sm["users"] == 2 and set(sm["systems"]) == {"text scorer", "LLM, text", "LLM, text + poster soft tokens",
                                                       "LLM, text + poster caption"}
    assert all(0 <= r < 20 for s in sm["systems"].values() for r in s["ranks"])
    assert sm["soft_minus_text"] and sm["caption_minus_text"] and "Caption - text (paired)" in report
    # Resumed: the cached log-probabilities are reused (the cache files are not rewritten).
    stamps = {v: (out / "parts" / f"modal-{v}.json").stat().st_mtime_ns for v in lp}
    m2 = runner.run(cfg, out)
    assert m2["modalities"]["summary"] == s
    assert stamps == {v: (out / "parts" / f"modal-{v}.json").stat().st_mtime_ns for v in lp}


def test_a_missing_store_is_named(tmp_path, base_cfg):
    cfg = _cfg(base_cfg.home, tmp_path / "nowhere", eval_modal=["text", "caption"])
    with pytest.raises(ConfigError, match="eval_modal_store"):
        runner.run(cfg, tmp_path / "out")


def test_bad_variants_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="eval_modal"):
        Config.load(overrides={"eval_modal": ["text", "poster"]})
    with pytest.raises(ConfigError, match="eval_modal"):
        Config.load(overrides={"eval_modal": ["text", "text"]})


def test_each_variant_shows_only_its_content(ml100k):
    from llmrec.rank.verbalizer import rank_prompt

    items = [dataclasses.replace(it, caption="a red poster", transcript="spoken words") for it in ml100k.items[:3]]
    caps = {it.id: "OCR WORDS" for it in items[:2]}
    shown = {}
    for v in ("text", "caption"):
        sc = modal_systems.VerbalizerScorer(None, v, caps)
        shown[v] = [sc._item(it) for it in items]
        text = rank_prompt(shown[v][:1], shown[v][1:])[-1]["content"]
        assert "a red poster" not in text and "spoken words" not in text
        assert ("OCR WORDS" in text) == (v == "caption")
    assert [it.caption for it in shown["caption"]] == ["OCR WORDS", "OCR WORDS", ""]
    with pytest.raises(ConfigError, match="soft tokens"):
        modal_systems.VerbalizerScorer(None, "image")
