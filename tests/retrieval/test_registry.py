"""Every registered retriever (``llmrec.retrieval.base.RETRIEVERS``) through the same checks, on a real
slice of ml-100k: built by its spec, scores [B, N] finite, retrieval with the history masked (the
``dense_scores`` flag says how), save/load giving identical scores where the spec supports it; and the
registry's names and errors."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from llmrec.config import Config
from llmrec.data.splits import Split, leave_one_out
from llmrec.errors import ConfigError
from llmrec.metrics import ranks_from_scores
from llmrec.retrieval import base, sasrec_retriever
from llmrec.retrieval import sasrec as sasrec_mod
from llmrec.retrieval.knn import top_scored
from llmrec.retrieval.topk import topk

TINY = {"sasrec_max_len": 20, "sasrec_dim": 16, "sasrec_blocks": 1, "sasrec_heads": 1, "sasrec_max_epochs": 2,
        "sasrec_patience": 1}


@dataclass
class SplitHarness:
    """A real :class:`llmrec.retrieval.base.Harness` over one split: SASRec seeds trained once each
    (tiny, two epochs), members built through the registry."""

    cfg: Config
    split: Split
    extra: dict = field(default_factory=dict)
    trained: dict = field(default_factory=dict)

    def sasrec(self, seed: int):
        if seed not in self.trained:
            from llmrec.retrieval.train import sasrec_params

            train = [self.split.train[u] for u in self.split.users]
            model, info = sasrec_mod.train_sasrec(train, train, [self.split.valid[u] for u in self.split.users],
                                                  self.split.n_items, sasrec_params(self.cfg), seed=seed,
                                                  log=lambda *_: None)
            self.trained[seed] = (sasrec_retriever.SASRecRetriever(model, self.split.item_ids), info)
        return self.trained[seed]

    def member(self, name: str):
        spec, seed = base.parse(name)
        return spec.build(SplitHarness(self.cfg, self.split, {}, self.trained), seed)


@pytest.fixture(scope="module")
def harness(base_cfg, small_ml100k):
    torch.set_num_threads(2)
    split = leave_one_out(small_ml100k, max_users=120)
    return SplitHarness(base_cfg.replace(sasrec_seeds=[0, 1], **TINY), split)


@pytest.fixture(scope="module")
def built(harness):
    """name -> (retriever, extra, seconds to build) for every registered retriever."""
    out = {}
    for name, spec in base.RETRIEVERS.items():
        h = SplitHarness(harness.cfg, harness.split, {}, harness.trained)
        t = time.time()
        out[name] = (spec.build(h, None), h.extra, time.time() - t)
    return out


def _valid(split: Split):
    hist = [split.history(u, "valid") for u in split.users]
    return hist, np.array([split.target(u, "valid") for u in split.users])


def test_the_registry_holds_the_eval_systems_and_the_train_retriever_members():
    assert base.SYSTEMS == ("most-popular", "item-knn", "text-embedding", "ease", "sasrec", "sasrec-ensemble",
                            "fusion")
    assert base.names(fits_split=True) == ["most-popular", "item-knn", "text-embedding", "ease"]
    assert set(base.names(feeds_ranker=True)) == {"fusion", "sasrec", "sasrec-ensemble", "ease", "item-knn"}
    cfg = Config.load(env={})
    assert [s.name for s in base.store_members(cfg, 300)] == ["item-knn", "ease"]
    assert [s.name for s in base.store_members(cfg, cfg.ease_max_items + 1)] == ["item-knn"]
    assert base.parse("sasrec[seed=3]") == (base.RETRIEVERS["sasrec"], 3)
    assert base.parse("ease") == (base.RETRIEVERS["ease"], None)
    assert base.parse("ease[seed=3]") == (None, None) and base.parse("nope") == (None, None)


def test_an_unknown_name_is_one_config_error_listing_the_registered_names():
    with pytest.raises(ConfigError) as e:
        base.get("nope", "eval system")
    msg = str(e.value)
    assert "unknown eval system 'nope'" in msg and all(n in msg for n in base.RETRIEVERS)


@pytest.mark.parametrize("name", list(base.RETRIEVERS))
def test_every_retriever_scores_every_item_and_retrieves_with_the_history_masked(built, harness, name):
    r, extra, _ = built[name]
    split = harness.split
    assert r.kind == name and isinstance(r.dense_scores, bool)
    hist, tgt = _valid(split)
    S = base.score(r, hist)
    assert S.shape == (len(hist), split.n_items) and S.dtype == np.float32 and np.isfinite(S).all()
    ranks = ranks_from_scores(S, tgt, hist)  # the full-ranking protocol's ranks, history masked
    assert ((ranks >= 0) & (ranks < split.n_items - np.array([len(set(h)) for h in hist]))).all()
    if name != "most-popular":  # the same list for everyone; every other one depends on the history
        assert not np.allclose(S[0], S[1])
    b = 0
    for b in range(3):  # top 10 with the history masked, the way each kind retrieves
        if r.dense_scores:
            idx, sc = top_scored(S[b], 10, hist[b], positive_only=False)
        else:
            U, V = r.user_vectors(hist[b:b + 1]), r.item_vectors()
            assert U.shape[0] == 1 and V.shape[0] == split.n_items and U.shape[1] == V.shape[1]
            s, i = topk(torch.from_numpy(np.ascontiguousarray(U)), torch.from_numpy(np.ascontiguousarray(V)), 10,
                        exclude=[hist[b]])
            idx, sc = i[0].numpy(), s[0].numpy()
        assert not set(idx.tolist()) & set(hist[b]) and len(idx) == 10
        want = np.sort(np.delete(S[b], sorted(set(hist[b]))))[::-1][:10]
        np.testing.assert_allclose(sc, want, rtol=1e-4, atol=1e-5)
    if base.RETRIEVERS[name].composite:
        assert abs(sum(extra["weights"]) - 1) < 1e-9 and extra["valid_ndcg10"] == max(v for _, v in extra["grid"])


@pytest.mark.parametrize("name", [n for n, s in base.RETRIEVERS.items() if s.save is not None])
def test_save_and_load_give_identical_scores(built, harness, name, tmp_path):
    r = built[name][0]
    spec = base.RETRIEVERS[name]
    spec.save(r, tmp_path / name)
    back = spec.load(tmp_path / name)
    hist, _ = _valid(harness.split)
    assert back.kind == r.kind and back.dense_scores == r.dense_scores
    np.testing.assert_array_equal(base.score(back, hist), base.score(r, hist))

