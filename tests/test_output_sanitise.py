"""Catalog text reaches the terminal and the chat replies sanitised (one line, no control or bidi
characters), the JSON outputs raw; titles over ``title_max_chars`` are refused at ingest.

A tiny real store (real text encoder, real LLM ranker) from a catalog whose titles and one id hold
terminal escape sequences, NUL, BEL, CR/LF, TAB, DEL, NEL and a right-to-left override."""

import json

import pytest

from llmrec.cli import main
from llmrec.data.catalog import load_items_jsonl
from llmrec.errors import CatalogLineError

BAD_CHARS = "\x1b\x00\x07\r\n\t\x7f\x85\u202e\u2066\u200f\ufeff"
"""None of these may reach a table line or a chat reply line (LF only between lines)."""

CATALOG = [
    {"id": "a", "title": "Anchor Bay (1990)", "text": "a quiet drama in a harbour town", "genres": "Drama"},
    {"id": "b", "title": "Clear\x1b[2JScreen (1991)", "text": "a hacker thriller", "genres": "Thriller"},
    {"id": "c", "title": "Nul\x00Bel\x07 Story (1992)", "text": "a silent comedy", "genres": "Comedy"},
    {"id": "d", "title": "Two\r\nLines\nHere (1993)", "text": "a drama in two parts", "genres": "Drama"},
    {"id": "e", "title": "\u202eevil\u2066gpj.exe\u2069 (1994)", "text": "a spy story", "genres": "Thriller"},
    {"id": "f\x1b[31m", "title": "Red\x1b]0;pwned\x07 Window (1995)", "text": "a noir", "genres": "Crime"},
    {"id": "g", "title": "Tab\there\x7f\x85\u200f\ufeff (1996)", "text": "a road movie", "genres": "Drama"},
    {"id": "h", "title": "Harbour Lights (1997)", "text": "fishermen and storms at sea", "genres": "Drama"},
    {"id": "d2", "title": "Two\r\nLines\nHere (2003)", "text": "the remake, in colour", "genres": "Drama"},
]
RAW = {x["id"]: x["title"] for x in CATALOG}


def _write(path, rows) -> None:
    path.write_text("\n".join(json.dumps(x) for x in rows) + "\n", encoding="utf-8")


def _clean(text: str) -> None:
    assert not set(BAD_CHARS) & set(text), [c for c in BAD_CHARS if c in text]


@pytest.fixture(scope="module")
def store(base_cfg, tmp_path_factory):
    d = tmp_path_factory.mktemp("unsafe_titles")
    _write(d / "items.jsonl", CATALOG)
    cfg = base_cfg.replace(data_dir=d / "store")
    assert main(["ingest", "--home", str(cfg.home), "--data-dir", str(cfg.store_dir()),
                 "--catalog", str(d / "items.jsonl")]) == 0
    return cfg


def _recommend(cfg, *extra):
    return main(["recommend", "--home", str(cfg.home), "--data-dir", str(cfg.store_dir()), "--explain", "grounded",
                 "--history", "a,b", "-k", "7", *extra])


def test_display_text():
    from llmrec.text_safety import display_text

    assert display_text("Matrix, The (1999) — 東京 é \u200d👨\u200d👩") == "Matrix, The (1999) — 東京 é \u200d👨\u200d👩"
    assert display_text("a\x1b[2Jb\x1b]0;t\x07c\x1bcd") == "abcd"  # whole escape sequences removed
    assert display_text("x\x00y\x07z\x7f\x9b1m") == "x\ufffdy\ufffdz\ufffd\ufffd1m"  # other controls visible
    assert display_text("one\r\ntwo\tthree\u2028four") == "one  two three four"
    assert display_text("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u200b\ufeffok"
                        "\U000e0041") == "ok"
    assert display_text("\ud800") == "\ufffd"  # a lone surrogate (print would raise) is replaced
    assert display_text("x" * 10, 5) == "xxxx…" and display_text("x" * 5, 5) == "xxxxx"
    assert len(display_text("\x1b[2J" * 10**6, 20)) <= 20 and display_text(12) == "12"


def test_recommend_table_is_one_line_per_item_and_json_is_raw(store, capsys):
    assert _recommend(store) == 0
    out = capsys.readouterr().out
    _clean(out.replace("\n", ""))
    lines = out.rstrip("\n").split("\n")
    assert len(lines) == 3 + 2 * 7  # heading, blank, column heads, then two lines per item
    rows = lines[3::2]
    assert [int(r.split()[0]) for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    from llmrec.text_safety import display_text

    shown = {display_text(t) for i, t in RAW.items() if i not in ("a", "b")}
    assert {r.split(maxsplit=3)[3] for r in rows} == shown  # every title on its own row, sanitised
    assert "ClearScreen (1991)" in out and "Because you watched" in out  # the cited history title too

    assert _recommend(store, "--json") == 0
    got = json.loads(capsys.readouterr().out)["items"]
    assert {r["item_id"]: r["title"] for r in got} == {i: t for i, t in RAW.items() if i not in ("a", "b")}


def test_chat_replies_and_questions_are_sanitised(store):
    from llmrec.agent.session import ChatSession
    from llmrec.recommender import Recommender

    s = ChatSession(Recommender.load(config=store), page_size=8)
    r = s.send("I liked Anchor Bay")
    assert r.meta["action"] == "recommend" and len(r.items) == 8
    lines = r.text.split("\n")
    assert len(lines) == 1 + 8  # "Because you liked ...:" then one line per item
    for line in lines:
        _clean(line)
    assert {x.title for x in r.items} == {t for i, t in RAW.items() if i != "a"}  # items keep the raw titles
    why = s.send("why the first?")
    assert why.meta["action"] == "why" and "\n" not in why.text
    _clean(why.text)
    asked = s.send("I liked ClearScreen and two lines here")  # typed as shown; the second is asked back
    assert asked.meta["action"] == "ask" and asked.meta["candidates"] == ["d", "d2"]
    assert asked.question == 'Which "two lines here" do you mean: Two  Lines Here (1993) or Two  Lines Here (2003)? ' \
                             '(say the year, e.g. "the 2003 one")'
    assert "ClearScreen (1991)" in asked.text and s.profile.liked == ["a", "b"]
    _clean(asked.text)


def test_title_over_the_cap_is_refused_with_its_line_and_nothing_stored(base_cfg, tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    _write(items, [CATALOG[0], {"id": "x", "title": "y" * 500}, {"id": "z", "title": "L" * 501}])
    store = tmp_path / "store"
    assert main(["ingest", "--home", str(base_cfg.home), "--data-dir", str(store), "--catalog", str(items)]) == 2
    err = capsys.readouterr().err
    assert f"{items}:3: field 'title' is 501 characters long, over the limit of 500 (config title_max_chars)" in err
    assert not store.exists() or not any(store.iterdir())  # refused before anything was written
    with pytest.raises(CatalogLineError, match=r":2: field 'title' is 500 .* limit of 499"):
        load_items_jsonl(items, title_max_chars=499)
    assert [i.id for i in load_items_jsonl(items, skip_bad=True)] == ["a", "x"]


def test_movielens_titles_are_under_the_cap(ml100k):
    from llmrec.config import Config
    from llmrec.data.movielens import load_ml_latest_small

    cap = Config().title_max_chars
    for ds in (ml100k, load_ml_latest_small(Config().ml_latest_small_dir)):
        longest = max(len(it.title) for it in ds.items)
        assert 50 < longest <= cap, (ds.name, longest)
