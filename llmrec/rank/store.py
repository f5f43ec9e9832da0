"""The trained ranker of a store (``llmrec train-ranker --data-dir DIR``), used by ``recommend``.

Trained on the store's interactions with the store's trained retriever (``llmrec train-retriever``):
the same hold-out as the retriever (each user with >= 3 items keeps the last one for validation),
targets sliding over the rest; soft-token inputs from the retriever's SASRec item vectors. The
checkpoint (``{data_dir}/ranker/``, or ``ranker_dir``) records the retriever's identity, so a
retrained retriever makes ``recommend`` refuse the old ranker until it is retrained.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from llmrec.errors import ModelError
from llmrec.rank.train import RankData, train_ranker


def ranker_path(cfg) -> Path:
    """``ranker_dir``, else ``{data_dir}/ranker``."""
    return Path(cfg.rank.dir) if cfg.rank.dir else cfg.store_dir() / "ranker"


def retriever_identity(cfg, manifest: dict) -> dict:
    """The store retriever's identity: kind, interactions fingerprint and the sha256 of its manifest."""
    man = cfg.retriever_path() / "manifest.json"
    sha = hashlib.sha256(man.read_bytes()).hexdigest()[:16] if man.exists() else None
    return {"kind": manifest.get("kind"), "fingerprint": manifest.get("fingerprint"), "manifest_sha256": sha}


class _IndexScores:
    """A store retriever as scores over its own item indices (``dense_scores``: always ``scores``)."""

    dense_scores = True

    def __init__(self, retriever):
        self.r = retriever
        self.kind = self.name = retriever.kind

    def scores(self, histories: list[list[int]]) -> np.ndarray:
        if self.r.dense_scores:  # e.g. fusion: scores over item ids
            ids = self.r.item_ids
            return self.r.scores([[ids[i] for i in h] for h in histories])
        return self.r.user_vectors_idx(histories) @ self.r.item_vectors().T


def sasrec_vectors(retriever) -> np.ndarray:
    """float32 [N, d]: the SASRec (or seed-ensemble) item vectors inside a store retriever
    (its ``soft_token_vectors()``). Raises ModelError: a fusion without a SASRec member."""
    v = retriever.soft_token_vectors()
    if v is None:
        raise ModelError("the fused retriever has no SASRec member to give soft-token vectors")
    return v


def store_rank_data(rec) -> RankData:
    """:class:`RankData` of a loaded :class:`~llmrec.recommender.Recommender`'s store.

    Raises ModelError: no trained retriever, or one trained on other interactions than the store's."""
    cfg = rec.cfg
    if rec.retriever is None:
        raise ModelError(f"train-ranker needs the store's trained retriever: run `llmrec train-retriever "
                         f"--data-dir {cfg.store_dir()}` first")
    if rec.manifest.get("fingerprint") != rec.data.fingerprint or list(rec.retriever.item_ids) != rec.data.item_ids:
        raise ModelError(f"the trained retriever in {cfg.retriever_path()} was trained on other interactions "
                         f"than the store holds now: run `llmrec train-retriever --data-dir {cfg.store_dir()}` first")
    train, vu, vt = rec.data.holdout()
    items = [rec.items[rec.index[i]] for i in rec.data.item_ids]
    return RankData(items=items, train_seqs=train, valid=[(train[u], t) for u, t in zip(vu, vt, strict=True)],
                    scorer=_IndexScores(rec.retriever), vectors=sasrec_vectors(rec.retriever),
                    retriever=retriever_identity(cfg, rec.manifest))


def train_for_store(cfg, rec, log=print, fresh: bool = False) -> dict:
    """Train (or resume) the store's ranker on ``rec`` (the store's loaded
    :class:`~llmrec.recommender.Recommender`, ``Recommender.load(config=cfg)``); returns its manifest.
    Check the ranker keys first (:func:`llmrec.rank.train.params_from`), before loading the store."""
    return train_ranker(cfg, store_rank_data(rec), ranker_path(cfg), log=log, fresh=fresh)
