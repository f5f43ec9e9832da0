"""SASRec: a tiny real training run, save/load, vectors and retrieval through llmrec.topk."""

import numpy as np
import pytest
import torch

import llmrec
from llmrec.config import Config
from llmrec.data import load_ml_latest_small
from llmrec.data.splits import leave_one_out
from llmrec.errors import ModelError
from llmrec.retrieval.sasrec import SASRecParams, save, train_sasrec
from llmrec.retrieval.sasrec_retriever import load_retriever


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    split = leave_one_out(load_ml_latest_small(Config().ml_latest_small_dir), max_users=40)
    train = [split.train[u] for u in split.users]
    p = SASRecParams(max_len=30, dim=16, max_epochs=2, patience=2, max_minutes=1.0)
    model, info = train_sasrec(train, train, [split.valid[u] for u in split.users], split.n_items, p, seed=0,
                               log=lambda m: None)
    folder = tmp_path_factory.mktemp("retr")
    save(model, split.item_ids, folder, {"dataset": split.name, "train": info})
    return split, model, info, folder


def test_training_reports_validation_selection(trained):
    split, model, info, _ = trained
    assert 1 <= info["best_epoch"] <= info["epochs"] <= 2
    assert info["valid_ndcg10"] == max(h["valid_ndcg10"] for h in info["history"])


def test_save_load_and_retrieve(trained):
    split, model, _, folder = trained
    r = load_retriever(folder / "sasrec.pt")
    assert r.item_ids == split.item_ids
    V = r.item_vectors()
    assert V.dtype == np.float32 and V.shape == (split.n_items, 16)
    hist_ids = [[split.item_ids[i] for i in split.history(u, "test")] for u in split.users[:5]]
    U = r.user_vectors(hist_ids)
    assert U.dtype == np.float32 and U.shape == (5, 16)
    assert np.allclose(U, r.user_vectors_idx([split.history(u, "test") for u in split.users[:5]]))
    scores, idx = llmrec.topk(torch.from_numpy(U), torch.from_numpy(V), 10, exclude=r.exclude(hist_ids))
    for b in range(5):
        assert not set(idx[b].tolist()) & set(r.exclude(hist_ids)[b])
    assert np.allclose(scores.numpy()[:, 0], (U @ V.T).max(1, initial=-np.inf, where=_mask(V, r.exclude(hist_ids))),
                       atol=1e-5)
    # unknown ids are skipped; an empty history gives the zero vector
    assert np.allclose(r.user_vectors([["no-such-item"]]), 0.0)


def _mask(V, exclude):
    m = np.ones((len(exclude), V.shape[0]), dtype=bool)
    for b, e in enumerate(exclude):
        m[b, e] = False
    return m


def test_load_missing_retriever_raises(tmp_path):
    with pytest.raises(ModelError):
        load_retriever(tmp_path)


def test_ensemble_scores_are_the_sum_of_the_members(trained):
    from llmrec.retrieval.sasrec_retriever import EnsembleRetriever

    split, _, _, folder = trained
    a, b = load_retriever(folder), load_retriever(folder)
    ens = EnsembleRetriever([a, b])
    hist = [split.history(u, "test") for u in split.users[:4]]
    s1 = a.user_vectors_idx(hist) @ a.item_vectors().T
    s2 = ens.user_vectors_idx(hist) @ ens.item_vectors().T
    assert ens.dim == 2 * a.dim and np.allclose(s2, 2 * s1, atol=1e-4)
