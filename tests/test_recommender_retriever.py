"""The store's retriever: item-kNN by default, `llmrec train-retriever`, staleness, foreign retrievers."""

import json
import shutil
import warnings

import numpy as np
import pytest

from llmrec.cli import main
from llmrec.data.types import Dataset, Interaction, Item
from llmrec.errors import ModelError, StaleRetrieverWarning
from llmrec.ingest import ingest
from llmrec.recommender import Recommender
from llmrec.retrieval.knn import top_scored
from llmrec.retrieval.topk import topk
from llmrec.retrieval.train import load_trained, train_retriever

TINY = {"sasrec_max_len": 20, "sasrec_dim": 16, "sasrec_blocks": 1, "sasrec_heads": 1, "sasrec_max_epochs": 2,
        "sasrec_patience": 1}
NEW_ITEMS = [Item("new-1", "A Brand New Film About Boxing", "Genres: Drama."),
             Item("new-2", "Another Unseen Comedy", "Genres: Comedy.")]


def _copy(cfg, tmp_path, name):
    d = tmp_path / name
    shutil.copytree(cfg.store_dir(), d)
    return cfg.replace(data_dir=d)  # its retriever: the store's own folder, {data_dir}/retriever


@pytest.fixture(scope="module")
def store_with_new_items(small_store, tmp_path_factory):
    """The small store plus two items nobody has interacted with."""
    cfg = _copy(small_store, tmp_path_factory.mktemp("plus"), "store")
    ingest(cfg, Dataset("extra", NEW_ITEMS, []), log=lambda *_: None)
    return cfg


@pytest.fixture(scope="module")
def trained(store_with_new_items, tmp_path_factory):
    cfg = _copy(store_with_new_items, tmp_path_factory.mktemp("trained"), "store").replace(
        sasrec_seeds=[0, 1], **TINY)
    logs = []
    man = train_retriever(cfg, log=logs.append)
    return cfg, man, logs


def test_item_knn_is_the_default_and_content_covers_what_it_cannot(store_with_new_items):
    rec = Recommender.load(config=store_with_new_items)
    assert rec.retriever is None and rec.retriever_name == "item-knn"
    assert "new-1" not in rec.data.item_ids  # no interactions: not a collaborative item
    hist = rec.histories["1"]
    rows, scores = rec.candidates(hist, 20)
    # the same as scoring with the fitted kNN directly, history masked
    known = [rec.data.item_ids.index(i) for i in hist]
    idx, sc = top_scored(rec.knn.scores([known])[0], 20, known)
    assert [rec.ids[r] for r in rows] == [rec.data.item_ids[i] for i in idx]
    np.testing.assert_allclose(scores, sc)
    assert rec.recommend(user_id="1", k=5).retriever == "item-knn"
    # a history made only of items without interactions: content similarity, said so
    res = rec.recommend(history=["new-1"], k=3)
    assert res.retriever == "text" and "new-1" not in {r.item_id for r in res.items}
    assert (store_with_new_items.store_dir() / "item-knn.npz").exists()


def test_knn_fills_with_content_when_it_runs_out(store_with_new_items):
    rec = Recommender.load(config=store_with_new_items.replace(knn_neighbors=3))  # few neighbours: few scores
    user = min(rec.histories, key=lambda u: (len(rec.histories[u]), u))  # the shortest history
    hist = rec.histories[user]
    known = [rec.data.item_ids.index(i) for i in hist]
    positive = int((np.delete(rec.knn.scores([known])[0], known) > 0).sum())
    n = positive + 5
    assert n <= 128 and n <= len(rec.ids) - len(hist)  # the case this test is about
    rows, _, name = rec._retrieve(hist, n)
    assert name == "item-knn+text" and len(set(rows.tolist())) == len(rows) == n
    assert not {rec.ids[r] for r in rows} & set(hist)


def test_train_retriever_writes_a_manifest_and_recommend_uses_it(trained):
    cfg, man, logs = trained
    folder = cfg.retriever_path()
    assert folder == cfg.store_dir() / "retriever"
    on_disk = json.loads((folder / "manifest.json").read_text())
    assert on_disk == man
    assert man["kind"] in ("sasrec", "sasrec-ensemble", "fusion") and man["chosen"] in man["valid_ndcg10"]
    assert set(man["valid_ndcg10"]) == {"sasrec[seed=0]", "sasrec[seed=1]", "sasrec-ensemble", "fusion"}
    assert man["valid_ndcg10"][man["chosen"]] == max(man["valid_ndcg10"].values())
    f = man["fusion"]
    assert f["members"][1:] == ["item-knn", "ease"] and abs(sum(f["weights"]) - 1) < 1e-9  # 302 items: EASE too
    assert f["used"] == (man["kind"] == "fusion")
    assert man["n_interactions"] > 0 and len(man["fingerprint"]) == 16 and man["train_seconds"] > 0
    assert "new-1" not in man["item_ids"] and man["params"]["sasrec_dim"] == 16
    assert all(s["epochs"] <= 2 and not s["cap_hit"] and s["stopped"] for s in man["seeds"])
    rec = Recommender.load(config=cfg)
    assert rec.retriever_name == man["kind"]
    res = rec.recommend(user_id="1", k=5)
    assert res.retriever == man["kind"] and not {x.item_id for x in res.items} & set(rec.histories["1"])
    # a second run reuses both seeds instead of training again
    again = []
    train_retriever(cfg, log=again.append)
    assert sum("reusing" in m for m in again) == 2 and not any("epoch" in m for m in again)


