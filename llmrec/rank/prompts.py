"""Prompt templates from ``prompts/`` and the quoting of untrusted item text into them."""

from __future__ import annotations

import importlib.resources
import json
import re
import unicodedata
from functools import cache
from string import Template

from llmrec.llm.base import Messages

MAX_FIELD_CHARS = 200

_BRACKETS = str.maketrans({"<": "‹", ">": "›", "\uff1c": "‹", "\uff1e": "›", "\ufe64": "‹", "\ufe65": "›"})
"""Angle brackets and their look-alikes (fullwidth, small form: NFKC makes them ``<`` ``>``) -> ‹ ›."""
_SQUARE_CONTROL = re.compile(r"\[(/?[A-Z][A-Z_]{2,})\]")
"""Square-bracket control words (``[INST]``, ``[/INST]``, ``[SYSTEM_PROMPT]``, ``[TOOL_CALLS]``: special tokens
of some tokenizers) -> ``⟦INST⟧``."""
_KEEP_FORMAT = {"\u200c", "\u200d"}  # zero-width (non-)joiners: needed to write some scripts and emoji


def _visible(c: str) -> str:
    """A character as it may enter a prompt: "" for control and invisible format characters (bidi
    overrides, zero-width spaces, BOMs, the tag block U+E0000-U+E007F that can hide text), U+FFFD
    for a lone surrogate (a tokenizer refuses it); whitespace and anything else unchanged."""
    cat = unicodedata.category(c)
    if cat == "Cs":
        return "\ufffd"
    if (cat == "Cc" and not c.isspace()) or (cat == "Cf" and c not in _KEEP_FORMAT):
        return ""
    return c


def quote(text: str, max_chars: int = MAX_FIELD_CHARS) -> str:
    """Quote untrusted item text for a prompt: control and invisible format characters removed
    (lone surrogates replaced), one line (whitespace runs, newlines included, become one space),
    truncated to ``max_chars``, angle brackets and their look-alikes neutralised (‹ ›) so that it
    cannot close the ``<data>`` block or spell a chat control token (``<|im_start|>``), square-bracket
    control words (``[INST]``) likewise (⟦ ⟧), then JSON string escaping (quotes, backslashes)."""
    text = "".join(map(_visible, str(text)[: 16 * max_chars]))  # (bounded work for a huge text)
    text = " ".join(text.split())
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    text = _SQUARE_CONTROL.sub(r"⟦\1⟧", text.translate(_BRACKETS))
    return json.dumps(text, ensure_ascii=False)


@cache
def _template(name: str) -> str:
    try:
        return (importlib.resources.files("llmrec.prompts") / name).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"prompt template prompts/{name} is missing") from e


def render(name: str, **values: str) -> Messages:
    """Chat messages from ``prompts/{name}.system.txt`` and ``prompts/{name}.user.txt``.

    Values are substituted with ``string.Template`` (``$name``); a missing value raises KeyError.
    """
    return [
        {"role": "system", "content": Template(_template(f"{name}.system.txt")).substitute(values).strip()},
        {"role": "user", "content": Template(_template(f"{name}.user.txt")).substitute(values).strip()},
    ]
