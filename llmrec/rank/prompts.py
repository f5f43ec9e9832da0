"""Prompt templates from ``prompts/`` and the quoting of untrusted item text into them."""

from __future__ import annotations

import importlib.resources
import json
from functools import cache
from string import Template

from llmrec.llm.base import Messages

MAX_FIELD_CHARS = 200


def quote(text: str, max_chars: int = MAX_FIELD_CHARS) -> str:
    """Quote untrusted item text for a prompt: one line, JSON string escaping, angle brackets
    neutralised so that it cannot close the ``<data>`` block, and truncated to ``max_chars``."""
    text = " ".join(str(text).split())
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return json.dumps(text.replace("<", "‹").replace(">", "›"), ensure_ascii=False)


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
