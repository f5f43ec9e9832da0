import json

import numpy as np
import pytest

from llmrec.errors import UnknownItemError, UnknownUserError
from llmrec.retrieval.user_state import recency_weighted


def test_recency_weighting():
    v = recency_weighted(np.eye(3, dtype=np.float32), half_life=1.0)
    np.testing.assert_allclose(v / v[2], [0.25, 0.5, 1.0], rtol=1e-6)
    assert abs(np.linalg.norm(v) - 1) < 1e-6
    with pytest.raises(ValueError, match="empty history"):
        recency_weighted(np.zeros((0, 3), np.float32), 1.0)


def test_retrieval_never_returns_history(recommender):
    for user in list(recommender.histories)[:40]:
        hist = recommender.histories[user]
        if len(hist) >= len(recommender.ids) - 20:
            continue
        rows, scores = recommender.candidates(hist, 20)
        assert len(rows) == 20
        assert not {recommender.ids[r] for r in rows} & set(hist)
        assert np.all(np.diff(scores) <= 1e-6)


def test_recommend_real_user(recommender):
    user = "1"
    hist = set(recommender.histories[user])
    res = recommender.recommend(user_id=user, k=10)
    assert [r.rank for r in res.items] == list(range(1, 11))
    assert len({r.item_id for r in res.items}) == 10
    assert not {r.item_id for r in res.items} & hist
    titles = {recommender.item(i).title for i in hist}
    for r in res.items:
        assert r.because and set(r.because) <= hist
        assert any(f'"{t}"' in r.explanation for t in titles if t in {recommender.item(b).title for b in r.because})
    scores = [r.score for r in res.items]
    assert scores == sorted(scores, reverse=True)
    data = json.loads(res.to_json())
    assert data["user"] == "1" and set(data["items"][0]) >= {"item_id", "title", "score", "rank", "explanation"}


def test_recommend_from_history(recommender):
    res = recommender.recommend(history=["1", "2", "3"], k=3)
    assert len(res.items) == 3 and not {"1", "2", "3"} & {r.item_id for r in res.items}


def test_unknown_user_is_a_clear_error(recommender):
    with pytest.raises(UnknownUserError, match="unknown user 'nobody'"):
        recommender.recommend(user_id="nobody")
    with pytest.raises(UnknownItemError, match="'99999'"):
        recommender.recommend(history=["1", "99999"])


def test_empty_history_gets_cold_start(recommender):
    res = recommender.recommend(history=[], k=5)
    assert res.cold_start and len(res.items) == 5
    counts = [r.score for r in res.items]
    assert counts == sorted(counts, reverse=True) and counts[0] == recommender.popularity.max()
