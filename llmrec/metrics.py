"""Ranking metrics as small pure functions (RecBole style: hand-derived values in tests).

Conventions:

- A *rank* is 0-based: rank 0 = the first position.
- Ties count against the target: the rank of a target is the number of OTHER candidates whose
  score is >= its score (so a constant scorer ranks every target last, never first).
- With one relevant item (leave-one-out), Recall@K = HR@K = [rank < K],
  NDCG@K = [rank < K] / log2(rank + 2), MRR@K = [rank < K] / (rank + 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KS = (1, 5, 10, 20)


def target_rank(scores: Sequence[float], target: int, masked: Sequence[int] = ()) -> int:
    """0-based rank of ``scores[target]`` among the unmasked entries; ties count against it.

    Args:
        scores: one score per candidate (higher is better).
        target: index of the relevant candidate.
        masked: indices removed from the ranking (the user's history); must not hold ``target``.
    """
    s = np.asarray(scores, dtype=np.float64)
    keep = np.ones(len(s), dtype=bool)
    keep[list(masked)] = False
    if not keep[target]:
        raise ValueError(f"target {target} is masked")
    keep[target] = False
    t = s[target]
    if np.isnan(t):
        return int(keep.sum())
    return int(np.sum(s[keep] >= t))


def ranks_from_scores(scores: np.ndarray, targets: np.ndarray, masked: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Vectorised :func:`target_rank`: scores float [B, N], targets int [B], masked per row -> int64 [B]."""
    s = np.asarray(scores, dtype=np.float64)
    B = s.shape[0]
    rows = np.arange(B)
    t = s[rows, targets]
    count = np.ones(s.shape, dtype=bool)  # entries that may count against the target
    if masked is not None:
        for b, m in enumerate(masked):
            if len(m):
                count[b, np.asarray(m, dtype=np.int64)] = False
    count[rows, targets] = False  # the target does not count against itself
    r = ((s >= t[:, None]) & count).sum(1)
    nan = np.isnan(t)
    r[nan] = count[nan].sum(1)
    return r.astype(np.int64)


def ndcg10_from_scores(scores: np.ndarray, targets, masked: Sequence[Sequence[int]]) -> float:
    """Mean NDCG@10 of ``targets`` under ``scores`` [B, N], each row's ``masked`` items excluded
    (:func:`ranks_from_scores`): the validation criterion every model choice in llmrec uses."""
    return float(ndcg_at_k(ranks_from_scores(scores, np.asarray(targets), masked), 10).mean())


def recall_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per user Recall@K = HR@K with one relevant item: 1.0 if rank < K else 0.0."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per user NDCG@K with one relevant item: 1 / log2(rank + 2) if rank < K else 0 (ideal DCG = 1)."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def mrr_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per user MRR@K: 1 / (rank + 1) if rank < K else 0."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / (r + 1.0), 0.0)


def recall_list(ranked: Sequence, relevant: set, k: int) -> float:
    """Recall@K of a ranked list against a set of relevant items: hits in the top K / min(|relevant|, K)
    (LlamaRec's definition; = HR@K with one relevant item)."""
    if not relevant:
        raise ValueError("no relevant item")
    return sum(1 for x in list(ranked)[:k] if x in relevant) / min(len(relevant), k)


def ndcg_list(ranked: Sequence, relevant: set, k: int) -> float:
    """NDCG@K of a ranked list: DCG = sum over hits at 0-based position p of 1/log2(p + 2), divided by
    the ideal DCG over min(|relevant|, K) positions."""
    if not relevant:
        raise ValueError("no relevant item")
    dcg = sum(1.0 / np.log2(p + 2.0) for p, x in enumerate(list(ranked)[:k]) if x in relevant)
    idcg = sum(1.0 / np.log2(p + 2.0) for p in range(min(len(relevant), k)))
    return float(dcg / idcg)


def mrr_list(ranked: Sequence, relevant: set, k: int) -> float:
    """MRR@K of a ranked list: 1 / (position + 1) of the first relevant item in the top K, else 0."""
    for p, x in enumerate(list(ranked)[:k]):
        if x in relevant:
            return 1.0 / (p + 1)
    return 0.0


def per_user(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, np.ndarray]:
    """Every metric for every K, per user: {"Recall@10": float64 [B], "NDCG@10": ..., "MRR@10": ...}."""
    out = {}
    for k in ks:
        out[f"Recall@{k}"] = recall_at_k(ranks, k)
        out[f"NDCG@{k}"] = ndcg_at_k(ranks, k)
        out[f"MRR@{k}"] = mrr_at_k(ranks, k)
    return out


def summarize(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Means over users of :func:`per_user`."""
    return {m: float(v.mean()) for m, v in per_user(ranks, ks).items()}


def bootstrap_ci(values: np.ndarray, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of the mean of ``values`` (one value per user),
    resampling users with replacement ``n`` times with a fixed seed."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n, len(v)))
    means = v[idx].mean(1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def paired_diff_ci(a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0,
                   alpha: float = 0.05) -> tuple[float, float, float]:
    """Paired percentile bootstrap of mean(a) - mean(b), ``a`` and ``b`` one value per user for the
    SAME users (resampled together, so the users' shared difficulty cancels). Returns (difference,
    low, high). Raises ValueError when the lengths differ."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same users: {a.shape} vs {b.shape}")
    d = a - b
    if len(d) == 0:
        return (float("nan"), float("nan"), float("nan"))
    lo, hi = bootstrap_ci(d, n, seed, alpha)
    return float(d.mean()), lo, hi
