"""What a chat turn answers (:class:`Reply`) and what the session knows of the user (:class:`Profile`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmrec.recommender import Recommendation


@dataclass
class Reply:
    """What the assistant answers. ``items``: the recommendations shown (ranks 1..n within this
    reply; possibly empty). ``question``: set when the session asks back (an ambiguous or unknown
    title, "which one?"); the next message may answer it. ``meta``: ``action`` (``recommend``,
    ``more``, ``why``, ``ask``, ``ack``, ``help``, ``error``), ``resolved`` (titles read this turn:
    text, item_id, title, how, as), ``retriever``/``ranker``/``cold_start`` of a recommendation,
    ``query``, ``seconds``; ``llm_steps`` (LLM steps whose output the session would use, this turn)
    and ``llm_fallbacks`` (those whose output was not used: the deterministic reply was given),
    ``intent`` (the LLM's choice, when a step ran: intent, label, margin, reason)."""

    text: str
    items: list[Recommendation] = field(default_factory=list)
    question: str | None = None
    meta: dict = field(default_factory=dict)


@dataclass
class Profile:
    """What the session knows about the user. Item ids throughout."""

    user: str | None = None
    liked: list[str] = field(default_factory=list)
    """Oldest first: a stored user's history, then the items liked in the conversation."""
    disliked: list[str] = field(default_factory=list)
    """Never recommended (they do not steer the retriever)."""
    excluded: set[str] = field(default_factory=set)
    shown: list[str] = field(default_factory=list)
    query: str | None = None
    avoid_terms: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    avoid_genres: list[str] = field(default_factory=list)
