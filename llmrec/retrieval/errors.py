"""Typed errors of the retrieval stage."""

from llmrec.errors import LLMRecError


class TopKError(LLMRecError, ValueError):
    """Bad input to :func:`llmrec.topk` (shapes, k, non-finite values, empty items, exclude)."""


class NonFiniteScores(Exception):
    """Raised by the chunked top-k paths with the first chunk start whose scores hold NaN or inf;
    :func:`llmrec.topk` turns it into a :class:`TopKError` naming the bad row."""

    def __init__(self, start: int):
        super().__init__(start)
        self.start = start
