"""EASE equals its closed form; fusion sums standardised scores and picks weights on validation."""

import numpy as np

from llmrec.config import Config
from llmrec.data import load_ml_latest_small
from llmrec.data.splits import leave_one_out
from llmrec.eval.baselines import MostPopular
from llmrec.retrieval.ease import EASE
from llmrec.retrieval.fusion import Fusion, choose_weights, simplex
from llmrec.retrieval.knn import ItemKNN


def test_ease_matches_the_closed_form_and_has_a_zero_diagonal():
    rng = np.random.default_rng(1)
    n = 30
    seqs = [list(rng.choice(n, size=rng.integers(2, 10), replace=False)) for _ in range(50)]
    e = EASE(lam=5.0).fit_sequences(seqs, n)
    X = np.zeros((50, n))
    for r, s in enumerate(seqs):
        X[r, s] = 1
    P = np.linalg.inv(X.T @ X + 5.0 * np.eye(n))
    B = np.eye(n) - P / np.diag(P)
    np.testing.assert_allclose(e.B, B, atol=1e-5)
    assert np.all(np.diag(e.B) == 0)
    # (I - B) solves the ridge problem: X B ~ X with zero diagonal, so it must fit X better than B = 0
    assert np.linalg.norm(X - X @ e.B) < np.linalg.norm(X)
    U = e.user_vectors(seqs[:3])
    np.testing.assert_allclose(U @ e.item_vectors().T, U @ e.B, rtol=1e-5, atol=1e-6)


def test_simplex_grid():
    g = simplex(3, 0.5)
    assert sorted(g) == sorted([(0, 0, 1), (0, 0.5, 0.5), (0, 1, 0), (0.5, 0, 0.5), (0.5, 0.5, 0), (1, 0, 0)])
    assert len(simplex(3, 0.1)) == 66 and len(simplex(3)) == 231 and all(abs(sum(w) - 1) < 1e-9 for w in simplex(3))


def test_fusion_is_the_weighted_sum_of_standardised_scores_and_is_chosen_on_validation():
    split = leave_one_out(load_ml_latest_small(Config().ml_latest_small_dir), max_users=60)
    knn, pop = ItemKNN(50, half_life=1.0).fit(split), MostPopular().fit(split)
    f = Fusion([knn, pop], [0.7, 0.3])
    hist = [split.history(u, "test") for u in split.users[:5]]
    got = f.user_vectors(hist) @ f.item_vectors().T
    want = 0
    for m, w in ((knn, 0.7), (pop, 0.3)):
        S = m.user_vectors(hist) @ m.item_vectors().T
        want = want + w * S / S.std(axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    weights, valid, tried = choose_weights([knn, pop], split, step=0.25)
    assert len(tried) == 5 and valid == max(v for _, v in tried) and weights in [w for w, _ in tried]
    assert weights == next(w for w, v in tried if v == valid)  # the first best
