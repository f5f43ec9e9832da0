"""Several items under one title: the chat asks which (listing year and id) instead of taking one
and hiding the others. A real small catalog read from JSONL: ml-100k's first 30 movies and three
items all titled "Crash" (years in a ``year`` field: 1996, 2004, 2004), ingested into its own store."""

import json

import pytest

from llmrec.agent.session import ChatSession
from llmrec.agent.titles import TitleIndex
from llmrec.data.catalog import load_catalog

CRASH = [
    {"id": "c96", "title": "Crash", "year": 1996, "genres": "Drama|Thriller",
     "text": "Strangers bound by a fetish for car accidents."},
    {"id": "c04", "title": "Crash", "year": 2004, "genres": "Crime|Drama",
     "text": "Lives collide over two days in Los Angeles."},
    {"id": "c04tv", "title": "Crash", "year": 2004, "genres": "Documentary",
     "text": "A documentary on motorway safety."},
]
IDS = [c["id"] for c in CRASH]


@pytest.fixture(scope="module")
def catalog(ml100k, tmp_path_factory):
    d = tmp_path_factory.mktemp("same_title")
    rows = [{"id": it.id, "title": it.title, "text": it.text, **it.fields} for it in ml100k.items[:30]] + CRASH
    (d / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return load_catalog(d / "items.jsonl")[0]


@pytest.fixture(scope="module")
def rec(catalog, base_cfg, tmp_path_factory):
    from llmrec.ingest import ingest
    from llmrec.recommender import Recommender

    cfg = base_cfg.replace(data_dir=tmp_path_factory.mktemp("same_title_store"))
    ingest(cfg, catalog, log=lambda *_: None)
    return Recommender.load(config=cfg)


def test_a_shared_title_is_ambiguous_and_a_year_narrows_it(catalog):
    index = TitleIndex(catalog.items)
    r = index.resolve("crash")
    assert r.kind == "ambiguous" and [c.id for c in r.candidates] == IDS and not r.duplicates
    assert [c.id for c in index.resolve("crash 2004").candidates] == ["c04", "c04tv"]
    one = index.resolve("crash (1996)")  # the year from the item's field
    assert one.matched and one.item.id == "c96" and not one.duplicates


def test_the_chat_asks_back_listing_year_and_id_and_the_answers_resolve(rec):
    s = ChatSession(rec, page_size=3)
    r1 = s.send("I loved Toy Story and crash")
    assert r1.items == [] and r1.meta["action"] == "ask" and r1.meta["candidates"] == IDS
    assert r1.question == ('Which "crash" do you mean: Crash (1996) [id c96], Crash (2004) [id c04] or '
                           'Crash (2004) [id c04tv]? (say its id, e.g. "id c04tv", or the year)')
    assert s.profile.liked == ["1"] and not s.profile.excluded  # none of the three hidden
    r2 = s.send("the 2004 one")  # two of them: asked again, about those two
    assert r2.meta["action"] == "ask" and r2.meta["candidates"] == ["c04", "c04tv"]
    assert "Crash (1996)" not in r2.question and "[id c04tv]" in r2.question
    r3 = s.send("id c04tv")
    assert r3.meta["action"] == "recommend" and s.profile.liked == ["1", "c04tv"] and not s.profile.excluded
    assert r3.meta["resolved"][0] == {"text": "crash", "item_id": "c04tv", "title": "Crash", "how": "answer",
                                      "as": "like"}
    assert len(r3.items) == 3 and not {"1", "c04tv"} & {r.item_id for r in r3.items}


def test_a_year_or_a_bare_id_answers_at_once(rec):
    s = ChatSession(rec, page_size=3)
    assert s.send("I liked crash").meta["candidates"] == IDS
    r = s.send("the 1996 one")
    assert r.meta["action"] == "recommend" and s.profile.liked == ["c96"] and len(r.items) == 3
    s = ChatSession(rec, page_size=3)
    s.send("not a fan of crash")
    r = s.send("c04")
    assert s.profile.disliked == ["c04"] and not s.profile.excluded and r.meta["action"] == "recommend"
    assert "c04" not in {x.item_id for x in r.items}
