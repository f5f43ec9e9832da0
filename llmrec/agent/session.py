"""``ChatSession``: a multi-turn conversation over a :class:`~llmrec.recommender.Recommender`.

Each message is parsed deterministically (:mod:`llmrec.agent.parse`, titles resolved by
:class:`~llmrec.agent.titles.TitleIndex` over the store's items); the session profile accumulates
liked items (the history handed to ``Recommender.recommend``, oldest first), disliked and excluded
items, every item shown, and the latest free-text query. Recommendations come from
``recommend(history=liked, k=page_size, exclude=..., query_vector=...)``, reranked and explained as
``recommend`` does; nothing shown, excluded or disliked comes back, so "show more" is the next page.

Free text ("something tense but not gory", genre words) goes through the store's text encoder
(``Config.text_encoder``, the model the item vectors were made with): the query vector is the
encoding of the query text plus ``"Genres: ..."`` for the genres asked for (item documents read
``"Title. Genres: ..."``), minus half the encoding of the negated words ("gory"), normalised;
``recommend`` blends its cosine to the items into the retriever's candidate scores (weight
``query_weight``, see its docstring). A genre said to be avoided ("no horror") excludes that genre's
items. Reply texts are composed by templates here; every catalog title, item id and user text
they repeat is shown through :func:`llmrec.text_safety.display_text` (one line, no terminal control
or bidi character, titles cut at config ``title_max_chars``), while ``Reply.items`` and
``Reply.meta`` keep the raw data. A title that several distinct items share is asked back, listing
them with their year and id; the answer ("the 1999 one", "id 42", "the second") picks one.

One optional LLM step (config ``chat_llm_intent``, off by default): a message the parser finds
nothing in but a free-text query goes to :func:`llmrec.agent.intent.choose_intent`, which picks its
intent among a closed set from label log-probabilities (constrained by construction); a choice
under the ``chat_intent_margin`` confidence, or one that cannot be used, falls back to the
deterministic reply. ``Reply.meta`` counts both (``llm_steps``, ``llm_fallbacks``). Title
resolution never uses the LLM.
"""

from __future__ import annotations

import re
import time
import weakref
from dataclasses import dataclass, field

import numpy as np

from llmrec.agent.intent import ROUTE, choose_intent
from llmrec.agent.parse import Parsed, Ref, check_message, ordinal_of, parse
from llmrec.agent.titles import Resolution, TitleIndex, year_of
from llmrec.data.types import Item
from llmrec.errors import ConfigError, ModelError, RequestError, UnknownUserError
from llmrec.recommender import Recommendation, Recommender
from llmrec.text_safety import display_text

NEGATIVE_WEIGHT = 0.5
"""Share of the negated words' encoding subtracted from the query vector."""
_CANCEL = re.compile(r"\s*(?:none|neither|no|nope|never\s*mind|forget\s+it|cancel|skip\s+it)\b", re.I)
_YEAR = re.compile(r"\b(?:18|19|20)\d\d\b")
_ID_ANSWER = re.compile(r"\s*(?:(?:the\s+one\s+with\s+)?(?:item\s+)?id\b\s*[:#]?|#)\s*(.+?)[\s.!]*", re.I)
QUESTION_MAX = 10
"""At most this many candidates are listed in a question (any of them may still be named by id)."""
_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


@dataclass
class _Question:
    action: str  # like, dislike, exclude, more_like, why
    text: str
    candidates: tuple[Item, ...]
    question: str


