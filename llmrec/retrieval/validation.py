"""Choosing a hyper-parameter on the validation targets: the validation NDCG@10 of a scorer and the
recency half-life that maximises it (item-kNN, text-embedding similarity).

Ranks as the full-ranking protocol computes them (:func:`llmrec.eval.protocols.full_ranking`): every
item scored, the user's validation history masked, ties counted against the target.
"""

from __future__ import annotations

import numpy as np

from llmrec.data.splits import Split
from llmrec.metrics import ndcg_at_k, ranks_from_scores

HALF_LIVES = (0.0, 20.0, 5.0, 2.0, 1.0)
"""Recency half-lives (in items) tried on validation; 0 = all history items weigh the same."""


def validation_ndcg10(scorer, split: Split, batch: int = 512) -> float:
    """Mean validation NDCG@10 of ``scorer`` (``user_vectors(histories) @ item_vectors().T``; history =
    training items, masked) over ``split.users``."""
    V = np.ascontiguousarray(scorer.item_vectors(), dtype=np.float32)
    users = split.users
    ranks = []
    for s in range(0, len(users), batch):
        us = users[s:s + batch]
        hist = [split.history(u, "valid") for u in us]
        tgt = np.array([split.target(u, "valid") for u in us])
        U = np.ascontiguousarray(scorer.user_vectors(hist), dtype=np.float32)
        ranks.append(ranks_from_scores(U @ V.T, tgt, hist))
    return float(ndcg_at_k(np.concatenate(ranks), 10).mean())


def select_half_life(scorer, split: Split, grid=HALF_LIVES) -> float:
    """The recency half-life in ``grid`` with the best validation NDCG@10 (first best wins); sets
    ``scorer.half_life`` to it and ``scorer.valid_selection`` to ``{"half_life", "valid_ndcg10"}``."""
    best, best_h = -1.0, grid[0]
    for h in grid:
        scorer.half_life = h
        v = validation_ndcg10(scorer, split)
        if v > best:
            best, best_h = v, h
    scorer.half_life = best_h
    scorer.valid_selection = {"half_life": best_h, "valid_ndcg10": best}
    return best_h
