"""The ``Recommender``: retrieve -> rank -> explain over one data directory.

It composes the stages: the store's items and histories (:class:`~llmrec.store.view.StoreView`: load,
reload on another process's ingest), retrieval (:class:`~llmrec.retrieval.stage.RetrievalStage`: the
collaborative retriever, content fill, a free-text query, no-history answers) and the LLM ranking
(:class:`~llmrec.rank.stage.RankStage`: zero-shot or the trained ranker); :meth:`Recommender.recommend`
is the algorithm, and the explanations cite the history items closest to each pick.
"""

from __future__ import annotations

import operator

import numpy as np

from llmrec.config import Config
from llmrec.data.types import Item
from llmrec.errors import RequestError
from llmrec.rank.explain import cite, explain
from llmrec.rank.results import Recommendation, Recommendations
from llmrec.rank.stage import RankStage
from llmrec.rank.verbalizer import Ranking, modalities, soft_of
from llmrec.retrieval.query_blend import check_query
from llmrec.retrieval.stage import RetrievalStage
from llmrec.store.view import StoreView

__all__ = ["Recommendation", "Recommendations", "Recommender"]


class Recommender(StoreView, RetrievalStage, RankStage):
    """Recommends items for a stored user or for an ad-hoc history.

    Load with :meth:`load`; the LLM is loaded on first use.
    """

    _KEPT_ON_RELOAD = ("_backend", "_trained", "_refresh_lock")  # the LLM and the trained ranker stay loaded
    _DROPPED_ON_RELOAD = ("_soft",)  # the soft tokens' item vectors are re-read on next use

    def __init__(self, cfg: Config, ids: list[str], vectors: np.ndarray, metas: list[dict], interactions):
        super().__init__(cfg, ids, vectors, metas, interactions)
        self._backend = None
        self._load_retriever(interactions)

    def recommend(self, user_id=None, k: int | None = None, history: list | None = None, *,
                  exclude=None, query_vector=None, query_weight: float = 0.5) -> Recommendations:
        """Top-``k`` items for a stored user, or for an explicit ``history`` of item ids (oldest first).

        An item seen more than once counts once, at its latest position. Fewer than ``k`` items come
        back when the catalog has fewer unseen items (and at most 128, llmrec.topk's limit); none
        when the history covers the catalog.

        Keyword-only (the chat session's; without them the behaviour is the above):
            exclude: item ids never returned, besides the history (e.g. items already shown).
            query_vector: float [d], a free-text query encoded by the store's text encoder (the space
                of ``self.vectors``; normalised here). It biases the candidates: the pool is the
                retriever's top 128 plus the query's own top ``max(k, candidates)`` by cosine; each
                pool item scores ``(1 - query_weight) * z(-p) + query_weight * z(cosine to the query)``,
                p its place in the retriever's order (0 = best; an item only the query found: the
                pool's retriever size), z standardised over the pool; the best ``max(k, candidates)``
                go to the ranker;
                ``retrieval_score`` is then that blend and ``retriever`` ends in ``+query``. With an
                empty history the answer is the items closest to the query (``cold_start`` true,
                ``retriever`` ``query``, ``score`` the cosine), not the most popular ones.
            query_weight: in [0, 1], the query's share of the blend.

        Raises:
            UnknownUserError: ``user_id`` has no stored interactions.
            UnknownItemError: ``history`` or ``exclude`` names an item not in the store.
            RequestError (a ValueError): both or neither of ``user_id`` and ``history`` given,
                ``history`` or ``exclude`` not a collection of item ids (e.g. one string), ``k`` not an
                integer >= 1, ``query_vector`` not a finite non-zero vector of the item vectors'
                dimension, or ``query_weight`` outside [0, 1].
            PromptTooLongError: the ranking prompt exceeds the LLM's context even with one history
                item (older history items are dropped from the prompt first).
        """
        hist, user, skip, k, query = self._request(user_id, history, exclude, k, query_vector, query_weight)
        if not hist:
            return self._cold_start(user, k, skip) if query is None else self._query_start(user, k, skip, query)
        if len({self.index[i] for i in hist} | skip) >= len(self.ids):
            return Recommendations(user, [])
        n = max(k, self.cfg.candidates)
        rows, rscores, retriever = (self._retrieve(hist, n, skip) if query is None
                                    else self._retrieve_with_query(hist, n, skip, *query))
        shown = [self.items[self.index[i]] for i in hist[-self.cfg.history_max:]]
        cands = [self.items[r] for r in rows[: self.cfg.candidates]]
        trained = self.trained_ranker
        if trained is not None:
            ranking, soft = self._rank_trained(trained, hist, cands, rscores[: len(cands)]), {}
        else:
            ranking, shown, soft = self._rank_zero_shot(shown, cands)
        order = ranking.order + list(range(len(cands), len(rows)))  # beyond the labels: retriever order
        out = self._explained(rows, rscores, order[:k], ranking, shown, cands, soft, zero_shot=trained is None)
        return Recommendations(user, out, retriever=retriever, ranker="zero-shot" if trained is None else "trained")

    def _request(self, user_id, history, exclude, k, query_vector, query_weight):
        """The checked request of :meth:`recommend` (its Raises, in this order): (history item ids, each once
        at its latest position; the user id or None; the excluded rows; k; the query or None)."""
        if (user_id is None) == (history is None):
            raise RequestError("give exactly one of user_id or history")
        self.refresh()  # with a Chroma server: another replica's ingest is seen (see refresh)
        for name, value in (("history", history), ("exclude", exclude)):
            if value is not None and (isinstance(value, (str, bytes)) or not hasattr(value, "__iter__")):
                raise RequestError(f"{name} must be a list of item ids, got {type(value).__name__} {value!r}")
        skip = frozenset(self.index[self.item(i).id] for i in exclude) if exclude is not None else frozenset()
        query = None if query_vector is None else check_query(query_vector, query_weight, self.vectors.shape[1])
        k = self.cfg.k if k is None else k
        try:
            ok = not isinstance(k, bool) and operator.index(k) >= 1
        except TypeError:
            ok = False
        if not ok:
            raise RequestError(f"k must be an integer >= 1, got {k!r}")
        hist = self._history(user_id) if user_id is not None else [self.item(i).id for i in history]
        hist = list(dict.fromkeys(reversed(hist)))[::-1]  # each item once, at its latest position
        return hist, None if user_id is None else str(user_id), skip, operator.index(k), query

    def _explained(self, rows, rscores, picked: list[int], ranking: Ranking, shown: list[Item], cands: list[Item],
                   soft: dict, zero_shot: bool) -> list[Recommendation]:
        """The ``picked`` positions of ``rows`` as :class:`Recommendation`, each explained by the history
        items it is closest to (:func:`~llmrec.rank.explain.cite`, :func:`~llmrec.rank.explain.explain`)."""
        hist_rows = [self.index[it.id] for it in shown]
        cited = cite(self.vectors[[rows[p] for p in picked]], self.vectors[hist_rows])
        cited_items = [[shown[c] for c in cs] for cs in cited]
        texts = explain(self.backend, [self.items[rows[p]] for p in picked], cited_items,
                        self.cfg.explain, self.cfg.explain_max_tokens)
        out = []
        for r, (p, text, cs) in enumerate(zip(picked, texts, cited_items, strict=True), 1):
            it = self.items[rows[p]]
            score = float(ranking.logprobs[p]) if p < len(cands) else float("-inf")
            # The zero-shot prompt holds item_line (captions, transcripts); the trained one titles (+ collaborative tokens).
            seen = modalities(it, soft_of(it, soft) if p < len(cands) else frozenset(),
                              fallback=zero_shot and p < len(cands))
            out.append(Recommendation(it.id, it.title, score, r, text, [c.id for c in cs], float(rscores[p]), seen))
        return out