def _as_kind(trained, tmp_path, kind):
    """The trained folder with its manifest's kind set (both variants are saved whichever won)."""
    cfg, man, _ = trained
    folder = tmp_path / kind
    shutil.copytree(cfg.retriever_path(), folder)
    members = ["seed0", "seed1"] if kind == "sasrec-ensemble" else man["members"]
    (folder / "manifest.json").write_text(json.dumps({**man, "kind": kind, "members": members}))
    return cfg.replace(retriever_dir=folder)


def test_sasrec_candidates_are_llmrec_topk_over_its_vectors(trained, tmp_path):
    cfg = _as_kind(trained, tmp_path, "sasrec-ensemble")
    retr, _ = load_trained(cfg.retriever_path())
    rec = Recommender.load(config=cfg)
    assert rec.retriever_name == "sasrec-ensemble" and len(retr.members) == 2
    hist = rec.histories["1"]
    rows, scores = rec.candidates(hist, 20)
    s, idx = topk(retr.user_vectors([hist]), retr.item_vectors(), 20, exclude=retr.exclude([hist]))
    assert [rec.ids[x] for x in rows] == [retr.item_ids[i] for i in idx[0].tolist()]
    np.testing.assert_allclose(scores, s[0].numpy(), rtol=1e-5)
    assert not {rec.ids[x] for x in rows} & set(hist)


def test_fused_candidates_are_the_weighted_standardised_sum(trained, tmp_path):
    cfg = _as_kind(trained, tmp_path, "fusion")
    retr, man = load_trained(cfg.retriever_path())
    rec = Recommender.load(config=cfg)
    assert rec.retriever_name == "fusion"
    hist = rec.histories["1"]
    idx = [[retr.index[i] for i in hist]]
    want = 0
    for (name, m), w in zip(retr.members.items(), man["fusion"]["weights"], strict=True):
        S = m.scores(idx) if name == "item-knn" else (
            (m.r.user_vectors_idx(idx) if name.startswith("sasrec") else m.user_vectors(idx)) @ m.item_vectors().T)
        want = want + w * S / S.std(axis=1, keepdims=True)
    np.testing.assert_allclose(retr.scores([hist]), want, rtol=1e-4, atol=1e-5)
    rows, scores = rec.candidates(hist, 20)
    top, sc = top_scored(want[0], 20, idx[0], positive_only=False)
    assert [rec.ids[x] for x in rows] == [retr.item_ids[i] for i in top]
    np.testing.assert_allclose(scores, sc, rtol=1e-4, atol=1e-5)
    assert rec.recommend(user_id="1", k=3).retriever == "fusion"


def test_new_interactions_make_the_retriever_stale_but_it_still_recommends(trained, tmp_path):
    cfg = _copy(trained[0], tmp_path, "store")
    cfg = cfg.replace(retriever_dir=trained[0].retriever_path())
    ingest(cfg, Dataset("more", [], [Interaction("new-user", "new-1", 1.0), Interaction("new-user", "1", 2.0),
                                     Interaction("new-user", "new-2", 3.0)]), log=lambda *_: None)
    with pytest.warns(StaleRetrieverWarning, match="train-retriever"):
        rec = Recommender.load(config=cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, at load: recommending does not warn again
        res = rec.recommend(user_id="new-user", k=4)
        assert res.retriever == trained[1]["kind"] and len(res.items) == 4
        # items the retriever does not know: the history of only those falls back to content
        assert rec.recommend(history=["new-2"], k=3).retriever == "text"


def test_a_retriever_of_another_catalog_is_refused(trained, base_cfg, tmp_path):
    other = base_cfg.replace(data_dir=tmp_path / "other")
    ingest(other, Dataset("other", [Item("x1", "Zebra Documentary"), Item("x2", "Harbour Lights")],
                          [Interaction("u", "x1", 1.0), Interaction("u", "x2", 2.0)]), log=lambda *_: None)
    with pytest.raises(ModelError) as e:
        Recommender.load(config=other.replace(retriever_dir=trained[0].retriever_path()))
    msg = str(e.value)
    assert str(trained[0].retriever_path()) in msg and str(tmp_path / "other") in msg
    assert str(trained[0].store_dir()) in msg  # where it was trained


def test_cli_train_retriever_and_the_table_names_the_retriever(store_with_new_items, tmp_path, capsys):
    cfg = _copy(store_with_new_items, tmp_path, "store")
    conf = tmp_path / "tiny.yaml"
    conf.write_text("".join(f"{k}: {v}\n" for k, v in TINY.items()))
    args = ["--home", str(cfg.home), "--data-dir", str(cfg.store_dir())]
    assert main(["train-retriever", *args, "--config", str(conf), "--seeds", "3"]) == 0
    out = capsys.readouterr()
    assert "[sasrec seed 3] epoch" in out.err and "fusion of ['sasrec', 'item-knn', 'ease']" in out.err
    man = json.loads((cfg.store_dir() / "retriever" / "manifest.json").read_text())
    assert f"trained {man['chosen']} on" in out.out
    assert (cfg.store_dir() / "retriever" / "seed3" / "sasrec.pt").exists()
    assert main(["recommend", *args, "--user", "5", "-k", "2"]) == 0
    assert f"(candidates from {man['kind']})" in capsys.readouterr().out
    assert main(["train-retriever", *args, "--seeds", "a,b"]) == 2
    assert "--seeds" in capsys.readouterr().err
