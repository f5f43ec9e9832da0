"""Item-kNN: the sparse fit equals a dense reference, selection rules, the store cache."""

import numpy as np
import pytest

from llmrec.retrieval.knn import ItemKNN, fit_for_store, top_scored
from llmrec.retrieval.store_data import interactions_fingerprint, store_sequences


def _dense_reference(seqs, n, neighbors):
    X = np.zeros((len(seqs), n), dtype=np.float32)
    for r, s in enumerate(seqs):
        X[r, s] = 1.0
    co = X.T @ X
    norm = np.sqrt(np.diag(co)).astype(np.float32)
    sim = co / np.maximum(norm[:, None] * norm[None, :], 1e-12)
    np.fill_diagonal(sim, 0.0)
    if 0 < neighbors < n:
        cut = np.partition(sim, n - neighbors, axis=1)[:, n - neighbors][:, None]
        sim = np.where(sim >= cut, sim, 0.0)
    return sim


@pytest.mark.parametrize("neighbors", [0, 3, 1000])
def test_sparse_fit_equals_the_dense_definition(neighbors):
    rng = np.random.default_rng(0)
    n = 60
    seqs = [list(rng.choice(n, size=rng.integers(2, 15), replace=False)) for _ in range(80)]
    knn = ItemKNN(neighbors, half_life=2.0).fit_sequences(seqs, n)
    ref = _dense_reference(seqs, n, neighbors)
    np.testing.assert_array_equal(knn.sim.toarray(), ref)
    H = seqs[:7]
    from llmrec.retrieval.knn import recency_weights

    U = np.zeros((7, n), dtype=np.float32)
    for b, h in enumerate(H):
        np.add.at(U[b], h, recency_weights(len(h), 2.0).astype(np.float32))
    np.testing.assert_allclose(knn.scores(H), U @ ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(knn.user_vectors(H) @ knn.item_vectors().T, U @ ref, rtol=1e-5, atol=1e-6)


def test_fit_rejects_out_of_range_items():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ItemKNN().fit_sequences([[0, 5]], 3)


def test_top_scored_positive_only_ties_to_lower_index_and_exclusions():
    s = np.array([0.5, 0.0, 0.9, 0.5, -1.0, 0.9, 0.2], dtype=np.float32)
    idx, sc = top_scored(s, 10, exclude=[6])
    assert idx.tolist() == [2, 5, 0, 3] and sc.tolist() == [s[2], s[5], s[0], s[3]]
    assert top_scored(s, 2, exclude=[2]).__getitem__(0).tolist() == [5, 0]
    assert s[6] == np.float32(0.2)  # the input is not modified


def test_store_cache_is_refitted_when_interactions_change(small_ml100k, tmp_path):
    ids = [it.id for it in small_ml100k.items]
    data = store_sequences(small_ml100k.interactions, ids)
    a = fit_for_store(tmp_path, data, 50)
    assert (tmp_path / "item-knn.npz").exists() and a.half_life in (0.0, 20.0, 5.0, 2.0, 1.0)
    b = fit_for_store(tmp_path, data, 50)  # from the cache
    assert (b.sim != a.sim).nnz == 0 and b.half_life == a.half_life
    fewer = store_sequences(small_ml100k.interactions[:-500], ids)
    assert fewer.fingerprint != data.fingerprint
    c = fit_for_store(tmp_path, fewer, 50)
    assert c.sim.nnz != a.sim.nnz or (c.sim != a.sim).nnz > 0


def test_fingerprint_ignores_order_and_sees_every_row(small_ml100k):
    rows = small_ml100k.interactions[:200]
    assert interactions_fingerprint(rows) == interactions_fingerprint(rows[::-1])
    assert interactions_fingerprint(rows) != interactions_fingerprint(rows[:-1])
