"""The ask-back on ml-latest-small's five Hamlets (1948-2000), end to end over a real store: the five
Hamlets and the 195 most rated ml-latest-small movies, with every rating on them."""

from collections import Counter

import pytest

from llmrec.agent.session import ChatSession
from llmrec.data import load_ml_latest_small
from llmrec.data.types import Dataset

pytestmark = pytest.mark.slow  # about 20 s: its own store and LLM

HAMLETS = ["1941", "2820", "3723", "1411", "3598"]  # 1948, 1964, 1990, 1996, 2000


@pytest.fixture(scope="module")
def mls_recommender(base_cfg, tmp_path_factory):
    from llmrec.ingest import ingest
    from llmrec.recommender import Recommender

    mls = load_ml_latest_small(base_cfg.ml_latest_small_dir)
    counts = Counter(x.item for x in mls.interactions)
    keep = set(HAMLETS) | {i for i, _ in counts.most_common(195)}
    items = [it for it in mls.items if it.id in keep]
    cfg = base_cfg.replace(data_dir=tmp_path_factory.mktemp("mls_hamlet"))
    ingest(cfg, Dataset("mls-hamlet", items, [x for x in mls.interactions if x.item in keep]), log=lambda *_: None)
    return Recommender.load(config=cfg)


def test_hamlet_is_asked_back_then_resolved_by_year(mls_recommender):
    s = ChatSession(mls_recommender, page_size=3)
    r1 = s.send("I liked hamlet and the matrix")
    assert r1.items == [] and r1.meta["candidates"] == HAMLETS  # oldest first, none picked by popularity
    for year in (1948, 1964, 1990, 1996, 2000):
        assert f"Hamlet ({year})" in r1.question
    assert s.profile.liked == ["2571"]  # The Matrix is kept while the question is open
    r2 = s.send("the 1996 one")
    assert r2.question is None and s.profile.liked == ["2571", "1411"]
    assert len(r2.items) == 3 and not ids(r2) & {"2571", "1411"}
    r3 = s.send("why the first one?")
    assert r3.items == [r2.items[0]] and any(t in r3.text for t in ("Hamlet (1996)", "Matrix, The (1999)"))


def ids(reply):
    return {r.item_id for r in reply.items}
