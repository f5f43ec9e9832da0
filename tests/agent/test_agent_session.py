"""Scripted multi-turn conversations over the real 300-item ml-100k store (real LLM, real encoder)."""

from collections import Counter

import pytest

from llmrec.agent.session import ChatSession, Reply
from llmrec.errors import RequestError

STAR_TREK = {"222", "227", "228", "229", "230"}  # the Star Trek films among the store's 300 items


def ids(reply: Reply) -> set[str]:
    return {r.item_id for r in reply.items}


def test_likes_why_exclusions_and_pages_never_repeat(recommender):
    s = ChatSession(recommender, page_size=5)
    r1 = s.send("I loved Alien and Heat but hated Pulp Fiction, something tense but not gory")
    assert [(x["item_id"], x["as"]) for x in r1.meta["resolved"]] == [("183", "like"), ("273", "like"),
                                                                      ("56", "dislike")]
    assert s.profile.liked == ["183", "273"] and s.profile.disliked == ["56"]
    assert s.profile.query == "tense" and s.profile.avoid_terms == ["gory"]
    assert r1.question is None and r1.meta["action"] == "recommend" and r1.meta["retriever"].endswith("+query")
    assert len(r1.items) == 5 and not ids(r1) & {"183", "273", "56"}
    assert all(f"{r.rank}. {r.title}" in r1.text for r in r1.items)

    second = r1.items[1]
    r2 = s.send("why the second one?")
    assert r2.meta["action"] == "why" and r2.items == [second]
    assert second.because and set(second.because) <= {"183", "273"}
    assert any(recommender.item(b).title in r2.text for b in second.because)  # names a history item

    r3 = s.send("not that one")
    assert r3.items == [] and second.item_id in s.profile.excluded and second.title in r3.text

    r4 = s.send("show more")
    assert r4.meta["action"] == "more" and len(r4.items) == 5
    assert not ids(r1) & ids(r4) and not ids(r4) & {"183", "273", "56"}

    s.send("I've seen the first")
    assert r4.items[0].item_id in s.profile.excluded

    third = r4.items[2]
    r6 = s.send("more like the third but funnier")
    assert s.profile.liked == ["183", "273", third.item_id]
    assert s.profile.query == "funnier" and s.profile.genres == ["Comedy"]
    assert r6.text.startswith(f"More like {third.title}")
    assert len(r6.items) == 5 and not (ids(r1) | ids(r4) | s.profile.excluded | {"56"}) & ids(r6)
    assert max(Counter(s.profile.shown).values()) == 1  # nothing was shown twice


def test_ambiguous_title_is_asked_back_and_answered(recommender):
    s = ChatSession(recommender, page_size=3)
    r1 = s.send("I liked Alien and star trek")
    assert r1.items == [] and r1.meta["action"] == "ask" and r1.question in r1.text
    assert set(r1.meta["candidates"]) == STAR_TREK and "Star Trek: First Contact (1996)" in r1.question
    assert s.profile.liked == ["183"] and "Alien (1979)" in r1.text  # the resolved title is kept
    r2 = s.send("the 1996 one")
    assert r2.question is None and s.profile.liked == ["183", "222"]
    assert r2.meta["resolved"] == [{"text": "star trek", "item_id": "222", "title": "Star Trek: First Contact (1996)",
                                    "how": "answer", "as": "like"}]
    assert len(r2.items) == 3 and not ids(r2) & {"183", "222"}


def test_never_mind_after_a_list_recommends_from_the_rest(recommender):
    s = ChatSession(recommender, page_size=3)
    r1 = s.send("I liked Alien and star trek")
    assert r1.question and not r1.items
    r2 = s.send("never mind")  # the ambiguous title dropped: recommendations for Alien follow
    assert r2.meta["action"] == "recommend" and len(r2.items) == 3 and s.profile.liked == ["183"]
    assert r2.text.startswith("OK, never mind that one.") and "183" not in ids(r2)


def test_questions_answered_by_ordinal_dropped_or_cancelled(recommender):
    s = ChatSession(recommender, page_size=3)
    asked = s.send("not a fan of star trek")
    first_two = asked.meta["candidates"][:2]
    s.send("the second")  # an ordinal answers too
    assert s.profile.disliked == [first_two[1]]
    r = s.send("I loved zzyzx qqqqq")
    assert r.question and r.question.startswith('I could not find "zzyzx qqqqq"') and "Did you mean" in r.question
    assert s.send("never mind").meta["action"] == "ack" and s.profile.liked == []
    s.send("i liked star trek")
    r = s.send("show more")  # not an answer: the question is dropped, the message read as new
    assert r.meta["dropped_questions"] == 1 and r.meta["cold_start"] and len(r.items) == 3
    assert s.profile.liked == []


def test_a_known_user_starts_the_session(recommender):
    s = ChatSession(recommender, page_size=4)
    r = s.send("Hi, I'm user 42")
    hist = recommender.history_of("42")
    assert s.profile.user == "42" and s.profile.liked == hist
    assert len(r.items) == 4 and not ids(r) & set(hist) and f"{len(hist)} movies" in r.text
    bad = s.send("I'm user 4242424")
    assert bad.meta["action"] == "error" and "4242424" in bad.text and s.profile.user == "42"


def test_free_text_alone_is_served_through_the_text_encoder(recommender):
    s = ChatSession(recommender, page_size=5)
    r1 = s.send("something funny and animated for kids, no horror")
    assert r1.meta["cold_start"] and r1.meta["retriever"] == "query"
    assert s.profile.avoid_genres == ["Horror"] and {"Comedy", "Animation", "Children's"} <= set(s.profile.genres)
    genres = [set(recommender.item(i).fields["genres"].split("|")) for i in ids(r1)]
    assert not any("Horror" in g for g in genres)
    assert sum("Animation" in g or "Children's" in g for g in genres) >= 4
    r2 = s.send("more")
    assert len(r2.items) == 5 and not ids(r1) & ids(r2)


def test_nothing_to_act_on_gets_a_question(recommender):
    s = ChatSession(recommender)
    r = s.send("hello")
    assert r.items == [] and r.question and r.meta["action"] == "help"
    assert r.meta["llm_steps"] == 0 and r.meta["llm_fallbacks"] == 0  # the LLM intent step is off by default
    r = s.send("why?")
    assert "haven't recommended anything" in r.text


@pytest.mark.parametrize("bad, match", [(None, "string"), (42, "string"), (["alien"], "string"), ("", "empty"),
                                        ("   ", "empty"), ("a" * 4001, "at most")])
def test_bad_messages_are_request_errors(recommender, bad, match):
    s = ChatSession(recommender)
    with pytest.raises(RequestError, match=match):
        s.send(bad)
    assert s.turns == 0


def test_bad_session_arguments_are_request_errors(recommender):
    for kwargs in ({"page_size": 0}, {"page_size": 2.5}, {"page_size": True}, {"query_weight": -0.1}):
        with pytest.raises(RequestError):
            ChatSession(recommender, **kwargs)
