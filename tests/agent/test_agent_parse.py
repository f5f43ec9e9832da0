"""Parsing chat messages into intents, over the real ml-100k and ml-latest-small titles."""

import pytest

from llmrec.agent.parse import MAX_MESSAGE_CHARS, Ref, parse
from llmrec.agent.titles import TitleIndex
from llmrec.config import Config
from llmrec.data import load_ml_latest_small
from llmrec.errors import RequestError


@pytest.fixture(scope="module")
def catalog(ml100k):
    genres = sorted({g for it in ml100k.items for g in it.fields["genres"].split("|") if g})
    return TitleIndex(ml100k.items), genres


def p(catalog, message):
    return parse(message, *catalog)


def ids(refs):
    return [r.resolution.item.id if r.resolution is not None and r.resolution.matched else r for r in refs]


@pytest.mark.parametrize("message, liked", [
    ("I loved Alien and Heat", ["183", "273"]),
    ("I liked Sense and Sensibility, The Good, the Bad and the Ugly and Toy Story", ["275", "177", "1"]),
    ("i really liked the good the bad and the ugly, sense and sensibility", ["177", "275"]),
    ("I enjoyed mr. holland's opus & se7en", ["15", "11"]),
    ("my favourite movies are fargo and casablanca", ["100", "483"]),
    ("big fan of the usual suspects", ["12"]),
    ("Alien and Heat", ["183", "273"]),  # a bare list of titles: liked
    ("I liked alein and the usual suspect", ["183", "12"]),  # typos
    ("I loved the first wives club", ["476"]),  # a title that starts with an ordinal word is a title
])
def test_liked_titles_prefer_spans_that_resolve(catalog, message, liked):
    got = p(catalog, message)
    assert ids(got.liked) == liked, got
    assert not got.disliked and not got.excluded


@pytest.mark.parametrize("message", ["I hated Heat", "not a fan of heat", "I'm not a fan of Heat", "I didn't like heat",
                                     "i don't like heat", "can't stand heat", "I really disliked Heat"])
def test_disliked(catalog, message):
    got = p(catalog, message)
    assert ids(got.disliked) == ["273"] and not got.liked, message


def test_likes_dislikes_and_free_text_in_one_message(catalog):
    got = p(catalog, "I loved Alien and Heat, something tense but not gory")
    assert ids(got.liked) == ["183", "273"]
    assert got.query == "tense" and got.avoid_terms == ["gory"]
    got = p(catalog, "I loved Alien but hated Heat")
    assert ids(got.liked) == ["183"] and ids(got.disliked) == ["273"]
    got = p(catalog, "a sci-fi comedy please, no horror")
    assert got.genres == ["Sci-Fi", "Comedy"] and got.avoid_genres == ["Horror"] and got.query == "sci-fi comedy"
    got = p(catalog, "something funny for the kids")
    assert got.genres == ["Comedy", "Children's"] and not got.liked


def test_follow_ups(catalog):
    assert p(catalog, "why?").asked_why and p(catalog, "why?").why is None
    assert p(catalog, "why the second one?").why == Ref(ordinal=2)
    assert p(catalog, "why did you recommend the last one").why == Ref(ordinal=-1)
    assert ids([p(catalog, "why Heat?").why]) == ["273"]
    assert p(catalog, "not that one").excluded == [Ref()]
    assert p(catalog, "I've seen it").excluded == [Ref()]
    assert p(catalog, "seen the first").excluded == [Ref(ordinal=1)]
    for msg in ("I haven't seen Heat", "i have not watched heat", "never saw heat"):  # neither seen nor liked
        got = p(catalog, msg)
        assert not got.excluded and not got.liked and not got.disliked, msg
    got = p(catalog, "I haven't seen Heat but I loved Alien")
    assert ids(got.liked) == ["183"] and not got.excluded
    assert p(catalog, "I've already seen the first and the third").excluded == [Ref(ordinal=1), Ref(ordinal=3)]
    assert p(catalog, "skip #4").excluded == [Ref(ordinal=4)]
    assert ids(p(catalog, "I've seen Heat").excluded) == ["273"]
    for more in ("show more", "more", "Show me more.", "next page", "more please"):
        got = p(catalog, more)
        assert got.show_more and not got.more_like and not got.query, more
    assert p(catalog, "more like the second").more_like == [Ref(ordinal=2)]
    got = p(catalog, "more like Alien but funnier")
    assert ids(got.more_like) == ["183"] and got.query == "funnier" and got.genres == ["Comedy"]
    assert p(catalog, "I'm user 42").user == "42" and p(catalog, "user #7 here").user == "7"
    got = p(catalog, "I watched Alien and loved it")  # "it" is the title just named
    assert ids(got.excluded) == ["183"] and ids(got.liked) == ["183"]
    assert p(catalog, "I loved it").liked == [Ref()]  # "it": the item in focus


