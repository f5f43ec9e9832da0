"""Typed errors of the retrieval stage."""

from llmrec.errors import LLMRecError


class TopKError(LLMRecError, ValueError):
    """Bad input to :func:`llmrec.topk` (shapes, k, non-finite values, empty items, exclude)."""
