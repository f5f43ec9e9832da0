"""Asking back: the question about an ambiguous or unknown title (candidates listed with year and id where
their titles read alike) and reading the answer to it (an id, a year, an ordinal, a title, or "never mind")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmrec.agent.parse import ordinal_of
from llmrec.agent.reply import Reply
from llmrec.agent.titles import TitleIndex, year_of
from llmrec.data.types import Item
from llmrec.text_safety import display_text

_CANCEL = re.compile(r"\s*(?:none|neither|no|nope|never\s*mind|forget\s+it|cancel|skip\s+it)\b", re.I)
_YEAR = re.compile(r"\b(?:18|19|20)\d\d\b")
_ID_ANSWER = re.compile(r"\s*(?:(?:the\s+one\s+with\s+)?(?:item\s+)?id\b\s*[:#]?|#)\s*(.+?)[\s.!]*", re.I)
QUESTION_MAX = 10
"""At most this many candidates are listed in a question (any of them may still be named by id)."""


@dataclass
class Question:
    """A pending question: what the user was doing (``action``), the text it was about, the candidates."""

    action: str  # like, dislike, exclude, more_like, why
    text: str
    candidates: tuple[Item, ...]
    question: str


class AskBack:
    """The question-and-answer half of :class:`~llmrec.agent.session.ChatSession` (a mixin: it uses the
    session's ``_pending`` questions, ``_deferred``, ``title_max_chars`` and its ``_apply``, ``_recommend``
    and ``_why_item``)."""

    def _show(self, text) -> str:
        """Untrusted text (a title, an id, what the user typed) as a reply shows it: one line, no
        control or bidi character, at most ``title_max_chars`` characters."""
        return display_text(text, self.title_max_chars)

    def _label(self, item: Item, with_id: bool) -> str:
        """An item as a question lists it: its title; with ``with_id`` also its year (when the title
        does not show it) and its id, ``Crash (2004) [id 7]``."""
        label = self._show(item.title)
        if not with_id:
            return label
        year = year_of(item)
        return label + (f" ({year})" if year is not None and str(year) not in label else "") + f" [id {self._show(item.id)}]"

    def _question(self, text: str, candidates: tuple[Item, ...], kind: str) -> str:
        """The question about ``text`` (an ambiguous title: which of ``candidates``; an unknown one:
        did you mean one of them). Candidates whose titles read alike are listed with year and id;
        at most :data:`QUESTION_MAX` are listed."""
        titles = [self._show(c.title) for c in candidates]
        with_id = len(set(titles)) < len(titles)
        names = [self._label(c, with_id) for c in candidates[:QUESTION_MAX]]
        if len(candidates) > QUESTION_MAX:
            names[-1] += f" (or one of {len(candidates) - QUESTION_MAX} more: say its id)"
        listed = join_names(names, "or")
        if kind != "ambiguous":
            return f'I could not find "{self._show(text)}" in the catalog. Did you mean {listed}?'
        years = [year_of(c) for c in candidates]
        if None not in years and len(set(years)) == len(years):
            hint = f' (say the year, e.g. "the {years[-1]} one")'
        elif with_id:
            hint = f' (say its id, e.g. "id {self._show(candidates[-1].id)}"' + (
                ', or the year)' if len(set(years) - {None}) > 1 else ")")
        else:
            hint = ""
        return f'Which "{self._show(text)}" do you mean: {listed}?{hint}'

    def _ask(self, notes: list[str]) -> Reply:
        q = self._pending[0]
        return Reply(" ".join([*notes, q.question]), question=q.question,
                     meta={"action": "ask", "candidates": [c.id for c in q.candidates]})

    def _answer(self, message: str, meta: dict) -> Reply | None:
        """The message as the answer to the pending question, or None (then it is read as a new
        message and the questions are dropped): a candidate's id (``"42"``, ``"id 42"``, ``"#42"``), a
        year, an ordinal, or a title among the candidates; a year several candidates share narrows
        the question to them and asks again; "none" / "never mind" drops the question; when it was the last one and the message that raised
        the questions changed the profile ("I liked heat and hamlet"), the recommendations follow."""
        q = self._pending[0]
        text = message.strip()
        if _CANCEL.match(text):
            self._pending.pop(0)
            if self._pending:
                return self._ask([])
            if self._deferred:
                return self._recommend(None, ["OK, never mind that one."])
            return Reply("OK, never mind that one.", meta={"action": "ack"})
        choice = _by_id(text, q.candidates)
        years = [int(y) for y in _YEAR.findall(text)]
        if choice is None and years:
            same = tuple(c for c in q.candidates if year_of(c) == years[0])
            if 1 < len(same) < len(q.candidates):  # "the 2004 one" of three, two of them 2004
                self._pending[0] = Question(q.action, q.text, same, self._question(q.text, same, "ambiguous"))
                return self._ask([])
            choice = same[0] if len(same) == 1 else None
        n = ordinal_of(text) or (int(text) if text.isdigit() and 1 <= int(text) <= len(q.candidates) else None)
        if choice is None and n is not None and (n == -1 or 1 <= n <= len(q.candidates)):
            choice = q.candidates[n - 1 if n > 0 else -1]
        if choice is None:
            res = TitleIndex(q.candidates).resolve(text[:300])
            choice = res.item if res.matched else None
        if choice is None:
            meta["dropped_questions"] = len(self._pending)
            self._pending.clear()
            self._deferred = False
            return None
        self._pending.pop(0)
        meta["resolved"].append({"text": q.text, "item_id": choice.id, "title": choice.title, "how": "answer",
                                 "as": q.action})
        if q.action == "why":
            return self._why_item(choice.id, [])
        notes: list[str] = []
        self._apply(q.action, choice, notes)
        if self._pending:
            return self._ask(notes)
        if q.action == "exclude" and not self._deferred:
            return Reply(" ".join(notes), meta={"action": "ack"})
        return self._recommend(f"More like {self._show(choice.title)}:" if q.action == "more_like" else None, notes)


def _by_id(text: str, candidates: tuple[Item, ...]) -> Item | None:
    """The candidate whose id the answer is (``"42"``, ``"id 42"``, ``"#42"``, ``"the one with id 42"``), or None."""
    m = _ID_ANSWER.fullmatch(text)
    said = (m.group(1) if m else text).strip()
    hit = [c for c in candidates if c.id == said]
    return hit[0] if len(hit) == 1 else None


def join_names(names: list[str], word: str) -> str:
    """``a``, ``a or b``, ``a, b and c`` (``word`` between the last two)."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"
