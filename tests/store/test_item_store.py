import numpy as np
import pytest

from llmrec.errors import StoreError
from llmrec.ingest import ingest
from llmrec.store import ItemStore


def test_ingest_twice_leaves_the_count(base_cfg, small_ml100k, tmp_path):
    cfg = base_cfg.replace(data_dir=tmp_path / "s")
    first = ingest(cfg, small_ml100k, log=lambda *_: None)
    second = ingest(cfg, small_ml100k, log=lambda *_: None)
    assert first["items_in_store"] == second["items_in_store"] == 300
    assert first["interactions_in_store"] == second["interactions_in_store"] == len(small_ml100k.interactions)
    assert (first["items_unchanged"], second["items_unchanged"]) == (0, 300)
    ids, mat, metas = ItemStore(tmp_path / "s").matrix()
    assert ids[:3] == ["1", "2", "3"] and mat.shape == (300, 384)
    assert metas[0]["title"] == "Toy Story (1995)"
    np.testing.assert_allclose(np.linalg.norm(mat, axis=1), 1.0, atol=1e-5)
    # A changed item is re-encoded in place: same count, new vector and metadata.
    from llmrec.data.types import Dataset, Item

    changed = Dataset("edit", [Item("1", "Toy Story (1995)", "Genres: Documentary.")], [])
    third = ingest(cfg, changed, log=lambda *_: None)
    assert third["items_in_store"] == 300 and third["items_unchanged"] == 0
    assert third["interactions_in_store"] == len(small_ml100k.interactions)
    ids2, mat2, metas2 = ItemStore(tmp_path / "s").matrix()
    assert metas2[0]["text"] == "Genres: Documentary." and not np.allclose(mat2[0], mat[0])
    np.testing.assert_array_equal(mat2[1:], mat[1:])


def test_duplicate_ids_rejected_and_nothing_written(tmp_path):
    store = ItemStore(tmp_path)
    store.upsert(["a", "b"], np.eye(2, 4, dtype=np.float32))
    with pytest.raises(StoreError, match="duplicate item id.*c"):
        store.upsert(["c", "d", "c"], np.ones((3, 4), np.float32))
    assert store.count() == 2


def test_dimension_mismatch_names_both(tmp_path):
    store = ItemStore(tmp_path)
    store.upsert(["a"], np.ones((1, 4), np.float32), [{"title": "A"}])
    with pytest.raises(StoreError, match="dimension 3 .* dimension 4"):
        store.upsert(["b"], np.ones((1, 3), np.float32))
    with pytest.raises(StoreError, match="non-finite"):
        store.upsert(["b"], np.array([[1, np.nan, 0, 0]], np.float32))
    ids, mat, metas = store.matrix()
    assert ids == ["a"] and metas == [{"title": "A"}]


def test_same_title_different_ids_are_two_items(tmp_path):
    store = ItemStore(tmp_path)
    store.upsert(["1", "2"], np.eye(2, 4, dtype=np.float32), [{"title": "Hamlet"}, {"title": "Hamlet"}])
    assert store.count() == 2


def test_batches_follow_the_client_limit(tmp_path):
    store = ItemStore(tmp_path)
    limit = store.client.get_max_batch_size()
    calls = []
    n = limit + 7
    store.upsert([str(i) for i in range(n)], np.random.default_rng(0).random((n, 8), np.float32),
                 progress=calls.append)
    assert calls == [limit, 7] and store.count() == n
