"""`llmrec train-retriever` and the trained retriever under bad input, the way a careless or hostile
user gives it: a typed error naming the key, file or folder (exit code 2 at the CLI), never a raw
traceback; damaged caches are refitted; an interrupted retrain never breaks `recommend`."""

import json
import random
import shutil
import warnings

import numpy as np
import pytest

from llmrec.cli import main
from llmrec.data.types import Dataset, Interaction, Item
from llmrec.errors import (
    ConfigError,
    IncompleteRetrieverWarning,
    ModelError,
    StaleRetrieverWarning,
    StoreError,
)
from llmrec.ingest import ingest
from llmrec.recommender import Recommender
from llmrec.retrieval.knn import ItemKNN
from llmrec.retrieval.train import train_retriever

TINY = {"sasrec_max_len": 20, "sasrec_dim": 16, "sasrec_blocks": 1, "sasrec_heads": 1, "sasrec_max_epochs": 2,
        "sasrec_patience": 1}
GENRES = ["Drama", "Comedy", "Action", "Horror", "Romance"]


def _catalog():
    """40 films, 30 users with 6 each (a real encoder reads the titles; the interactions are hand-made)."""
    items = [Item(str(i), f"Film {i}", f"Genres: {GENRES[i % 5]}.") for i in range(40)]
    rng = random.Random(0)
    inter = [Interaction(f"u{u}", str(i), float(t)) for u in range(30) for t, i in enumerate(rng.sample(range(40), 6))]
    return Dataset("films", items, inter)


@pytest.fixture(scope="module")
def store(base_cfg, tmp_path_factory):
    cfg = base_cfg.replace(data_dir=tmp_path_factory.mktemp("films") / "store", **TINY)
    ingest(cfg, _catalog(), log=lambda *_: None)
    return cfg


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    """A copy of the store with a trained retriever (seed 0; fusion files written), kind set to fusion."""
    cfg = _copy(store, tmp_path_factory.mktemp("trained"))
    man = train_retriever(cfg.replace(sasrec_seeds=[0]), log=lambda *_: None)
    man_path = cfg.retriever_path() / "manifest.json"
    man_path.write_text(json.dumps({**man, "kind": "fusion"}))  # both variants are saved whichever won
    return cfg


def _copy(cfg, tmp_path, name="store"):
    shutil.copytree(cfg.store_dir(), tmp_path / name)
    return cfg.replace(data_dir=tmp_path / name)


def _cli(cfg, *args):
    return main([args[0], "--data-dir", str(cfg.store_dir()), *args[1:]])


# ---------------------------------------------------------------------- seeds and sasrec_* keys
@pytest.mark.parametrize("seeds", ["-1", "", ",", " , ", "99999999999999999999999"])
def test_bad_seeds_flag_is_an_error_and_writes_nothing(store, tmp_path, seeds, capsys):
    cfg = _copy(store, tmp_path)
    assert _cli(cfg, "train-retriever", f"--seeds={seeds}") == 2
    err = capsys.readouterr().err
    assert "llmrec: error: " in err and "sasrec_seeds" in err and "Traceback" not in err
    assert not cfg.retriever_path().exists()


@pytest.mark.parametrize("change, key", [
    ({"sasrec_max_epochs": 0}, "sasrec_max_epochs"),
    ({"sasrec_dim": 15, "sasrec_heads": 2}, "sasrec_dim"),
    ({"sasrec_heads": 0}, "sasrec_heads"),
    ({"sasrec_dim": 0}, "sasrec_dim"),
    ({"sasrec_max_len": 0}, "sasrec_max_len"),
    ({"sasrec_batch_size": 0}, "sasrec_batch_size"),
    ({"sasrec_dropout": 1.5}, "sasrec_dropout"),
    ({"sasrec_lr": -1.0}, "sasrec_lr"),
    ({"knn_neighbors": -5}, "knn_neighbors"),
    ({"sasrec_seeds": []}, "sasrec_seeds"),
    ({"sasrec_seeds": 5}, "sasrec_seeds"),  # a YAML scalar instead of a list
    ({"sasrec_seeds": [True]}, "sasrec_seeds"),
    ({"sasrec_seeds": ["a"]}, "sasrec_seeds"),
    ({"sasrec_seeds": [1.5]}, "sasrec_seeds"),
])
def test_bad_training_config_is_a_config_error_naming_the_key(store, tmp_path, change, key):
    cfg = _copy(store, tmp_path).replace(**change)
    with pytest.raises(ConfigError, match=key):
        train_retriever(cfg, log=lambda *_: None)
    assert not cfg.retriever_path().exists()


