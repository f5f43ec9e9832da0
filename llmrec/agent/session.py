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

import time

import numpy as np

from llmrec.agent.ask_back import AskBack, Question, join_names
from llmrec.agent.intent import ROUTE, choose_intent
from llmrec.agent.parse import Parsed, Ref, check_message, parse
from llmrec.agent.query import query_vector, store_encoder
from llmrec.agent.reply import Profile, Reply
from llmrec.agent.titles import Resolution, TitleIndex
from llmrec.data.types import Item
from llmrec.errors import ConfigError, RequestError, UnknownUserError
from llmrec.recommender import Recommendation, Recommender
from llmrec.text_safety import display_text


class ChatSession(AskBack):
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
        self._pending: list[Question] = []
        self._deferred = False
        self.turns = 0
        self.llm_intent = bool(recommender.cfg.chat.llm_intent)
        self.intent_margin = float(recommender.cfg.chat.intent_margin)
        if not self.intent_margin >= 0:
            raise ConfigError(f"config key 'chat_intent_margin' must be >= 0 (nats; inf: never), "
                              f"got {recommender.cfg.chat.intent_margin!r}")

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
            notes += [f"Noted: you liked {join_names(liked, 'and')}."] if liked else []
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
                self._pending.append(Question(action, "that one", cands,
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
        self._pending.append(Question(action, text, res.candidates, self._question(text, res.candidates, res.kind)))
        return None


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
                             f"Because you liked {join_names([self._show(self.rec.item(i).title) for i in pr.liked[-3:]], 'and')}"
                             + (" and more" if len(pr.liked) > 3 else "") + ":")
            lines = [head] + [f"{r.rank}. {self._show(r.title)} — {display_text(r.explanation)}" for r in res.items]
            text = "\n".join(([" ".join(notes)] if notes else []) + lines)
        return Reply(text, items=list(res.items), meta={
            "action": action, "retriever": res.retriever,
            "ranker": res.ranker, "cold_start": res.cold_start, "history": len(pr.liked),
            "query": pr.query, "genres": list(pr.genres), "avoid_genres": list(pr.avoid_genres)})


    def _query_vector(self) -> np.ndarray | None:
        """The profile's query vector (:func:`llmrec.agent.query.query_vector`), None without a query."""
        return query_vector(self.profile, self._encoder())

    def _encoder(self):
        """The store's text encoder (:func:`store_encoder`)."""
        return store_encoder(self.rec)


def _unclassified(p: Parsed) -> bool:
    """Nothing the parser can act on but (at most) a free-text query: no title, ordinal, trigger,
    genre, negated word or user id."""
    return not (p.liked or p.disliked or p.excluded or p.more_like or p.asked_why or p.show_more or p.user
                or p.genres or p.avoid_genres or p.avoid_terms)


