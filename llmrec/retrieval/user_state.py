"""First user state: a recency-weighted mean of the history's item vectors."""

from __future__ import annotations

import numpy as np


def recency_weighted(history_vecs: np.ndarray, half_life: float) -> np.ndarray:
    """User vector from history item vectors [H, d] ordered oldest first.

    The most recent item weighs 1, and the weight halves every ``half_life`` items back.
    Returns float32 [d], L2-normalised. Raises ValueError on an empty history.
    """
    H = history_vecs.shape[0]
    if H == 0:
        raise ValueError("an empty history has no user state (use a cold-start path)")
    if half_life <= 0:
        raise ValueError(f"half_life must be > 0, got {half_life}")
    age = np.arange(H - 1, -1, -1, dtype=np.float64)
    w = 0.5 ** (age / half_life)
    v = (w[:, None] * history_vecs.astype(np.float64)).sum(0)
    n = np.linalg.norm(v)
    return (v / n if n > 0 else v).astype(np.float32)
