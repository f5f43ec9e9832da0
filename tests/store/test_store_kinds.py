"""The store's per-kind collections and its metadata updates (what the image ingest relies on)."""

import numpy as np
import pytest

from llmrec.errors import StoreError
from llmrec.store import ItemStore, collection_name, kinds


def test_one_collection_per_kind(tmp_path):
    text = ItemStore(tmp_path, "text")
    image = ItemStore(tmp_path, "image")
    text.upsert(["1", "2"], np.eye(2, 4, dtype=np.float32), [{"title": "A"}, {"title": "B"}])
    image.upsert(["2"], np.ones((1, 8), np.float32), [{"image": "/x/2.jpg"}])
    assert (text.name, image.name) == ("items_text", "items_image") == (collection_name("text"), collection_name("image"))
    assert kinds(tmp_path) == ["image", "text"]
    assert (text.count(), image.count(), text.dim(), image.dim()) == (2, 1, 4, 8)
    assert ItemStore(tmp_path, "image").metadata(["1", "2"]) == {"2": {"image": "/x/2.jpg"}}
    for bad in ("", "a b", "x/y", "é" * 3, "k" * 101, None):
        with pytest.raises(StoreError, match="vector kind"):
            collection_name(bad)


def test_upsert_merges_and_update_metadata_removes(tmp_path):
    store = ItemStore(tmp_path, "text")
    store.upsert(["1"], np.ones((1, 4), np.float32), [{"title": "A", "caption": "old"}])
    store.upsert(["1"], np.ones((1, 4), np.float32), [{"title": "B"}])
    assert store.metadata(["1"])["1"] == {"title": "B", "caption": "old"}  # merged, as documented
    assert store.update_metadata(["1"], [{"caption": None, "year": 1995}]) == 1
    assert store.metadata(["1"])["1"] == {"title": "B", "year": 1995}
    with pytest.raises(StoreError, match="not in collection 'items_text': 9"):
        store.update_metadata(["1", "9"], [{"a": 1}, {"a": 2}])
    with pytest.raises(StoreError, match="duplicate"):
        store.update_metadata(["1", "1"], [{"a": 1}, {"a": 2}])
    with pytest.raises(StoreError, match="finite"):
        store.update_metadata(["1"], [{"a": float("nan")}])
    assert store.metadata(["1"])["1"] == {"title": "B", "year": 1995}  # nothing written when refused


def test_get_and_delete(tmp_path):
    store = ItemStore(tmp_path, "image")
    vecs = np.random.default_rng(0).random((3, 5), np.float32)
    store.upsert(["a", "b", "c"], vecs, [{"n": i} for i in range(3)])
    ids, got, metas = store.get(["c", "zz", "a"])
    assert ids == ["c", "a"] and np.allclose(got, vecs[[2, 0]]) and metas == [{"n": 2}, {"n": 0}]
    assert store.get(["zz"])[1].shape == (0, 5)
    assert store.delete(["a", "zz"]) == 1 and store.count() == 2 and store.ids() == ["b", "c"]
    assert store.delete([]) == 0
