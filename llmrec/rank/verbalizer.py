"""Verbalizer ranking: the LLM reads labelled candidates and the next-token log-probabilities of
the labels A, B, C, ... give the whole order, from ONE forward pass.

LlamaRec: Yue et al., "LlamaRec: Two-Stage Recommendation using Large Language Models for
Ranking", PGAI@CIKM 2023 (arXiv:2311.02089).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from llmrec.data.types import Item
from llmrec.rank.prompts import quote, render

LABELS = string.ascii_uppercase


def item_line(item: Item) -> str:
    """One quoted line describing an item: title, then its text, then the text fallback of its image
    (``image: "caption"``) and audio (``audio: "transcript"``) when it has them."""
    line = quote(item.title) + (f" — {quote(item.text)}" if item.text else "")
    if item.caption:
        line += f" — image: {quote(item.caption)}"
    if item.transcript:
        line += f" — audio: {quote(item.transcript)}"
    return line


def modalities(item: Item, soft: frozenset = frozenset(), fallback: bool = True) -> dict[str, str]:
    """How the ranking LLM saw each non-text modality the item has: ``{"image": ..., "audio": ...}``,
    each ``soft_tokens`` (named in ``soft``), ``caption`` / ``transcript`` (``fallback``: the prompt
    held :func:`item_line`, and the item has that text) or ``unused``. An item without an image or
    audio file has no such key."""
    out = {}
    for name, path, text, word in (("image", item.image, item.caption, "caption"),
                                   ("audio", item.audio, item.transcript, "transcript")):
        if path:
            out[name] = "soft_tokens" if name in soft else (word if fallback and text else "unused")
    return out


def rank_prompt(history: list[Item], candidates: list[Item]):
    """Chat messages of the ranking prompt (``prompts/rank.*.txt``)."""
    if not 1 <= len(candidates) <= len(LABELS):
        raise ValueError(f"between 1 and {len(LABELS)} candidates can be labelled, got {len(candidates)}")
    hist = "\n".join(f"- {item_line(it)}" for it in history) or "- (no history)"
    cands = "\n".join(f"{LABELS[i]}. {item_line(it)}" for i, it in enumerate(candidates))
    return render("rank", history=hist, candidates=cands, first=LABELS[0], last=LABELS[len(candidates) - 1])


@dataclass
class Ranking:
    """``order``: candidate positions, best first. ``logprobs`` [n]: label log-probability of
    each candidate in its original position (natural log, full-vocabulary softmax)."""

    order: list[int]
    logprobs: np.ndarray


def verbalizer_rank(backend, history: list[Item], candidates: list[Item], soft_tokens: dict | None = None) -> Ranking:
    """Order candidates by their label's next-token log-probability; ties go to the earlier label
    (the retriever's better candidate)."""
    labels = list(LABELS[: len(candidates)])
    lp = np.asarray(backend.score_labels(rank_prompt(history, candidates), labels, soft_tokens), dtype=np.float64)
    order = sorted(range(len(candidates)), key=lambda i: (-lp[i], i))
    return Ranking(order, lp)
