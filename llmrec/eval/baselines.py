"""Baseline scorers: most-popular, item-kNN, text-embedding similarity (their code lives in
``llmrec.retrieval``: ``popular``, ``knn``, ``text_embedding``; registered in ``llmrec.retrieval.base``).

Every scorer (and the trained retriever) has the same shape, so every one is scored the same way
(``scores = user_vectors @ item_vectors.T``, retrieval through ``llmrec.topk``):

- ``fit(split)``: learn from the TRAINING part of the split only (``split.train``);
- ``user_vectors(histories) -> float32 [B, d]`` for histories of 0-based item indices;
- ``item_vectors() -> float32 [N, d]``, rows in ``split.item_ids`` order.

Hyper-parameters with a choice (recency half-life) are selected on the validation targets only.
"""

from __future__ import annotations

from llmrec.retrieval.knn import ItemKNN, recency_weights
from llmrec.retrieval.popular import MostPopular
from llmrec.retrieval.text_embedding import TextEmbedding, encode_texts
from llmrec.retrieval.validation import HALF_LIVES, select_half_life, validation_ndcg10

__all__ = ["HALF_LIVES", "ItemKNN", "MostPopular", "TextEmbedding", "encode_texts", "recency_weights",
           "select_half_life", "validation_ndcg10"]
