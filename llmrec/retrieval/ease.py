"""EASE: a closed-form linear item-item model (Steck, "Embarrassingly Shallow Autoencoders for
Sparse Data", WWW 2019).

With X the binary user x item training matrix and G = X^T X + lambda * I, P = G^-1, the weights
are B = I - P / diag(P) (column-wise), i.e. ridge regression of each item on all others with a
zero diagonal. A user's score for item j is ``sum_h B[h, j]`` over the history items h (here with
recency weights, as item-kNN: the newest weighs 1, halving every ``half_life`` items back).

Dense N x N: fit O(N^3) time and O(N^2) memory (N = 3,650: ~1 s and 53 MB). For the harness and
catalogs up to ~20k items.
"""

from __future__ import annotations

import numpy as np

from llmrec.retrieval.knn import HALF_LIVES, recency_weights

LAMBDAS = (10.0, 25.0, 50.0, 100.0, 200.0, 400.0, 800.0)
"""L2 strengths tried on validation."""


class EASE:
    """EASE over 0-based item indices. ``lam``: the L2 strength (None = choose on validation)."""

    kind = name = "ease"
    dense_scores = False

    def __init__(self, lam: float | None = None, half_life: float = 0.0):
        self.lam, self.half_life = lam, half_life

    def fit_sequences(self, sequences: list[list[int]], n_items: int, lam: float | None = None) -> EASE:
        """Fit on per-user index sequences; ``self.B`` is float32 [N, N]."""
        G = np.zeros((n_items, n_items), dtype=np.float64)
        for s in sequences:
            u = np.unique(np.asarray(s, dtype=np.int64))
            G[np.ix_(u, u)] += 1.0
        self._G = G
        self._set_lambda(self.lam if lam is None else lam)
        self.n_items = n_items
        return self

    def _set_lambda(self, lam: float) -> None:
        G = self._G.copy()
        G[np.diag_indices_from(G)] += lam
        P = np.linalg.inv(G)
        B = -P / np.diag(P)[None, :]
        B[np.diag_indices_from(B)] = 0.0
        self.B, self.lam = B.astype(np.float32), lam

    def fit(self, split) -> EASE:
        """Fit on a split's training part; ``lam`` (and the recency half-life) chosen on validation
        NDCG@10 when ``lam`` is None."""
        choose = self.lam is None
        self.fit_sequences([split.train[u] for u in split.users], split.n_items,
                           lam=LAMBDAS[0] if choose else self.lam)
        if choose:
            self.select([split.history(u, "valid") for u in split.users],
                        [split.target(u, "valid") for u in split.users])
        del self._G
        return self

    def select(self, histories: list[list[int]], targets: list[int]) -> dict:
        """Choose ``lam`` in :data:`LAMBDAS` and the recency half-life on (history, target) pairs
        by NDCG@10 (history masked; first best wins), after :meth:`fit_sequences`. Returns the choice."""
        from llmrec.metrics import ndcg10_from_scores

        best = (-1.0, None, None)
        for lam in LAMBDAS:
            self._set_lambda(lam)
            for h in HALF_LIVES:
                self.half_life = h
                S = self.user_vectors(histories) @ self.B
                v = ndcg10_from_scores(S, targets, histories)
                if v > best[0]:
                    best = (v, lam, h)
        self._set_lambda(best[1])
        self.half_life = best[2]
        self.valid_selection = {"lambda": best[1], "half_life": best[2], "valid_ndcg10": best[0]}
        return self.valid_selection

    def user_vectors(self, histories: list[list[int]]) -> np.ndarray:
        """float32 [B, N]: recency-weighted history indicators."""
        U = np.zeros((len(histories), self.n_items), dtype=np.float32)
        for b, h in enumerate(histories):
            if h:
                np.add.at(U[b], h, recency_weights(len(h), self.half_life).astype(np.float32))
        return U

    def item_vectors(self) -> np.ndarray:
        """float32 [N, N] = B^T (row j = every item's weight towards j)."""
        return np.ascontiguousarray(self.B.T)
