"""Protocols and the leakage guard, on real data (ml-latest-small, real baselines)."""

import numpy as np
import pytest

from llmrec.config import Config
from llmrec.data import load_ml_latest_small
from llmrec.data.splits import leave_one_out
from llmrec.eval.baselines import ItemKNN, MostPopular
from llmrec.eval.protocols import ScorerRanker, full_ranking, rerank, sample_candidates, sampled
from llmrec.retrieval.sasrec import _windows


@pytest.fixture(scope="module")
def split():
    return leave_one_out(load_ml_latest_small(Config().ml_latest_small_dir))


@pytest.fixture(scope="module")
def small():
    return leave_one_out(load_ml_latest_small(Config().ml_latest_small_dir), max_users=60)


class RecordingRanker(ScorerRanker):
    """A real scorer as the ranker that also records what it was shown."""

    def __init__(self, scorer, split):
        super().__init__(scorer, split)
        self.calls = []

    def rank(self, user_history_items, candidate_items):
        self.calls.append(([it.id for it in user_history_items], [it.id for it in candidate_items]))
        return super().rank(user_history_items, candidate_items)


def test_no_validation_or_test_item_reaches_training(split):
    for u in split.users:
        assert split.valid[u] not in split.train[u] and split.test[u] not in split.train[u]
        assert split.test[u] not in split.history(u, "test")
        assert split.valid[u] not in split.history(u, "valid") and split.test[u] not in split.history(u, "valid")
    # what SASRec trains on: windows cut from the training items only
    rng = np.random.default_rng(0)
    for u in split.users[:100]:
        toks = [i + 1 for i in split.train[u]]
        for w in _windows([toks], 200, rng):
            assert set(w) <= set(toks)
    # the popularity baseline counts training interactions only
    mp = MostPopular().fit(split)
    assert mp.counts.sum() == sum(len(t) for t in split.train.values())


def test_ranker_prompt_never_holds_the_users_own_target(small):
    knn = ItemKNN(half_life=2.0).fit(small)
    full = full_ranking(knn, small, "test", small.users)
    ranker = RecordingRanker(MostPopular().fit(small), small)
    out = rerank(full, ranker, small, "test", small.users, history_max=20)
    assert out["called"] == len(ranker.calls) > 0 and out["valid"] == out["called"]
    called_users = [u for b, u in enumerate(small.users) if small.test[u] in full["top"][b]]
    for u, (hist, cands) in zip(called_users, ranker.calls, strict=True):
        target = small.item_ids[small.test[u]]
        assert target not in hist and target in cands and len(hist) <= 20 and len(cands) == 20
        assert hist == [small.item_ids[i] for i in small.history(u, "test")[-20:]]
        assert not set(hist) & set(cands)  # history is masked from the candidates
    # users whose target is not in the retriever's top 20 keep the retriever's rank (>= 20)
    miss = [b for b, u in enumerate(small.users) if u not in called_users]
    assert all(out["ranks"][b] == full["ranks"][b] >= 20 for b in miss)


def test_full_ranking_matches_topk_and_masks_history(small):
    knn = ItemKNN(half_life=0.0).fit(small)
    full = full_ranking(knn, small, "test", small.users)
    for b, u in enumerate(small.users):
        assert not set(full["top"][b].tolist()) & set(small.history(u, "test"))
        if full["ranks"][b] < 20:  # no ties at the target: topk order agrees with the rank
            assert full["top"][b][full["ranks"][b]] == small.test[u] or np.isclose(
                knn.user_vectors([small.history(u, "test")])[0] @ knn.item_vectors()[small.test[u]],
                knn.user_vectors([small.history(u, "test")])[0] @ knn.item_vectors()[full["top"][b][full["ranks"][b]]])


def test_sampled_candidates_are_fixed_and_unseen(small):
    c1, p1 = sample_candidates(small, "test", small.users, 19, seed=0)
    c2, p2 = sample_candidates(small, "test", small.users, 19, seed=0)
    assert (c1 == c2).all() and (p1 == p2).all() and c1.shape == (len(small.users), 20)
    for b, u in enumerate(small.users):
        assert c1[b][p1[b]] == small.test[u] and len(set(c1[b].tolist())) == 20
        seen = set(small.train[u]) | {small.valid[u]}
        assert not set(c1[b].tolist()) & seen


def test_sampled_scorer_and_ranker_paths_agree(small):
    knn = ItemKNN(half_life=2.0).fit(small)
    a = sampled(knn, small, "test", small.users, history_max=0)
    b = sampled(ScorerRanker(knn, small), small, "test", small.users, history_max=10_000)
    assert a["ranks"].tolist() == b["ranks"].tolist() and a["valid"] == b["valid"] == len(small.users)


def test_invalid_answers_count_as_misses(small):
    class Silent:
        name = "silent"

        def rank(self, user_history_items, candidate_items):
            return None

    out = sampled(Silent(), small, "test", small.users)
    assert out["valid"] == 0 and (out["ranks"] == 19).all()
