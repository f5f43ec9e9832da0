"""A free-text query in the candidates: its vector checked, the retriever's order blended with the
query's cosine, and the items closest to a query (a user with no history). Rows index the store's
item matrix ``vectors`` float32 [N, d] (L2-normalised text vectors)."""

from __future__ import annotations

import math

import numpy as np

from llmrec.errors import RequestError
from llmrec.rank.fuse import zscore
from llmrec.retrieval.topk import MAX_K, topk


def check_query(query_vector, weight, dim: int) -> tuple[np.ndarray, float]:
    """The L2-normalised query float32 [dim] and its weight in [0, 1].

    Raises:
        RequestError: not a finite non-zero vector of ``dim`` numbers, or a weight outside [0, 1]."""
    try:
        q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
        w = float(weight)
    except (TypeError, ValueError) as e:
        raise RequestError(f"query_vector must be a vector of numbers and query_weight a number: {e}") from None
    norm = float(np.linalg.norm(q)) if q.size else 0.0
    if q.shape != (dim,) or not math.isfinite(norm) or norm == 0:
        raise RequestError(f"query_vector must be a finite non-zero vector of {dim} numbers "
                           f"(the store's text vectors), got shape {tuple(q.shape)}")
    if not 0 <= w <= 1:
        raise RequestError(f"query_weight must be in [0, 1], got {weight!r}")
    return q / norm, w


def blend(rows: np.ndarray, vectors: np.ndarray, taken: set[int], q: np.ndarray, w: float,
          n: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``n`` of the retriever's ``rows`` (best first) plus the query's own top ``n`` rows not in
    ``taken`` (the history, the excluded and ``rows``), by ``(1 - w) * z(-place) + w * z(cosine)``: place
    the retriever's order (an item only the query found: ``len(rows)``), z standardised over the pool.
    Returns (rows [<= n], blend scores float32), ties broken by row."""
    place = np.arange(len(rows), dtype=np.float64)  # the retriever's order (its scores may mix scales)
    m = min(n, len(vectors) - len(taken))
    if m >= 1:
        _, idx = topk(q[None], vectors, m, exclude=[sorted(taken)])
        extra = idx[0].numpy()
        rows = np.concatenate([rows, extra])
        place = np.concatenate([place, np.full(len(extra), float(len(place)))])
    score = (1 - w) * zscore(-place) + w * zscore((vectors[rows] @ q).astype(np.float64))
    order = np.lexsort((rows, -score))[:n]
    return rows[order], score[order].astype(np.float32)


def closest(vectors: np.ndarray, q: np.ndarray, k: int, skip: frozenset) -> tuple[list[int], list[float]]:
    """The ``k`` rows (at most ``MAX_K``) closest to ``q`` by cosine, ``skip`` excluded, best first, with
    their cosines."""
    k = min(k, MAX_K, len(vectors) - len(skip))
    if k < 1:
        return [], []
    scores, idx = topk(q[None], vectors, k, exclude=[sorted(skip)])
    return idx[0].tolist(), scores[0].tolist()
