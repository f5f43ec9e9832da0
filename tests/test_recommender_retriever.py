"""The Recommender uses the trained sequential retriever when one exists."""

import numpy as np
import pytest

from llmrec.recommender import Recommender
from llmrec.retrieval import sasrec
from llmrec.retrieval.topk import topk


@pytest.fixture(scope="module")
def trained(small_store, small_ml100k, tmp_path_factory):
    """A small real SASRec trained on the small store's histories (all but each user's last item)."""
    hist = small_ml100k.histories()
    item_ids = [it.id for it in small_ml100k.items]
    pos = {i: n for n, i in enumerate(item_ids)}
    seqs = [[pos[i] for i in h] for h in hist.values() if len(h) >= 3]
    train = [s[:-1] for s in seqs]
    params = sasrec.SASRecParams(max_len=20, dim=16, blocks=1, heads=1, max_epochs=2, patience=1, bf16=False)
    model, _ = sasrec.train_sasrec(train, train, [s[-1] for s in seqs], len(item_ids), params, seed=0,
                                   log=lambda *_: None)
    folder = tmp_path_factory.mktemp("retriever")
    sasrec.save(model, item_ids, folder, {"dataset": "ml-100k-small"})
    return small_store.replace(retriever_dir=folder)


def test_recommender_uses_the_trained_retriever(trained):
    rec = Recommender.load(config=trained)
    assert rec.retriever_name == "sasrec"
    hist = rec.histories["1"]
    rows, scores = rec.candidates(hist, 20)
    # Same as scoring directly with the saved model's vectors, history masked.
    r = sasrec.load_retriever(trained.retriever_path())
    s, idx = topk(r.user_vectors([hist]), r.item_vectors(), 20, exclude=r.exclude([hist]))
    assert [rec.ids[x] for x in rows] == [r.item_ids[i] for i in idx[0].tolist()]
    np.testing.assert_allclose(scores, s[0].numpy(), rtol=1e-5)
    assert not {rec.ids[x] for x in rows} & set(hist)
    res = rec.recommend(user_id="1", k=5)
    assert res.retriever == "sasrec" and len(res.items) == 5
    assert not {x.item_id for x in res.items} & set(hist)


def test_text_retriever_without_a_trained_one(small_store, tmp_path):
    rec = Recommender.load(config=small_store.replace(retriever_dir=tmp_path / "none"))
    assert rec.retriever is None
    assert rec.recommend(user_id="1", k=3).retriever == "text"
    assert rec.recommend(history=[], k=3).retriever == "popularity"
