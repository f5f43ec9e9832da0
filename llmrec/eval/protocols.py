"""Evaluation protocols.

**Full ranking, leave-one-out** (LlamaRec, Yue et al. 2023): every item of the catalog is scored;
the user's input history is masked; the target's rank decides the metrics (ties count against
it). With a ranker, the retriever's top ``candidates`` (20) go to the ranker with the last
``history_max`` (20) history items; users whose target is not among the candidates keep the
retriever's order (their rank is >= 20, so every metric@K<=20 is 0 either way, and the ranker is
not called for them).

**Sampled candidates** (LLaRA, Liao et al., SIGIR 2024): per user, the target plus
``negatives`` (19) items sampled uniformly, with a fixed seed, from the items the user never
interacted with, shuffled; the system orders these 20; HR@1 and the ratio of valid answers
(a ranker may answer ``None``: invalid, counted as a miss).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from llmrec.data.splits import Split
from llmrec.data.types import Item
from llmrec.metrics import ranks_from_scores, target_rank
from llmrec.retrieval.topk import topk


@runtime_checkable
class Scorer(Protocol):
    """A retriever/baseline: scores = user_vectors(histories) @ item_vectors().T."""

    name: str

    def user_vectors(self, histories: list[list[int]]) -> np.ndarray: ...

    def item_vectors(self) -> np.ndarray: ...


@runtime_checkable
class Ranker(Protocol):
    """The ranker stage (e.g. the LLM verbalizer ranker).

    ``rank(user_history_items, candidate_items)`` gets the user's history (chronological, at most
    ``history_max`` items, never the target) and the candidates (in the order they are shown);
    it returns one score per candidate (higher = better, ties count against the target), or
    ``None`` when it could not produce a valid answer.
    """

    name: str

    def rank(self, user_history_items: list[Item], candidate_items: list[Item]) -> Sequence[float] | None: ...


class ScorerRanker:
    """Any :class:`Scorer` as a :class:`Ranker` (scores the candidates with the full history given)."""

    def __init__(self, scorer: Scorer, split: Split):
        self.scorer, self.name = scorer, scorer.name
        self.index = {i: n for n, i in enumerate(split.item_ids)}
        self.V = scorer.item_vectors()

    def rank(self, user_history_items, candidate_items):
        h = [self.index[it.id] for it in user_history_items]
        u = self.scorer.user_vectors([h])[0]
        return (self.V[[self.index[it.id] for it in candidate_items]] @ u).tolist()


def _progress(label: str, done: int, total: int, t0: float, log) -> None:
    el = time.time() - t0
    eta = el / max(done, 1) * (total - done)
    log(f"[{label}] {done}/{total} users, {el:.1f}s elapsed, ETA {eta:.1f}s")


def full_ranking(scorer: Scorer, split: Split, stage: str, users: Sequence[str], candidates: int = 20,
                 batch: int = 512, log=None, label: str = "") -> dict:
    """Score all N items for each user, history masked.

    Returns:
        {"ranks": int64 [B] (0-based, ties against), "top": int64 [B, candidates] (item indices,
        best first, via ``llmrec.topk``), "seconds": float}.
    """
    t0 = time.time()
    V = np.ascontiguousarray(scorer.item_vectors(), dtype=np.float32)
    ranks, tops = [], []
    for s in range(0, len(users), batch):
        us = users[s:s + batch]
        hist = [split.history(u, stage) for u in us]
        tgt = np.array([split.target(u, stage) for u in us])
        U = np.ascontiguousarray(scorer.user_vectors(hist), dtype=np.float32)
        scores = U @ V.T
        ranks.append(ranks_from_scores(scores, tgt, hist))
        k = min(candidates, split.n_items - max(len(h) for h in hist))
        _, idx = topk(torch.from_numpy(U), torch.from_numpy(V), k, exclude=hist)
        tops.append(idx.numpy())
        if log:
            _progress(label or scorer.name, min(s + batch, len(users)), len(users), t0, log)
    return {"ranks": np.concatenate(ranks), "top": np.concatenate(tops), "seconds": time.time() - t0}


def rerank(full: dict, ranker: Ranker, split: Split, stage: str, users: Sequence[str], history_max: int = 20,
           log=None) -> dict:
    """Apply ``ranker`` to the retriever's top candidates of :func:`full_ranking` (LlamaRec).

    Returns:
        {"ranks": int64 [B], "called": users sent to the ranker, "valid": valid answers,
        "seconds": float}. An invalid answer keeps the retriever's order for that user.
    """
    t0 = time.time()
    ranks = full["ranks"].copy()
    called = valid = 0
    todo = [b for b, u in enumerate(users) if split.target(u, stage) in set(full["top"][b].tolist())]
    for n, b in enumerate(todo):
        u = users[b]
        cand = [int(i) for i in full["top"][b]]
        hist = split.history(u, stage)[-history_max:] if history_max > 0 else []
        scores = ranker.rank([split.items[i] for i in hist], [split.items[i] for i in cand])
        called += 1
        pos = cand.index(split.target(u, stage))
        if scores is None or len(scores) != len(cand):
            ranks[b] = pos
        else:
            valid += 1
            ranks[b] = target_rank(scores, pos)
        if log and (n + 1) % 50 == 0:
            _progress(f"rerank {ranker.name}", n + 1, len(todo), t0, log)
    return {"ranks": ranks, "called": called, "valid": valid, "seconds": time.time() - t0}


def sample_candidates(split: Split, stage: str, users: Sequence[str], negatives: int = 19,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """LLaRA's candidate sets: per user the target + ``negatives`` distinct items never in the
    user's whole sequence (train, validation and test), uniformly with ``seed``, shuffled.

    Returns:
        (cands int64 [B, negatives + 1], target position int64 [B]).
    """
    rng = np.random.default_rng(seed)
    cands, pos = [], []
    for u in users:
        seen = set(split.train[u]) | {split.valid[u], split.test[u]}
        pool = np.setdiff1d(np.arange(split.n_items), np.fromiter(seen, dtype=np.int64))
        neg = rng.choice(pool, size=min(negatives, len(pool)), replace=False)
        c = np.concatenate([[split.target(u, stage)], neg])
        perm = rng.permutation(len(c))
        cands.append(c[perm])
        pos.append(int(np.where(perm == 0)[0][0]))
    return np.stack(cands).astype(np.int64), np.asarray(pos, dtype=np.int64)


def sampled(system, split: Split, stage: str, users: Sequence[str], negatives: int = 19, seed: int = 0,
            history_max: int = 20, log=None) -> dict:
    """The LLaRA protocol for a :class:`Scorer` (scores read from its vectors; full history) or a
    :class:`Ranker` (called per user with the last ``history_max`` history items).

    Returns:
        {"ranks": int64 [B] among the candidates (invalid -> last), "valid": int, "seconds"}.
    """
    t0 = time.time()
    cands, pos = sample_candidates(split, stage, users, negatives, seed)
    ranks = np.empty(len(users), dtype=np.int64)
    valid = 0
    if isinstance(system, Scorer) and not isinstance(system, Ranker):
        V = system.item_vectors()
        for s in range(0, len(users), 512):
            hist = [split.history(u, stage) for u in users[s:s + 512]]
            U = system.user_vectors(hist)
            sc = np.einsum("bd,bcd->bc", U, V[cands[s:s + 512]])
            ranks[s:s + 512] = ranks_from_scores(sc, pos[s:s + 512])
        valid = len(users)
    else:
        for b, u in enumerate(users):
            hist = split.history(u, stage)[-history_max:] if history_max > 0 else []
            out = system.rank([split.items[i] for i in hist], [split.items[i] for i in cands[b]])
            if out is None or len(out) != cands.shape[1]:
                ranks[b] = cands.shape[1] - 1
            else:
                valid += 1
                ranks[b] = target_rank(out, int(pos[b]))
            if log and (b + 1) % 50 == 0:
                _progress(f"sampled {system.name}", b + 1, len(users), t0, log)
    return {"ranks": ranks, "valid": valid, "seconds": time.time() - t0}
