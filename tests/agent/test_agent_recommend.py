"""Recommender.recommend's keyword-only additions for the chat session: exclude, query_vector."""

import numpy as np
import pytest

from llmrec.errors import RequestError, UnknownItemError


@pytest.fixture(scope="module")
def encoder(recommender):
    from llmrec.encoders.text import TextEncoder

    return TextEncoder(recommender.cfg)


def _genre_share(rec, items, genre):
    return np.mean([genre in rec.item(r.item_id).fields["genres"].split("|") for r in items])


def test_exclude_is_never_returned(recommender):
    base = recommender.recommend(history=["1", "2", "3"], k=5)
    first = {r.item_id for r in base.items}
    again = recommender.recommend(history=["1", "2", "3"], k=5, exclude=first)
    assert len(again.items) == 5 and not first & {r.item_id for r in again.items}
    cold = recommender.recommend(history=[], k=5, exclude={"50"})  # cold start too
    assert cold.cold_start and "50" not in {r.item_id for r in cold.items} and len(cold.items) == 5


def test_query_biases_the_candidates(recommender, encoder):
    hist = ["183", "273", "22"]  # Alien, Heat, Braveheart
    k = recommender.cfg.candidates  # all candidates come back: the set is the retriever's
    plain = recommender.recommend(history=hist, k=k)
    q = encoder.encode(["a funny comedy. Genres: Comedy."])[0]
    biased = recommender.recommend(history=hist, k=k, query_vector=q)
    assert biased.retriever == plain.retriever + "+query"
    assert _genre_share(recommender, biased.items, "Comedy") > _genre_share(recommender, plain.items, "Comedy") + 0.2
    assert not set(hist) & {r.item_id for r in biased.items}
    same = recommender.recommend(history=hist, k=k, query_vector=q, query_weight=0.0)
    assert [r.item_id for r in same.items] == [r.item_id for r in plain.items]  # weight 0: the retriever's order


def test_query_without_history_is_nearest_by_text(recommender, encoder):
    q = encoder.encode(["an animated film for children. Genres: Animation, Children's."])[0]
    res = recommender.recommend(history=[], k=5, query_vector=q, exclude={"1"})
    assert res.cold_start and res.retriever == "query" and "1" not in {r.item_id for r in res.items}
    scores = [r.score for r in res.items]
    assert scores == sorted(scores, reverse=True)
    expect = np.sort(recommender.vectors @ (q / np.linalg.norm(q)))[::-1]
    assert scores[0] <= expect[0] + 1e-5 and _genre_share(recommender, res.items, "Animation") >= 0.6


@pytest.mark.parametrize("kwargs, err, match", [
    ({"exclude": "50"}, RequestError, "exclude must be a list"),
    ({"exclude": ["no-such-item"]}, UnknownItemError, "no-such-item"),
    ({"query_vector": np.ones(3)}, RequestError, "384"),
    ({"query_vector": np.zeros(384)}, RequestError, "non-zero"),
    ({"query_vector": np.full(384, np.nan)}, RequestError, "finite"),
    ({"query_vector": "funny"}, RequestError, "query_vector"),
    ({"query_vector": np.ones(384), "query_weight": 1.5}, RequestError, "query_weight"),
])
def test_bad_keywords_are_clear_errors(recommender, kwargs, err, match):
    with pytest.raises(err, match=match):
        recommender.recommend(history=["1"], k=3, **kwargs)