def test_yaml_config_error_at_the_cli_exits_2(store, tmp_path, capsys):
    cfg = _copy(store, tmp_path)
    conf = tmp_path / "c.yaml"
    conf.write_text("sasrec_dim: 15\nsasrec_heads: 2\nsasrec_max_epochs: 1\n")
    assert _cli(cfg, "train-retriever", "--config", str(conf), "--seeds", "0") == 2
    assert "'sasrec_dim' (15) must be a multiple of 'sasrec_heads' (2)" in capsys.readouterr().err


def test_duplicate_seeds_train_once(trained, tmp_path):
    cfg = _copy(trained, tmp_path).replace(sasrec_seeds=[0, 0])
    logs = []
    man = train_retriever(cfg, log=logs.append)
    assert [s["seed"] for s in man["seeds"]] == [0] and "sasrec-ensemble" not in man["valid_ndcg10"]
    assert sum("reusing" in m for m in logs) == 1 and man["members"] == ["seed0"]


def test_negative_knn_neighbors_at_recommend_is_a_config_error(store, tmp_path):
    with pytest.raises(ConfigError, match="knn_neighbors"):
        Recommender.load(config=_copy(store, tmp_path).replace(knn_neighbors=-1))


# ---------------------------------------------------------------------- the retriever folder
def test_retriever_dir_that_is_a_file(store, tmp_path, capsys):
    cfg = _copy(store, tmp_path)
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    with pytest.raises(StoreError, match="not-a-folder"):
        train_retriever(cfg.replace(retriever_dir=f, sasrec_seeds=[0]), log=lambda *_: None)
    with pytest.raises(StoreError, match="not-a-folder"):
        train_retriever(cfg.replace(retriever_dir=f / "sub", sasrec_seeds=[0]), log=lambda *_: None)
    with pytest.raises(ModelError, match="not-a-folder"):  # not silently item-kNN: the key names a file
        Recommender.load(config=cfg.replace(retriever_dir=f))
    assert f.read_text() == "x"


