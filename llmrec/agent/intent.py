"""The chat's one LLM step whose output the program uses: choosing a message's intent when the
deterministic parser found nothing to act on but (at most) a free-text query.

Verbalizer method, constrained by construction: the prompt (``prompts/intent.*.txt``) lists the
closed set of intents as the labels A..F, and ``Backend.score_labels`` returns the next-token
log-probabilities of exactly those labels from ONE forward pass, so the output is always one of
them (on the transformers backend and on any backend with ``score_labels``, e.g. vLLM). It is used
only when the best label beats the second by at least ``margin`` nats (log-probability margin);
otherwise, or when the backend fails or returns non-finite numbers, the caller takes its
deterministic path and counts a fallback. Title resolution never goes through the LLM. The
message is untrusted: it is quoted into a ``<data>`` block (:func:`llmrec.rank.prompts.quote`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from llmrec.errors import ModelError, PromptTooLongError
from llmrec.rank.prompts import quote, render

INTENTS = ("more", "why", "describe", "recommend", "smalltalk", "other")
"""The closed set, in label order (A = ``more`` ... F = ``other``); see ``prompts/intent.system.txt``."""
LABELS = tuple("ABCDEF")
ROUTE = {"more": "more", "why": "why", "recommend": "recommend", "smalltalk": "help", "other": "help",
         "describe": None}
"""What the session does for each intent: the next page, the latest pick's reason, recommendations
now, the help reply; None: the deterministic path (the free-text query, or the help reply)."""
MAX_MESSAGE_CHARS = 500
"""The message is quoted into the prompt up to this many characters."""


@dataclass(frozen=True)
class IntentChoice:
    """The LLM's choice. ``intent``: one of :data:`INTENTS`, or None when it cannot be used (then
    ``reason`` says why: ``low-margin``, ``error: ...``, ``non-finite``). ``label``: the best label;
    ``margin``: its log-probability minus the second best's (nats, >= 0; nan on error);
    ``logprobs``: float [6], natural log over the full vocabulary, label order."""

    intent: str | None
    label: str | None
    margin: float
    logprobs: tuple[float, ...] = ()
    reason: str | None = None

    @property
    def used(self) -> bool:
        return self.intent is not None

    def as_meta(self) -> dict:
        return {"intent": self.intent, "label": self.label,
                "margin": None if math.isnan(self.margin) else round(self.margin, 3), "reason": self.reason}


def intent_prompt(message: str):
    """Chat messages of the intent prompt, the message quoted (one line, at most
    :data:`MAX_MESSAGE_CHARS` characters, ``<``/``>`` and control words neutralised)."""
    return render("intent", message=quote(message, MAX_MESSAGE_CHARS))


def choose_intent(backend, message: str, margin: float) -> IntentChoice:
    """Ask the LLM which of :data:`INTENTS` the message expresses (one forward pass).

    Args:
        backend: an LLM backend (``score_labels(messages, labels) -> float [n]``).
        message: the user's message (untrusted).
        margin: the least log-probability margin (nats) of the best label over the second for the
            choice to be used; ``inf`` never uses it.
    Returns:
        :class:`IntentChoice`; never raises for what the model returns. A backend that fails
        (ModelError, PromptTooLongError) gives an unusable choice too.
    """
    try:
        lp = np.asarray(backend.score_labels(intent_prompt(message), list(LABELS)), dtype=np.float64)
    except (ModelError, PromptTooLongError) as e:
        return IntentChoice(None, None, float("nan"), reason=f"error: {e}")
    if lp.shape != (len(LABELS),) or not np.isfinite(lp).all():
        return IntentChoice(None, None, float("nan"), tuple(map(float, lp.reshape(-1))), reason="non-finite")
    order = np.argsort(-lp, kind="stable")
    gap = float(lp[order[0]] - lp[order[1]])
    label = LABELS[int(order[0])]
    if not gap >= margin:
        return IntentChoice(None, label, gap, tuple(map(float, lp)), reason="low-margin")
    return IntentChoice(INTENTS[int(order[0])], label, gap, tuple(map(float, lp)))
