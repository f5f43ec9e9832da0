"""The item cold-start protocol on a real ml-100k split (first 60 users)."""

import numpy as np
import pytest

from llmrec.data.splits import leave_one_out
from llmrec.eval import cold, cold_protocol


@pytest.fixture(scope="module")
def split(ml100k):
    return leave_one_out(ml100k, max_users=60)


def test_cold_items_are_a_seeded_share(split):
    c = cold.cold_items(split, 0.1, 0)
    assert len(c) == round(0.1 * split.n_items) and list(c) == sorted(set(c.tolist()))
    assert np.array_equal(c, cold.cold_items(split, 0.1, 0)) and not np.array_equal(c, cold.cold_items(split, 0.1, 1))
    with pytest.raises(ValueError, match="between 0 and 1"):
        cold.cold_items(split, 1.0)


def test_no_training_interaction_touches_a_cold_item(split):
    c = cold.cold_items(split, 0.2, 3)
    warm = cold.warm_split(split, c)
    cs = set(c.tolist())
    assert all(not cs & set(warm.train[u]) for u in warm.users)
    assert warm.test == split.test and warm.valid == split.valid and warm.users == split.users
    lost = sum(len(split.train[u]) - len(warm.train[u]) for u in split.users)
    assert lost > 0 and warm.n_interactions == split.n_interactions - lost
    users = cold.cold_users(split, c, "test")
    assert users and all(split.test[u] in cs for u in users)
    assert set(users) == {u for u in split.users if split.test[u] in cs}
    for u in split.users:
        h = cold.history(split, u, "test", c)
        assert not cs & set(h) and split.test[u] not in h
        assert h == [i for i in split.train[u] + [split.valid[u]] if i not in cs]


# ---------------------------------------------------------------- the protocol (cold_protocol.run)
from llmrec.errors import ConfigError, StoreError  # noqa: E402


@pytest.fixture(scope="module")
def cfg(base_cfg):
    return base_cfg.replace(eval_bootstrap=200, eval_cold_share=0.2, seed=0)


@pytest.fixture(scope="module")
def plain(cfg, split, tmp_path_factory):
    parts = tmp_path_factory.mktemp("cold_parts")
    return parts, cold_protocol.run(cfg, split, parts)


def test_run_without_a_store_ranks_cold_targets_by_text_only(plain, split, cfg):
    import json

    parts, res = plain
    users = cold.cold_users(split, cold.cold_items(split, 0.2, 0), "test")
    assert list(res["systems"]) == ["item-knn", "text"] and res["users"] == users
    assert res["image"] is None and res["poster_slice"] is None and res["sampled"] is None
    assert res["test_users"] == len(users) > 0 and res["cold_items"] == round(0.2 * split.n_items)
    for s in res["systems"].values():
        assert len(s["ranks"]) == s["users"] == len(users)
        assert all(isinstance(r, int) and 0 <= r < split.n_items for r in s["ranks"])
    # item-kNN never saw a cold item: it scores 0 and cannot put one in the top 10 (ties count against).
    knn = res["systems"]["item-knn"]
    assert knn["recall10"] == 0.0 and knn["ndcg10"] == 0.0 and min(knn["ranks"]) >= 10
    assert res["systems"]["text"]["recall10"] > 0  # content finds some cold targets
    lo, hi = res["systems"]["text"]["ndcg10_ci"]
    assert lo <= res["systems"]["text"]["ndcg10"] <= hi
    d = res["paired_vs_text"]["item-knn"]["ndcg10"]
    assert d[0] == pytest.approx(-res["systems"]["text"]["ndcg10"]) and d[1] <= d[0] <= d[2]
    assert json.loads(json.dumps(res)) == res and json.loads((parts / "cold-items.json").read_text()) == res


def test_run_is_cached_by_its_key(plain, split, cfg):
    import json

    parts, res = plain
    part = parts / "cold-items.json"
    data = json.loads(part.read_text())
    part.write_text(json.dumps({**data, "sentinel": 1}))
    again = cold_protocol.run(cfg, split, parts)
    assert again.pop("sentinel") == 1 and again == res  # read back, not recomputed
    other = cold_protocol.run(cfg.replace(eval_cold_share=0.1), split, parts)  # another key: recomputed
    assert "sentinel" not in other and other["share"] == 0.1 and other["cold_items"] == round(0.1 * split.n_items)
    assert json.loads(part.read_text())["key"]["share"] == 0.1


def test_report_lines(plain):
    text = "\n".join(cold_protocol.report_lines(plain[1]))
    assert text.startswith("## Item cold start (")
    assert "| system | NDCG@10 (95% CI) | Recall@10 (95% CI) | users |" in text
    for row in ("| item-knn |", "| text |", "| item-knn - text |"):
        assert row in text
    assert f"{plain[1]['test_users']} test users" in text and "poster" not in text


def test_a_store_that_is_missing_or_has_no_posters_is_refused(cfg, split, tmp_path):
    from llmrec.store import ItemStore

    with pytest.raises(ConfigError, match="eval_modal_store.*does not exist"):
        cold_protocol.run(cfg.replace(eval_modal_store=tmp_path / "nowhere"), split, tmp_path / "parts")
    ItemStore(tmp_path / "text-only", kind="text").upsert(["1"], np.ones((1, 4)))
    with pytest.raises(StoreError, match="eval_modal_store.*no poster vectors"):
        cold_protocol.run(cfg.replace(eval_modal_store=tmp_path / "text-only"), split, tmp_path / "parts")
    assert not (tmp_path / "parts" / "cold-items.json").exists()


def test_run_with_an_image_store(cfg, split, tmp_path):
    """A real store with an ``items_image`` collection: every other item gets a "poster" vector (its
    title-and-genre embedding, so image ranks like text where posters exist)."""
    from pathlib import Path

    from llmrec.eval.baselines import TextEmbedding
    from llmrec.store import ItemStore

    E = TextEmbedding(Path(cfg.home) / "cache", half_life=0.0, cfg=cfg).fit(split).E
    keep = np.arange(0, split.n_items, 2)
    ItemStore(tmp_path / "img", kind="image").upsert([split.item_ids[i] for i in keep], E[keep],
                                                     [{"encoder": "text-as-poster"} for _ in keep])
    res = cold_protocol.run(cfg.replace(eval_modal_store=tmp_path / "img"), split, tmp_path / "parts")
    assert list(res["systems"]) == ["item-knn", "text", "image", "text+image"]
    img = res["image"]
    assert img["items_with_poster"] == len(keep) and img["encoder"] == "text-as-poster"
    assert img["weight"] in [round(0.1 * i, 1) for i in range(11)] and img["valid_users"] == res["valid_users"]
    has = [split.test[u] % 2 == 0 for u in res["users"]]
    sl = res["poster_slice"]
    assert sl["has_poster"] == has and sl["users"] == sum(has)
    for k, s in sl["systems"].items():
        sub = [r for r, h in zip(res["systems"][k]["ranks"], has, strict=True) if h]
        assert s["users"] == len(sub) and (not sub or s["recall10"] == np.mean(np.array(sub) < 10))
    # an item without a poster scores 0 by image: a poster-less cold target is never in image's top 10
    assert all(r >= 10 for r, h in zip(res["systems"]["image"]["ranks"], has, strict=True) if not h)
    text = "\n".join(cold_protocol.report_lines(res))
    for row in ("| image |", "| text+image |", "| image - text |", "| text+image - text |",
                "Users whose cold target has a poster"):
        assert row in text
