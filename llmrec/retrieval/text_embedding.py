"""Text-embedding similarity: content retrieval from the items' text (title and genres)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from llmrec.data.splits import Split
from llmrec.retrieval.knn import recency_weights
from llmrec.retrieval.validation import select_half_life


class TextEmbedding:
    """Content similarity: all-MiniLM-L6-v2 embeddings of each item's title and genres
    (``Item.document()``); the user vector is the recency-weighted mean of the history's
    embeddings (half-life selected on validation). Item vectors are L2-normalised (cosine)."""

    kind = name = "text-embedding"
    dense_scores = False

    def __init__(self, cache_dir: str | Path | None = None, half_life: float | None = None, cfg=None):
        self.cache_dir, self.half_life, self.cfg = cache_dir, half_life, cfg

    def fit(self, split: Split) -> TextEmbedding:
        docs = [it.document() for it in split.items]
        key = hashlib.sha256("\n".join(docs).encode()).hexdigest()[:16]
        path = Path(self.cache_dir) / f"text-emb-{key}.npy" if self.cache_dir else None
        if path and path.exists():
            E = np.load(path)
        else:
            E = encode_texts(docs, self.cfg)
            if path:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, E)
        E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
        self.E = E.astype(np.float32)
        if self.half_life is None:
            self.half_life = select_half_life(self, split)
        return self

    def user_vectors(self, histories: list[list[int]]) -> np.ndarray:
        U = np.zeros((len(histories), self.E.shape[1]), dtype=np.float32)
        for b, h in enumerate(histories):
            if h:
                w = recency_weights(len(h), self.half_life or 0.0)
                U[b] = (w[:, None] * self.E[h]).sum(0) / w.sum()
        return U

    def item_vectors(self) -> np.ndarray:
        return self.E


def encode_texts(texts: list[str], cfg=None) -> np.ndarray:
    """float32 [n, d], L2-normalised: the configured text encoder (``llmrec.encoders.text``)."""
    from llmrec.config import Config
    from llmrec.encoders.text import TextEncoder

    return TextEncoder(cfg or Config()).encode(texts)