class ChatSession:
    """A conversation. ``send(message) -> Reply``.

    Args:
        recommender: the store's :class:`~llmrec.recommender.Recommender`.
        page_size: items per reply (default: the config's ``k``).
        query_weight: the free-text query's share of the candidate scores, in [0, 1].

    Raises:
        RequestError: ``page_size`` not an integer >= 1, or ``query_weight`` outside [0, 1].
        ConfigError: the recommender's ``chat_intent_margin`` is negative or not a number.
    """

    def __init__(self, recommender: Recommender, *, page_size: int | None = None, query_weight: float = 0.5):
        if not 0 <= query_weight <= 1:
            raise RequestError(f"query_weight must be in [0, 1], got {query_weight!r}")
        if page_size is not None and (isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1):
            raise RequestError(f"page_size must be an integer >= 1, got {page_size!r}")
        self.rec = recommender
        self.index = TitleIndex(recommender.items)
        self.title_max_chars = int(recommender.cfg.title_max_chars)
        self.page_size = page_size or recommender.cfg.k
        self.query_weight = query_weight
        self.by_genre: dict[str, set[str]] = {}
        for it in recommender.items:
            for g in str(it.fields.get("genres", "")).split("|"):
                if g:
                    self.by_genre.setdefault(g, set()).add(it.id)
        self.genres = sorted(self.by_genre)
        self.profile = Profile()
        self.page: list[Recommendation] = []
        self.explained: dict[str, Recommendation] = {}
        self.focus: str | None = None
        self._pending: list[_Question] = []
        self._deferred = False
        self.turns = 0
        self.llm_intent = bool(recommender.cfg.chat_llm_intent)
        self.intent_margin = float(recommender.cfg.chat_intent_margin)
        if not self.intent_margin >= 0:
            raise ConfigError(f"config key 'chat_intent_margin' must be >= 0 (nats; inf: never), "
                              f"got {recommender.cfg.chat_intent_margin!r}")

    @classmethod
    def load(cls, data_dir=None, config=None, **kwargs) -> ChatSession:
        """A session over ``Recommender.load(data_dir, config)``. Raises what that raises (StoreError...)."""
        return cls(Recommender.load(data_dir, config), **kwargs)

    # ------------------------------------------------------------------ the turn
    def send(self, message: str) -> Reply:
        """Answer one message.

        Raises:
            RequestError: ``message`` is not a string, is blank, or is too long (4,000 characters).
            ModelError: the text encoder (for a free-text query) cannot be loaded or does not match
                the store's vectors; or what ``Recommender.recommend`` raises.
        """
        check_message(message)
        start = time.perf_counter()
        self.turns += 1
        meta: dict = {"turn": self.turns, "resolved": [], "llm_steps": 0, "llm_fallbacks": 0}
        reply = self._answer(message, meta) if self._pending else None
        if reply is None:
            p = parse(message, self.index, self.genres)
            reply = self._llm_intent(message, p, meta) if self.llm_intent and _unclassified(p) else None
            reply = reply or self._act(p, meta)
        reply.meta.update(meta, seconds=round(time.perf_counter() - start, 3))
        return reply

    def _llm_intent(self, message: str, p: Parsed, meta: dict) -> Reply | None:
        """The LLM's intent for a message the parser found nothing in but a free-text query
        (:mod:`llmrec.agent.intent`): a reply for ``more``, ``why``, ``recommend`` (the next page,
        the latest pick's reason, recommendations now) and ``smalltalk``/``other`` (the help
        reply); None for ``describe`` and when the choice cannot be used (then the deterministic
        path answers: the query, or the help reply; counted in ``meta["llm_fallbacks"]``)."""
        meta["llm_steps"] += 1
        choice = choose_intent(self.rec.backend, message, self.intent_margin)
        meta["intent"] = choice.as_meta()
        if not choice.used:
            meta["llm_fallbacks"] += 1
            return None
        route = ROUTE[choice.intent]
        if route == "more":
            return self._recommend("Here are more:" if self.page else None, [], "more" if self.page else "recommend")
        if route == "why":
            return self._why(None, [], meta)
        if route == "recommend":
            return self._recommend(None, [])
        return self._help() if route == "help" else None

    def _act(self, p: Parsed, meta: dict) -> Reply:
        notes: list[str] = []
        changed, intro, liked = False, None, []
        if p.user:
            try:
                hist = self.rec.history_of(p.user)
            except UnknownUserError:
                return Reply(f"I don't know user {p.user!r}: no ratings are stored for that id.",
                             meta={"action": "error"})
            old = set(self.rec.history_of(self.profile.user)) if self.profile.user else set()
            self.profile.user = p.user  # another user replaces the previous one's history
            self.profile.liked = list(dict.fromkeys(hist + [i for i in self.profile.liked if i not in old]))
            notes.append(f"Hello, user {self._show(p.user)}: I'll start from the {len(hist)} movies you rated.")
            changed = True
        for action, refs in (("like", p.liked), ("dislike", p.disliked), ("exclude", p.excluded),
                             ("more_like", p.more_like)):
            for ref in refs:
                item = self._item(ref, action, notes, meta)
                if item is not None:
                    self._apply(action, item, notes)
                    liked += [self._show(item.title)] if action == "like" else []
                    changed |= action != "exclude"
                    if action == "more_like":
                        intro = f"More like {self._show(item.title)}:"
        if p.query or p.genres or p.avoid_genres:
            self.profile.query, self.profile.avoid_terms = p.query, list(p.avoid_terms)
            self.profile.genres, self.profile.avoid_genres = list(p.genres), list(p.avoid_genres)
            changed = True
        if self._pending or not changed:
            notes += [f"Noted: you liked {_join(liked, 'and')}."] if liked else []
        if self._pending:
            self._deferred |= changed  # the profile changed: recommend once the questions are settled
            return self._ask(notes)
        if p.asked_why:
            return self._why(p.why, notes, meta)
        if p.show_more or changed:
            more = p.show_more and not changed
            return self._recommend(intro or ("Here are more:" if more else None), notes, "more" if more else "recommend")
        if notes:
            return Reply(" ".join(notes), meta={"action": "ack"})
        return self._help()

    def _help(self) -> Reply:
        text = ("Tell me a few movies you liked (\"I loved Alien and Heat\"), what you're in the mood for "
                "(\"something tense but not gory\"), or who you are (\"I'm user 42\").")
        return Reply(text, question=text, meta={"action": "help"})

    def recommend(self) -> Reply:
        """The next page for the current profile (as after a message that changed it): nothing shown,
        excluded or disliked comes back. Used by the LangChain tool, which fills the profile itself.

        Raises what ``Recommender.recommend`` raises; ModelError as :meth:`send`."""
        return self._recommend(None, [])

    # ------------------------------------------------------------------ references
    def _item(self, ref: Ref, action: str, notes: list[str], meta: dict) -> Item | None:
        """The item a reference names, or None (a note or a queued question says why)."""
        if ref.ordinal is not None:
            if not self.page:
                notes.append("There is no list yet to pick from.")
                return None
            n = ref.ordinal
            if not (n == -1 or 1 <= n <= len(self.page)):
                notes.append(f"The last list has {len(self.page)} items; there is no number {n}.")
                return None
            item = self.rec.item(self.page[n - 1 if n > 0 else -1].item_id)
            self.focus = item.id
            return item
        if ref.resolution is None:  # "it", "that one"
            if self.focus is not None:
                return self.rec.item(self.focus)
            if len(self.page) == 1:
                return self.rec.item(self.page[0].item_id)
            if self.page:
                cands = tuple(self.rec.item(r.item_id) for r in self.page)
                self._pending.append(_Question(action, "that one", cands,
                                               'Which one do you mean? Say e.g. "the second" or its title.'))
            else:
                notes.append("I haven't shown you anything yet.")
            return None
        return self._resolved(ref.text, ref.resolution, action, notes, meta)

    def _resolved(self, text: str, res: Resolution, action: str, notes: list[str], meta: dict) -> Item | None:
        if res.matched:
            meta["resolved"].append({"text": text, "item_id": res.item.id, "title": res.item.title, "how": res.how,
                                     "as": action})
            self.profile.excluded.update(d.id for d in res.duplicates)  # the same film listed twice
            if res.how != "exact":
                notes.append(f'I took "{self._show(text)}" as {self._show(res.item.title)}.')
            return res.item
        meta.setdefault("unresolved", []).append({"text": text, "kind": res.kind,
                                                  "candidates": [c.id for c in res.candidates]})
        if not res.candidates:
            notes.append(f'I could not find "{self._show(text)}" in the catalog.')
            return None
        self._pending.append(_Question(action, text, res.candidates, self._question(text, res.candidates, res.kind)))
        return None

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
        listed = _join(names, "or")
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

    def _apply(self, action: str, item: Item, notes: list[str]) -> None:
        pr = self.profile
        if action in ("like", "more_like"):
            pr.liked = [i for i in pr.liked if i != item.id] + [item.id]
            pr.disliked = [i for i in pr.disliked if i != item.id]
        elif action == "dislike":
            pr.liked = [i for i in pr.liked if i != item.id]
            pr.disliked = [i for i in pr.disliked if i != item.id] + [item.id]
            notes.append(f"Noted: you didn't like {self._show(item.title)}.")
        else:
            pr.excluded.add(item.id)
            notes.append(f"OK, I won't show {self._show(item.title)} again.")
        if self.focus == item.id and action != "more_like":
            self.focus = None

    # ------------------------------------------------------------------ questions
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
                self._pending[0] = _Question(q.action, q.text, same, self._question(q.text, same, "ambiguous"))
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

    # ------------------------------------------------------------------ answers
    def _why(self, ref: Ref | None, notes: list[str], meta: dict) -> Reply:
        if ref is None:
            target = self.focus if self.focus in self.explained else (self.page[0].item_id if self.page else None)
        elif ref.resolution is not None and not ref.resolution.matched:
            self._resolved(ref.text, ref.resolution, "why", notes, meta)
            return self._ask(notes) if self._pending else Reply(" ".join(notes), meta={"action": "ack"})
        else:
            item = self._item(ref, "why", notes, meta)
            if self._pending:
                return self._ask(notes)
            target = item.id if item is not None else None
            if item is not None and target not in self.explained:
                return Reply(" ".join([*notes, f"I haven't recommended {self._show(item.title)}."]),
                             meta={"action": "ack"})
        if target is None:
            return Reply(" ".join([*notes, "I haven't recommended anything yet."]), meta={"action": "ack"})
        return self._why_item(target, notes)

    def _why_item(self, item_id: str, notes: list[str]) -> Reply:
        if item_id not in self.explained:
            return Reply(" ".join([*notes, f"I haven't recommended {self._show(self.rec.item(item_id).title)}."]),
                         meta={"action": "ack"})
        r = self.explained[item_id]
        self.focus = item_id
        return Reply(" ".join([*notes, f"{self._show(r.title)}: {display_text(r.explanation)}"]), items=[r],
                     meta={"action": "why", "item_id": item_id, "because": list(r.because)})

    def _recommend(self, intro: str | None, notes: list[str], action: str = "recommend") -> Reply:
        pr = self.profile
        self._deferred = False
        exclude = set(pr.shown) | pr.excluded | set(pr.disliked)
        for g in pr.avoid_genres:
            exclude |= self.by_genre.get(g, set())
        query = self._query_vector()
        res = self.rec.recommend(history=list(pr.liked), k=self.page_size, exclude=exclude,
                                 query_vector=query, query_weight=self.query_weight)
        self.page, self.focus = list(res.items), None
        pr.shown.extend(r.item_id for r in res.items)
        self.explained.update((r.item_id, r) for r in res.items)
        if not res.items:
            text = "I have nothing left to show for this; tell me about other movies you like."
        else:
            head = intro or ("Here are some picks:" if not pr.liked else
                             f"Because you liked {_join([self._show(self.rec.item(i).title) for i in pr.liked[-3:]], 'and')}"
                             + (" and more" if len(pr.liked) > 3 else "") + ":")
            lines = [head] + [f"{r.rank}. {self._show(r.title)} — {display_text(r.explanation)}" for r in res.items]
            text = "\n".join(([" ".join(notes)] if notes else []) + lines)
        return Reply(text, items=list(res.items), meta={
            "action": action, "retriever": res.retriever,
            "ranker": res.ranker, "cold_start": res.cold_start, "history": len(pr.liked),
            "query": pr.query, "genres": list(pr.genres), "avoid_genres": list(pr.avoid_genres)})

    def _query_vector(self) -> np.ndarray | None:
        """float32 [d]: the query text (+ "Genres: ...") encoded, minus :data:`NEGATIVE_WEIGHT` times the
        negated words' encoding, normalised; None without a query or genres (negated words alone
        do not make a query)."""
        pr = self.profile
        positive = " ".join(([pr.query] if pr.query else []) + ([f"Genres: {', '.join(pr.genres)}."] if pr.genres else []))
        if not positive:
            return None
        enc = self._encoder()
        vecs = enc.encode([positive] + ([" ".join(pr.avoid_terms)] if pr.avoid_terms else []))
        q = vecs[0] - (NEGATIVE_WEIGHT * vecs[1] if len(vecs) > 1 else 0)
        return q / max(float(np.linalg.norm(q)), 1e-12)

    def _encoder(self):
        """The store's text encoder (:func:`store_encoder`)."""
        return store_encoder(self.rec)


