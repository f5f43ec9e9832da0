"""The store's trained ranker: `llmrec train-ranker --data-dir`, used by recommend, refused when stale."""

import json
import shutil

import pytest

from llmrec.cli import main
from llmrec.errors import ModelError
from llmrec.rank.checkpoint import RankerMismatchError
from llmrec.rank.store import ranker_path
from llmrec.recommender import Recommender
from llmrec.retrieval.train import train_retriever

pytestmark = pytest.mark.slow

TINY_SASREC = {"sasrec_max_len": 20, "sasrec_dim": 16, "sasrec_blocks": 1, "sasrec_heads": 1, "sasrec_max_epochs": 2,
               "sasrec_patience": 1, "sasrec_seeds": [0]}
TINY_RANKER = {"candidates": 5, "ranker_history": 3, "ranker_examples": 8, "ranker_epochs": 1, "ranker_batch_size": 4,
               "ranker_eval_every": 8, "ranker_valid_users": 4, "k": 3}


@pytest.fixture(scope="module")
def store(small_store, tmp_path_factory):
    d = tmp_path_factory.mktemp("rk-store") / "store"
    shutil.copytree(small_store.store_dir(), d)
    cfg = small_store.replace(data_dir=d, **TINY_SASREC, **TINY_RANKER)
    train_retriever(cfg, log=lambda *_: None)
    return cfg


def test_without_a_checkpoint_recommend_is_zero_shot_and_trained_is_required_when_asked(store):
    out = Recommender.load(config=store).recommend(user_id="1")
    assert out.ranker == "zero-shot" and out.to_dict()["ranker"] == "zero-shot"
    with pytest.raises(ModelError, match="train-ranker"):
        Recommender.load(config=store.replace(ranker="trained")).recommend(user_id="1")


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory):
    """The tiny keys as a config file, for the CLI."""
    f = tmp_path_factory.mktemp("rk-cfg") / "cfg.yaml"
    f.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in {**TINY_SASREC, **TINY_RANKER}.items()))
    return f


def test_train_ranker_on_the_store_then_recommend_uses_it(store, cfg_file, capsys):
    rc = main(["train-ranker", "--data-dir", str(store.store_dir()), "--config", str(cfg_file)])
    assert rc == 0, capsys.readouterr().err
    assert "trained ranker (with soft tokens)" in capsys.readouterr().out
    folder = ranker_path(store)
    man = json.loads((folder / "manifest.json").read_text())
    assert man["retriever"]["fingerprint"] == Recommender.load(config=store).data.fingerprint
    assert 0 <= man["fusion"]["weight"] <= 1
    rec = Recommender.load(config=store)
    out = rec.recommend(user_id="1")
    assert out.ranker == "trained" and len(out.items) == 3
    assert all(r.score <= 0 for r in out.items)  # label log-probabilities
    # the order is the checkpoint's fusion of the LLM with the retriever, over the retriever's candidates
    rows, _ = rec.candidates(rec.histories["1"], store.candidates)
    assert {r.item_id for r in out.items} <= {rec.ids[r] for r in rows}
    assert main(["recommend", "--data-dir", str(store.store_dir()), "--config", str(cfg_file), "--user", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ranker"] == "trained"
    # the zero-shot LLM on request
    assert Recommender.load(config=store.replace(ranker="zero-shot")).recommend(user_id="1").ranker == "zero-shot"
    # A retrained retriever (another seed) makes the old ranker refused, naming the retriever.
    cfg = store.replace(sasrec_seeds=[1])
    train_retriever(cfg, log=lambda *_: None)
    with pytest.raises(RankerMismatchError, match="retriever"):
        Recommender.load(config=cfg).recommend(user_id="1")
