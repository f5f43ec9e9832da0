"""Verbalizer ranking: the LLM reads labelled candidates and the next-token log-probabilities of
the labels A, B, C, ... give the whole order, from ONE forward pass.

LlamaRec: Yue et al., "LlamaRec: Two-Stage Recommendation using Large Language Models for
Ranking", PGAI@CIKM 2023 (arXiv:2311.02089).
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass

import numpy as np

from llmrec.data.types import Item
from llmrec.rank.prompts import quote, render

LABELS = string.ascii_uppercase


MODALITIES = ("image", "audio")


def soft_slot(item_id: str, modality: str) -> str:
    """The placeholder of an item's ``modality`` soft tokens in a prompt (``Backend`` soft tokens):
    ``<soft:image:12 hex>`` from a hash of the id, so that no item id or text (quoted: no ``<``) can
    spell or collide with it."""
    return f"<soft:{modality}:{hashlib.sha256(str(item_id).encode()).hexdigest()[:12]}>"


def item_line(item: Item, soft: frozenset = frozenset()) -> str:
    """One quoted line describing an item: title, then its text, then for its image and audio either
    their soft-token slot (modality in ``soft``: ``image: <soft:image:...>``) or their text fallback
    (``image: "caption"``, ``audio: "transcript"``) when it has one."""
    line = quote(item.title) + (f" — {quote(item.text)}" if item.text else "")
    for name, text in (("image", item.caption), ("audio", item.transcript)):
        if name in soft:
            line += f" — {name}: {soft_slot(item.id, name)}"
        elif text:
            line += f" — {name}: {quote(text)}"
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


def soft_of(item: Item, soft_tokens: dict | None) -> frozenset:
    """The modalities of ``item`` whose slot has soft tokens in ``soft_tokens`` (placeholder -> tensor)."""
    if not soft_tokens:
        return frozenset()
    return frozenset(m for m in MODALITIES if soft_slot(item.id, m) in soft_tokens)


def rank_prompt(history: list[Item], candidates: list[Item], soft_tokens: dict | None = None):
    """Chat messages of the ranking prompt (``prompts/rank.*.txt``); an item with soft tokens in
    ``soft_tokens`` (keys :func:`soft_slot`) gets their slot instead of that modality's text fallback."""
    if not 1 <= len(candidates) <= len(LABELS):
        raise ValueError(f"between 1 and {len(LABELS)} candidates can be labelled, got {len(candidates)}")
    hist = "\n".join(f"- {item_line(it, soft_of(it, soft_tokens))}" for it in history) or "- (no history)"
    cands = "\n".join(f"{LABELS[i]}. {item_line(it, soft_of(it, soft_tokens))}" for i, it in enumerate(candidates))
    return render("rank", history=hist, candidates=cands, first=LABELS[0], last=LABELS[len(candidates) - 1])


@dataclass
class Ranking:
    """``order``: candidate positions, best first. ``logprobs`` [n]: label log-probability of
    each candidate in its original position (natural log, full-vocabulary softmax)."""

    order: list[int]
    logprobs: np.ndarray


def verbalizer_rank(backend, history: list[Item], candidates: list[Item], soft_tokens: dict | None = None) -> Ranking:
    """Order candidates by their label's next-token log-probability; ties go to the earlier label
    (the retriever's better candidate). ``soft_tokens``: placeholder (:func:`soft_slot`) -> float
    [k, d_llm] input embeddings of items' image/audio (a trained projector's output)."""
    labels = list(LABELS[: len(candidates)])
    lp = np.asarray(backend.score_labels(rank_prompt(history, candidates, soft_tokens), labels, soft_tokens or None),
                    dtype=np.float64)
    order = sorted(range(len(candidates)), key=lambda i: (-lp[i], i))
    return Ranking(order, lp)
