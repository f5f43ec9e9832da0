"""What ``Recommender.recommend`` returns: :class:`Recommendations`, a list of :class:`Recommendation`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field


@dataclass
class Recommendation:
    """One recommended item. ``score``: the LLM's label log-probability (natural log) for reranked
    items (-inf, null in JSON, for items past the ``candidates`` the LLM labelled, when k is
    larger), the item's interaction count for cold-start answers. ``rank``: 1-based.
    ``because``: ids of the history items the explanation cites."""

    item_id: str
    title: str
    score: float
    rank: int
    explanation: str
    because: list[str] = field(default_factory=list)
    retrieval_score: float | None = None
    modalities: dict = field(default_factory=dict)
    """How the ranking LLM saw the item's image and audio (``llmrec.rank.verbalizer.modalities``):
    ``{"image": "caption"}``, ``"soft_tokens"``, ``"transcript"``, ``"unused"``; {} for an item with
    neither, or when no LLM ranked it."""


@dataclass
class Recommendations:
    """``retriever``: which retriever found the candidates: ``sasrec``, ``sasrec-ensemble`` or
    ``fusion`` (SASRec + item-kNN [+ EASE]; trained by ``llmrec train-retriever``), ``item-knn`` (the default without one), ``+text`` appended when
    content similarity filled slots the collaborative retriever could not, ``text`` when no history
    item has interactions (content only), or ``popularity`` for a cold-start answer."""

    user: str | None
    items: list[Recommendation]
    cold_start: bool = False
    retriever: str | None = None
    ranker: str | None = None
    """``trained`` (the store's checkpoint of ``llmrec train-ranker``), ``zero-shot``, or None (no LLM:
    a cold-start answer)."""

    def to_dict(self) -> dict:
        """Plain data; a non-finite score (an item ranked past the LLM's labels) becomes None."""
        items = [asdict(r) for r in self.items]
        for d in items:
            for key in ("score", "retrieval_score"):
                if d[key] is not None and not math.isfinite(d[key]):
                    d[key] = None
        return {"user": self.user, "cold_start": self.cold_start, "retriever": self.retriever, "ranker": self.ranker,
                "items": items}

    def to_json(self) -> str:
        """Strict JSON (no NaN or Infinity): see :meth:`to_dict`."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1, allow_nan=False)
