"""Explanations that cite the user's own history.

For each recommended item the history items it relates to are chosen by cosine similarity of
their vectors (the evidence); the explanation names them, and with ``explain="llm"`` the LLM adds
one sentence generated from a prompt that holds only that evidence (``prompts/explain.*.txt``).
An explanation is one line of displayable text: cited titles are shown as
:func:`llmrec.text_safety.display_text` shows them, then quoted by :func:`llmrec.rank.prompts.quote`
(cut at 80 characters), and the generated sentence goes through ``display_text``.
"""

from __future__ import annotations

import re

import numpy as np

from llmrec.data.types import Item
from llmrec.rank.prompts import quote, render
from llmrec.rank.verbalizer import item_line
from llmrec.text_safety import display_text


def cite(item_vecs: np.ndarray, history_vecs: np.ndarray, n: int = 2) -> list[list[int]]:
    """For each item [R, d], the positions of the ``n`` most similar history items [H, d]
    (by inner product; ties to the more recent, i.e. later, history item)."""
    if history_vecs.shape[0] == 0:
        return [[] for _ in range(item_vecs.shape[0])]
    sims = item_vecs @ history_vecs.T  # [R, H]
    H = history_vecs.shape[0]
    return [sorted(range(H), key=lambda h: (-row[h], -h))[: min(n, H)] for row in sims]


def _genres(item: Item) -> list[str]:
    return [g for g in str(item.fields.get("genres", "")).split("|") if g]


def grounded(item: Item, cited: list[Item]) -> str:
    """A template explanation naming the cited history items (no generation); each cited item
    carries the genres it really shares with the recommended one, if any. One line: cited titles
    as :func:`~llmrec.text_safety.display_text` shows them."""
    if not cited:
        return "Popular with other users; there is no history to personalise on yet."
    mine = _genres(item)
    parts = []
    for c in cited:
        theirs = set(_genres(c))
        shared = [g for g in mine if g in theirs]
        parts.append(quote(display_text(c.title), 80) + (f" (also {', '.join(shared)})" if shared else ""))
    return f"Because you watched {' and '.join(parts)}."


def explain(backend, items: list[Item], cited: list[list[Item]], mode: str, max_tokens: int) -> list[str]:
    """One explanation per item. ``mode``: ``grounded`` or ``llm`` (grounded + a generated sentence,
    all prompts generated in one batch)."""
    base = [grounded(it, c) for it, c in zip(items, cited, strict=True)]
    if mode != "llm" or backend is None:
        return base
    todo = [i for i, c in enumerate(cited) if c]
    prompts = [
        render("explain", liked="\n".join(f"- {item_line(c)}" for c in cited[i]), item=f"- {item_line(items[i])}")
        for i in todo
    ]
    for i, text in zip(todo, backend.generate(prompts, max_tokens), strict=True):
        sentence = _first_sentence(text)
        if sentence and not _copies_data(sentence, [items[i], *cited[i]]):
            base[i] = f"{base[i]} {sentence}"
    return base


_ECHO_MARKERS = ("<data>", "</data>", "enjoyed:", "We recommend:", "Genres:", " - ")


COPY_WORDS = 5
"""A generated sentence that repeats this many consecutive words of the item data it was shown is dropped."""
_NEUTRALISED = ("‹", "›", "⟦", "⟧")  # only quoted item data has them (llmrec.rank.prompts.quote)


def _copies_data(sentence: str, shown: list[Item]) -> bool:
    """Whether the sentence repeats quoted item data instead of explaining: it holds a bracket that
    only quoting makes, or :data:`COPY_WORDS` consecutive words of a title, text, caption or transcript it was shown
    (item text is untrusted: a planted instruction must not come back in an explanation)."""
    if any(m in sentence for m in _NEUTRALISED):
        return True
    said = " ".join(_word_list(sentence))
    for it in shown:
        for field in (it.title, it.text, it.caption, it.transcript):
            words = _word_list(field)
            for s in range(len(words) - COPY_WORDS + 1):
                if f" {' '.join(words[s:s + COPY_WORDS])} " in f" {said} ":
                    return True
    return False


def _word_list(text: str) -> list[str]:
    return re.findall(r"\w+", str(text).casefold())


def _first_sentence(text: str) -> str:
    """The first sentence of a generation, one line shown as :func:`~llmrec.text_safety.display_text`
    shows text (no control or bidi character), or "" when it echoes the prompt instead of explaining."""
    text = " ".join(display_text(text).split())
    if not text or text.startswith("-") or any(m in text for m in _ECHO_MARKERS):
        return ""
    if text[-1] not in ".!?":  # cut by the token limit
        return text.rstrip(",;: ") + "…"
    for end in (". ", "! ", "? "):
        if end in text:
            text = text[: text.index(end) + 1]
            break
    return text.strip()
