"""Score fusion of retrievers of different families (e.g. SASRec + EASE + item-kNN).

Each member's scores are standardised per user (divided by their standard deviation over all
items; the mean, a per-user constant, does not change the order) and summed with weights chosen
on VALIDATION NDCG@10 over a simplex grid (step 0.05). Because ``(w/sd) * u . v`` is linear in ``u``, the fused
scorer is still ``user_vectors @ item_vectors.T`` (concatenated, scaled member vectors), so it is
retrieved with one ``llmrec.topk`` call like any member.
"""

from __future__ import annotations

import itertools

import numpy as np

from llmrec.retrieval.scores import score


class Fusion:
    """Weighted sum of standardised member scores. ``members``: scorers with ``user_vectors``
    and ``item_vectors`` over the same item order; ``weights``: one float >= 0 each."""

    kind = "fusion"
    dense_scores = False

    def __init__(self, members: list, weights: list[float], name: str = "fusion"):
        if len(members) != len(weights) or not members:
            raise ValueError("fusion needs one weight per member and at least one member")
        self.members, self.weights, self.name = members, [float(w) for w in weights], name
        self._items = [m.item_vectors() for m in members]

    def user_vectors(self, histories: list[list[int]]) -> np.ndarray:
        """float32 [B, sum of member dims]: member user vectors scaled by weight / score sd."""
        parts = []
        for m, V, w in zip(self.members, self._items, self.weights, strict=True):
            U = m.user_vectors(histories).astype(np.float32)
            sd = (U @ V.T).std(axis=1, keepdims=True)
            parts.append(U * (w / np.maximum(sd, 1e-12)))
        return np.concatenate(parts, axis=1)

    def item_vectors(self) -> np.ndarray:
        return np.concatenate(self._items, axis=1)


def simplex(n: int, step: float = 0.05) -> list[tuple[float, ...]]:
    """Weight vectors of ``n`` members on a grid of ``step``, summing to 1."""
    k = round(1 / step)
    return [tuple(c / k for c in combo) for combo in itertools.product(range(k + 1), repeat=n)
            if sum(combo) == k]


def choose_weights(members: list, split=None, step: float = 0.05, log=None, histories=None,
                   targets=None) -> tuple[list[float], float, list]:
    """The simplex weights with the best validation NDCG@10 (first best wins, in :func:`simplex`
    order). Validation: a split's (training history, validation target) pairs, or explicit
    ``histories`` (item indices, masked) and ``targets``. Member scores are computed once.
    Returns (weights, validation NDCG@10, every (weights, NDCG@10) tried)."""
    from llmrec.metrics import ndcg10_from_scores

    if split is not None:
        histories = [split.history(u, "valid") for u in split.users]
        targets = [split.target(u, "valid") for u in split.users]
    tgt = np.asarray(targets)
    Z = [standardised(_scores(m, histories)) for m in members]
    best, tried = (-1.0, None), []
    for w in simplex(len(members), step):
        S = sum(wi * z for wi, z in zip(w, Z, strict=True) if wi)
        v = ndcg10_from_scores(S, tgt, histories)
        tried.append((list(w), v))
        if log:
            log(f"[fusion] weights {w}: valid NDCG@10 {v:.4f}")
        if v > best[0]:
            best = (v, list(w))
    return best[1], best[0], tried


def _scores(m, histories) -> np.ndarray:
    """float32 [B, N]: a member's own ``scores`` (``dense_scores``, e.g. item-kNN: sparse) or
    ``user_vectors @ item_vectors.T`` (:func:`llmrec.retrieval.base.score`)."""
    return score(m, histories)


def standardised(S: np.ndarray) -> np.ndarray:
    """float32 [B, N]: each row of scores divided by its standard deviation over the items."""
    return S / np.maximum(S.std(axis=1, keepdims=True), 1e-12)


class FusedRetriever:
    """The store's fused retriever (``llmrec train-retriever``, kind ``fusion``): named members over
    the same item ids (SASRec or its seed ensemble, item-kNN, EASE), their standardised scores
    summed with ``weights`` (chosen on validation). ``members``: name -> a
    :class:`~llmrec.retrieval.base.Retriever` over indices into ``item_ids`` (SASRec wrapped in
    :class:`~llmrec.retrieval.sasrec_retriever.IndexScorer`). ``soft``: the member whose item vectors are the
    trained ranker's soft-token inputs (the SASRec), or None.

    ``scores(histories of item ids) -> float32 [B, N]`` in ``item_ids`` order (unknown ids skipped)."""

    kind = "fusion"
    dense_scores = True

    def __init__(self, members: dict, weights: list[float], item_ids: list[str], soft: str | None = None):
        if len(members) != len(weights):
            raise ValueError("one weight per fusion member")
        self.soft = soft
        self.members, self.weights, self.item_ids = members, [float(w) for w in weights], list(item_ids)
        self.index = {i: n for n, i in enumerate(self.item_ids)}

    def scores(self, histories: list[list[str]]) -> np.ndarray:
        idx = [[self.index[i] for i in h if i in self.index] for h in histories]
        total = np.zeros((len(idx), len(self.item_ids)), dtype=np.float32)
        for m, w in zip(self.members.values(), self.weights, strict=True):
            if w:
                total += w * standardised(score(m, idx))
        return total

    def soft_token_vectors(self) -> np.ndarray | None:
        """float32 [N, d]: the item vectors of its ``soft`` member (SASRec or its ensemble); None
        when it has none."""
        return None if self.soft is None else self.members[self.soft].item_vectors()
