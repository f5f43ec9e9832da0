"""Fusion of the LLM ranker with the retriever: ``w * z(LLM label log-probability) + (1 - w) *
z(retriever score)``, z-scores over each user's candidates, ``w`` chosen on validation NDCG@10 over
a 0.05 grid (w = 0: the retriever's order; w = 1: the LLM's)."""

from __future__ import annotations

import numpy as np

from llmrec.metrics import target_rank

WEIGHT_STEP = 0.05


def zscore(x: np.ndarray) -> np.ndarray:
    """float64, standardised over the last axis (a constant row becomes zeros)."""
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(-1, keepdims=True)
    return (x - x.mean(-1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def fuse(llm: np.ndarray, retr: np.ndarray, w: float) -> np.ndarray:
    """float64 [..., n]: ``w * z(llm) + (1 - w) * z(retr)`` over the last axis (one user's candidates)."""
    return w * zscore(llm) + (1 - w) * zscore(retr)


def ndcg10(scores: np.ndarray, pos: np.ndarray) -> float:
    """Mean NDCG@10 of the target (position ``pos[b]``) among each row's candidates; ties against it."""
    r = np.array([target_rank(s, int(p)) for s, p in zip(scores, pos, strict=True)])
    return float(np.where(r < 10, 1 / np.log2(r + 2.0), 0).mean()) if len(r) else 0.0


def choose_weight(llm: np.ndarray, retr: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    """(weight, NDCG@10) of the best grid weight on validation ([B, n] LLM log-probs, [B, n] retriever
    scores, [B] target positions); the first best wins, from w = 0 (the retriever alone)."""
    best = (0.0, -1.0)
    for w in np.round(np.arange(0, 1 + 1e-9, WEIGHT_STEP), 4):
        v = ndcg10(fuse(llm, retr, float(w)), pos)
        if v > best[1]:
            best = (float(w), v)
    return best
