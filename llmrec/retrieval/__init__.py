"""Candidate generation: user state and exact top-k over the item matrix."""

from llmrec.retrieval.topk import TopKError, topk

__all__ = ["TopKError", "topk"]