def store_encoder(recommender: Recommender):
    """The text encoder of the recommender's store (``Config.text_encoder``, the model its item vectors
    were made with), loaded once per recommender; ``encode(texts) -> float32 [n, d]``.

    Raises ModelError: it cannot be loaded, or its dimension is not the store's."""
    enc = _ENCODERS.get(recommender)
    if enc is None:
        from llmrec.encoders.text import TextEncoder

        enc = TextEncoder(recommender.cfg)
        if enc.dim != recommender.vectors.shape[1]:
            raise ModelError(f"the text encoder {recommender.cfg.text_encoder!r} makes {enc.dim}-d vectors but the "
                             f"store's item vectors are {recommender.vectors.shape[1]}-d: configure the encoder "
                             "the store was ingested with")
        _ENCODERS[recommender] = enc
    return enc


def _unclassified(p: Parsed) -> bool:
    """Nothing the parser can act on but (at most) a free-text query: no title, ordinal, trigger,
    genre, negated word or user id."""
    return not (p.liked or p.disliked or p.excluded or p.more_like or p.asked_why or p.show_more or p.user
                or p.genres or p.avoid_genres or p.avoid_terms)


def _by_id(text: str, candidates: tuple[Item, ...]) -> Item | None:
    """The candidate whose id the answer is (``"42"``, ``"id 42"``, ``"#42"``, ``"the one with id 42"``), or None."""
    m = _ID_ANSWER.fullmatch(text)
    said = (m.group(1) if m else text).strip()
    hit = [c for c in candidates if c.id == said]
    return hit[0] if len(hit) == 1 else None


def _join(names: list[str], word: str) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"