def _edit_manifest(path, **change):
    man = json.loads(path.read_text())
    if "fusion" in change and isinstance(change["fusion"], dict):
        change["fusion"] = {**man["fusion"], **change["fusion"]}
    path.write_text(json.dumps({**{k: v for k, v in man.items() if k not in change or change[k] is not None},
                                **{k: v for k, v in change.items() if v is not None}}))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "manifest a list": (lambda d: (d / "manifest.json").write_text("[1, 2]"), "manifest.json"),
    "members empty": (lambda d: _edit_manifest(d / "manifest.json", members=[]), "members"),
    "members a string": (lambda d: _edit_manifest(d / "manifest.json", members="seed0"), "members"),
    "member folder deleted": (lambda d: shutil.rmtree(d / "seed0"), "seed0"),
    "member weights garbage": (lambda d: (d / "seed0" / "sasrec.pt").write_bytes(b"garbage"), "seed0"),
    "member manifest without item ids": (
        lambda d: _edit_manifest(d / "seed0" / "manifest.json", item_ids=None), "seed0"),
    "fusion entry missing": (lambda d: _edit_manifest(d / "manifest.json", fusion=None), "fusion"),
    "fusion weights too few": (lambda d: _edit_manifest(d / "manifest.json", fusion={"weights": [1.0]}), "weight"),
    "item-knn.npz truncated": (lambda d: _truncate(d / "item-knn.npz"), "item-knn.npz"),
    "item-knn.npz garbage": (lambda d: (d / "item-knn.npz").write_bytes(b"PK\x03\x04junk"), "item-knn.npz"),
    "item-knn.npz of 3 items": (
        lambda d: np.savez(d / "item-knn.npz", **ItemKNN(5).fit_sequences([[0, 1, 2]], 3).state()), "item-knn.npz"),
    "item-knn.npz out-of-range indices": (
        lambda d: np.savez(d / "item-knn.npz", **{**dict(np.load(d / "item-knn.npz")),
                                                  "indices": dict(np.load(d / "item-knn.npz"))["indices"] + 1000}),
        "item-knn.npz"),
    "ease.npy of the wrong shape": (lambda d: np.save(d / "ease.npy", np.zeros((3, 3), np.float32)), "ease.npy"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_retriever_files_are_model_errors_naming_the_file(trained, tmp_path, case, capsys):
    cfg = _copy(trained, tmp_path)
    damage, named = DAMAGE[case]
    damage(cfg.retriever_path())
    with pytest.raises(ModelError, match=named):
        Recommender.load(config=cfg)
    assert _cli(cfg, "recommend", "--user", "u1", "-k", "2") == 2
    err = capsys.readouterr().err
    assert "llmrec: error: " in err and "Traceback" not in err


def test_the_trained_fixture_loads_as_fusion(trained):
    rec = Recommender.load(config=trained)  # the undamaged folder the cases above start from
    assert rec.retriever_name == "fusion" and rec._retrieve(rec.histories["u1"], 5)[2] == "fusion"


# ---------------------------------------------------------------------- the store's item-kNN cache
@pytest.mark.parametrize("damage", ["truncated", "other n_items", "garbage"])
def test_damaged_knn_cache_is_refitted(store, tmp_path, damage):
    cfg = _copy(store, tmp_path)
    want = Recommender.load(config=cfg)  # writes the cache
    path = cfg.store_dir() / "item-knn.npz"
    if damage == "truncated":
        _truncate(path)
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04junk")
    else:  # same fingerprint and neighbours, arrays of another size
        st = dict(np.load(path))
        np.savez(path, **{**st, "n_items": np.int64(3), "indptr": np.zeros(4, st["indptr"].dtype),
                          "indices": st["indices"][:0], "data": st["data"][:0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no unclosed file either
        rec = Recommender.load(config=cfg)
    assert rec.retriever_name == "item-knn"
    assert (rec.knn.sim != want.knn.sim).nnz == 0
    hist = rec.histories["u1"]
    assert [int(r) for r in rec.candidates(hist, 10)[0]] == [int(r) for r in want.candidates(hist, 10)[0]]
    with np.load(path) as st:  # rewritten whole
        assert int(st["n_items"]) == len(rec.data.item_ids)


def test_unwritable_knn_cache_leaves_no_temporary_file(store, tmp_path):
    cfg = _copy(store, tmp_path)
    (cfg.store_dir() / "item-knn.npz").unlink(missing_ok=True)
    (cfg.store_dir() / "item-knn.npz").mkdir()  # cannot be replaced by a file (as in a read-only store)
    rec = Recommender.load(config=cfg)
    assert rec.retriever_name == "item-knn" and len(rec.candidates(rec.histories["u1"], 5)[0]) == 5
    assert not list(cfg.store_dir().glob("*.part*"))


# ---------------------------------------------------------------------- interrupted retraining
class _CtrlC:
    """A log that presses Ctrl-C when training reaches a line starting with ``at``."""

    def __init__(self, at):
        self.at = at

    def __call__(self, line):
        if line.startswith(self.at):
            raise KeyboardInterrupt


NEW = Dataset("more", [Item("new1", "A New Film", "Genres: Drama."), Item("5", "Film 5", "Genres: Drama.")],
              [Interaction("u1", "new1", 100.0), Interaction("znew", "new1", 1.0), Interaction("znew", "5", 2.0),
               Interaction("znew", "7", 3.0)])


@pytest.mark.parametrize("at", ["[train-retriever] fusion of", "[sasrec seed 1]"])
def test_ctrl_c_while_retraining_after_reingest_never_breaks_recommend(trained, tmp_path, at):
    cfg = _copy(trained, tmp_path)
    ingest(cfg, NEW, log=lambda *_: None)  # new interactions and a new item: the retriever is stale
    with pytest.warns(StaleRetrieverWarning):
        assert Recommender.load(config=cfg).retriever_name == "fusion"
    with pytest.raises(KeyboardInterrupt):  # seed 0 retrained on 41 items, then Ctrl-C
        train_retriever(cfg.replace(sasrec_seeds=[0, 1]), log=_CtrlC(at))
    with pytest.warns(IncompleteRetrieverWarning, match="train-retriever"):
        rec = Recommender.load(config=cfg)
    assert rec.retriever_name == "item-knn"
    for res in (rec.recommend(user_id="znew", k=3), rec.recommend(user_id="u1", k=3)):
        assert len(res.items) == 3 and res.retriever.startswith("item-knn")
    # the next run finishes (seed 0 reused) and recommend uses it again, without a warning
    logs = []
    man = train_retriever(cfg.replace(sasrec_seeds=[0, 1]), log=logs.append)
    assert any("seed 0: reusing" in m for m in logs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = Recommender.load(config=cfg)
        assert rec.retriever_name == man["kind"] and len(rec.recommend(user_id="znew", k=3).items) == 3


def test_a_finished_run_leaves_no_temporary_files(trained):
    names = {p.name for p in trained.retriever_path().iterdir()}
    assert {"manifest.json", "item-knn.npz", "ease.npy", "seed0"} <= names and not any(".part" in n for n in names)
