"""Untrusted catalog text made safe to show on a terminal or in a chat reply.

A catalog title (or item id, user id, any text a reply repeats) can hold ESC sequences that clear,
recolour or retitle a terminal, NUL and BEL, CR/LF that break "one line per item", and bidi
overrides or invisible characters that make text read differently from what it is.
:func:`display_text` is applied where such text is *shown*: the ``llmrec recommend`` table, the
chat session's reply text and questions (hence ``llmrec serve``'s assistant content). Data outputs
(``recommend --json``, the ``llmrec`` field of serve responses, ``Recommendation`` and ``Item``
objects) keep the raw text.
"""

from __future__ import annotations

import re
import unicodedata

REPLACEMENT = "\ufffd"
"""Shown in place of a control character that is not whitespace (NUL, BEL, DEL, C1 codes, a lone ESC)."""
ELLIPSIS = "…"

_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: ESC [ parameters intermediates final (colours, cursor, clear screen)
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC, terminated by BEL or ST (window title, hyperlinks)
    r"|\x1b[PX^_][^\x1b]*\x1b\\"  # DCS, SOS, PM, APC strings, terminated by ST
    r"|\x1b[ -/]*[0-~]"  # two-character (and nF) escapes: ESC c (reset), ESC 7, ESC ( B ...
)
"""Whole terminal escape sequences: removed (a lone or unterminated ESC is then a control character)."""
_KEEP_FORMAT = frozenset("\u200c\u200d")
"""Zero-width (non-)joiners: format characters that some scripts and emoji need; every other one is removed."""


def _shown(c: str) -> str:
    """One character as displayed: whitespace controls and line/paragraph separators (TAB, LF, CR,
    VT, FF, FS..US, NEL, U+2028, U+2029) -> a space; other control characters (C0, DEL, C1) and lone
    surrogates -> :data:`REPLACEMENT`; format characters (category Cf: the bidi embeddings,
    overrides and isolates U+202A-U+202E and U+2066-U+2069, the marks U+200E, U+200F and U+061C,
    zero-width spaces, BOMs, the tag block U+E0000-U+E007F) -> removed, except the joiners in
    :data:`_KEEP_FORMAT`; anything else unchanged."""
    cat = unicodedata.category(c)
    if cat in ("Cc", "Zl", "Zp"):
        return " " if c.isspace() else REPLACEMENT
    if cat == "Cs":
        return REPLACEMENT
    if cat == "Cf" and c not in _KEEP_FORMAT:
        return ""
    return c


def display_text(text, max_chars: int | None = None) -> str:
    """``text`` (any value; ``str()`` of it) as it may be shown: one line, no terminal escape
    sequence, control or display-spoofing format character (see :func:`_shown`), at most
    ``max_chars`` characters (a longer text is cut and ends in ``…``; None: no cap). Text without
    such characters, within the cap, comes back unchanged; the work is bounded by ``max_chars``
    for a huge text.

    Raises:
        ValueError: ``max_chars`` is given and < 1.
    """
    s = str(text)
    cut = False
    if max_chars is not None:
        if max_chars < 1:
            raise ValueError(f"max_chars must be >= 1, got {max_chars}")
        budget = 8 * max_chars + 64  # room for removed escape sequences and format characters
        cut, s = len(s) > budget, s[:budget]
    if "\x1b" in s:
        s = _ESCAPE_SEQUENCE.sub("", s)
    if not s.isprintable():  # False for every character _shown changes
        s = "".join(map(_shown, s))
    if max_chars is not None and (cut or len(s) > max_chars):
        s = s[: max_chars - 1] + ELLIPSIS
    return s
