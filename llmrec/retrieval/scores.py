"""How any retriever is scored: the one place that reads ``dense_scores`` (a leaf module, so that
retrievers such as the fusion can use it without importing the registry)."""

from __future__ import annotations

import numpy as np


def score(r, histories: list[list[int]]) -> np.ndarray:
    """float32 [B, N]: ``r.scores(histories)`` when ``r.dense_scores``, else
    ``user_vectors(histories) @ item_vectors().T`` (see :class:`llmrec.retrieval.base.Retriever`)."""
    if r.dense_scores:
        return np.asarray(r.scores(histories)).astype(np.float32)
    return r.user_vectors(histories).astype(np.float32) @ r.item_vectors().T