def test_unresolved_titles_are_kept_to_ask_back(catalog):
    got = p(catalog, "I liked Alien, Zorgblatt Qux and Heat")
    assert [r.resolution.kind for r in got.liked] == ["matched", "unknown", "matched"]
    assert got.liked[1].text == "Zorgblatt Qux"
    got = p(catalog, "i liked star trek")
    assert got.liked[0].resolution.kind == "ambiguous" and len(got.liked[0].resolution.candidates) >= 5
    got = p(catalog, "I liked Alien and Heat, tense and dark")  # a description after the titles
    assert ids(got.liked) == ["183", "273"] and got.query == "tense dark"
    assert p(catalog, "hello there").empty()  # nothing to act on: the session asks what the user likes


def test_hamlet_needs_its_year_on_ml_latest_small():
    index = TitleIndex(load_ml_latest_small(Config().ml_latest_small_dir).items)
    got = parse("I liked hamlet and the matrix", index)
    assert got.liked[0].resolution.kind == "ambiguous" and len(got.liked[0].resolution.candidates) == 5
    assert got.liked[1].resolution.item.title == "Matrix, The (1999)"
    got = parse("I liked Hamlet (1996), the matrix and Seven", index)
    assert [r.resolution.item.id for r in got.liked] == ["1411", "2571", "47"]
    assert parse("I loved it", index).liked == [Ref()]  # the pronoun, not "It (1990)" or "It (2017)"


@pytest.mark.parametrize("bad, match", [(None, "string"), (42, "string"), (b"alien", "string"), ("", "empty"),
                                        ("  \n", "empty"), ("x" * (MAX_MESSAGE_CHARS + 1), "at most")])
def test_bad_messages_are_request_errors(catalog, bad, match):
    with pytest.raises(RequestError, match=match):
        parse(bad, *catalog)


def test_last_and_top_are_ordinals_only_as_references(catalog):
    assert p(catalog, "skip the last one").excluded == [Ref(ordinal=-1)]
    assert p(catalog, "why the top one?").why == Ref(ordinal=1)
    got = p(catalog, "I saw Alien last week")  # "last week" is not the last item shown
    assert ids(got.excluded) == ["183"] and all(r.ordinal is None for r in got.excluded)


def test_a_typed_list_of_ten_titles_resolves_whole(catalog):
    """Titles as users type them in one list: dots that end a title ("sunset blvd.", "when harry met
    sally..."), a title after a comma that starts with a year-like number ("2001: a space
    odyssey"), a title that starts with a stop word ("so i married...") or holds a trigger phrase
    ("drop zone", "my favorite year", "thin line between love and hate", "i love trouble")."""
    msg = ("I liked heat, sunset blvd., when harry met sally..., m*a*s*h, 2001: a space odyssey, drop zone, "
           "so i married an axe murderer, my favorite year, thin line between love and hate, i love trouble "
           "and escape from l.a.")
    got = p(catalog, msg)
    titles = [r.resolution.item.title for r in got.liked if r.resolution is not None and r.resolution.matched]
    assert titles == ["Heat (1995)", "Sunset Blvd. (1950)", "When Harry Met Sally... (1989)", "M*A*S*H (1970)",
                      "2001: A Space Odyssey (1968)", "Drop Zone (1994)", "So I Married an Axe Murderer (1993)",
                      "My Favorite Year (1982)", "Thin Line Between Love and Hate, A (1996)",
                      "I Love Trouble (1994)", "Escape from L.A. (1996)"], got
    assert not got.excluded and not got.disliked and got.query is None


def test_triggers_and_stops_still_work_beside_titles(catalog):
    got = p(catalog, "I liked heat, drop alien")  # no title "drop alien": "drop" stays a trigger
    assert ids(got.liked) == ["273"] and ids(got.excluded) == ["183"]
    got = p(catalog, "I loved Alien and hated Heat")
    assert ids(got.liked) == ["183"] and ids(got.disliked) == ["273"]
    got = p(catalog, "I liked heat. so something funny please")  # a stop word before free text
    assert ids(got.liked) == ["273"] and got.genres == ["Comedy"]
    got = p(catalog, "I liked heat, 1995")  # a year after a comma is still the year of that title
    assert ids(got.liked) == ["273"]
    got = p(catalog, "I liked heat, 2001")  # no Heat of 2001: "2001" is a title of its own (a prefix)
    assert ids(got.liked) == ["273", "135"] and got.liked[1].resolution.how == "prefix"


def test_a_disliked_genre_is_avoided(catalog):
    got = p(catalog, "not that one, I don't like musicals")
    assert got.excluded == [Ref()] and got.avoid_genres == ["Musical"] and not got.genres
    got = p(catalog, "i hate horror")
    assert got.avoid_genres == ["Horror"] and not got.disliked and not got.genres
