"""The retrieval stage of the :class:`~llmrec.recommender.Recommender`: the store's collaborative
retriever (:class:`~llmrec.retrieval.store_retriever.StoreRetriever`), content (text-vector) candidates
where it cannot give enough, a free-text query blended in, and the answers for a user with no history
(the items closest to the query, else the most popular). A mixin over a
:class:`~llmrec.store.view.StoreView` (``cfg``, ``ids``, ``vectors``, ``index``, ``items``, ``popularity``)."""

from __future__ import annotations

import numpy as np

from llmrec.rank.results import Recommendation, Recommendations
from llmrec.retrieval.query_blend import blend, closest
from llmrec.retrieval.topk import MAX_K, topk
from llmrec.retrieval.user_state import recency_weighted


class RetrievalStage:
    """Candidates for a history (see the module docstring)."""

    def _load_retriever(self, interactions) -> None:
        """The store's collaborative retriever (:meth:`llmrec.retrieval.store_retriever.StoreRetriever.load`:
        the trained one at ``cfg.retriever_path()``, else item-kNN; its warnings and errors).

        Raises:
            ModelError: the trained retriever shares no item id with the store (another catalog's),
                or its files are unreadable or damaged, or ``retriever_dir`` is a file.
            ConfigError: ``knn_neighbors`` < 0.
        """
        from llmrec.retrieval.store_retriever import StoreRetriever

        # stacklevel 3: the warnings point where Recommender(...) is called, as they always have
        self.store_retriever = StoreRetriever.load(self.cfg, interactions, self.ids, self.index, stacklevel=3)

    @property
    def retriever(self):
        """The trained retriever (item ids in), or None when item-kNN is used."""
        return self.store_retriever.retriever

    @property
    def retriever_name(self) -> str:
        """``sasrec``, ``sasrec-ensemble``, ``fusion`` or ``item-knn``."""
        return self.store_retriever.name

    @property
    def manifest(self) -> dict:
        """The trained retriever's manifest ({} for item-kNN)."""
        return self.store_retriever.manifest

    @property
    def data(self):
        """The store's :class:`~llmrec.retrieval.store_data.StoreSequences`."""
        return self.store_retriever.data

    @property
    def knn(self):
        """The store's fitted item-kNN when no trained retriever is used, else None."""
        return self.store_retriever.knn

    def candidates(self, history: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Retriever: (item rows [<= n], scores [<= n]) for a non-empty history, history excluded."""
        rows, scores, _ = self._retrieve(history, n)
        return rows, scores

    def _retrieve(self, history: list[str], n: int, skip: frozenset = frozenset()) -> tuple[np.ndarray, np.ndarray, str]:
        """Collaborative candidates (:meth:`StoreRetriever.collaborative
        <llmrec.retrieval.store_retriever.StoreRetriever.collaborative>`: the trained retriever, else
        item-kNN) from the history items it knows; content (text-vector) candidates fill what it
        cannot give (no known history item, or fewer than ``n`` items it can score). ``skip``: further
        store rows never returned (besides the history). Returns (store rows, scores, retriever name):
        ``sasrec``/``sasrec-ensemble``/``fusion``/``item-knn``, ``+text`` when content filled some
        slots, ``text`` when only content was used."""
        rows = [self.index[i] for i in history]
        seen = set(rows) | set(skip)
        n = min(n, MAX_K, len(self.ids) - len(seen))
        if n < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), "text"
        got_rows, got_scores, name = self.store_retriever.collaborative(history, n, skip)
        if len(got_rows) >= n:
            return got_rows[:n], got_scores[:n], name
        recent = rows[-self.cfg.history_max:]
        user = recency_weighted(self.vectors[recent], self.cfg.recency_half_life)
        taken = seen | set(got_rows.tolist())
        scores, idx = topk(user[None], self.vectors, n - len(got_rows), exclude=[taken])
        name = "text" if not len(got_rows) else f"{name}+text"
        return (np.concatenate([got_rows, idx[0].numpy()]), np.concatenate([got_scores, scores[0].numpy()]), name)

    def _retrieve_with_query(self, history: list[str], n: int, skip: frozenset, q: np.ndarray,
                             w: float) -> tuple[np.ndarray, np.ndarray, str]:
        """The retriever's top ``MAX_K`` blended with the query (:func:`llmrec.retrieval.query_blend.blend`)."""
        rows, _, name = self._retrieve(history, MAX_K, skip)
        taken = {self.index[i] for i in history} | set(skip) | set(rows.tolist())
        rows, scores = blend(rows, self.vectors, taken, q, w, n)
        return rows, scores, f"{name}+query"

    def _query_start(self, user, k: int, skip: frozenset, q: tuple[np.ndarray, float]) -> Recommendations:
        """No history, a query: the items closest to it (cosine), best first."""
        rows, scores = closest(self.vectors, q[0], k, skip)
        return Recommendations(user, [
            Recommendation(self.ids[r], self.items[r].title, float(s), n,
                           f"Close to what you asked for (text similarity {s:.2f}); "
                           "there is no history to personalise on yet.")
            for n, (r, s) in enumerate(zip(rows, scores, strict=True), 1)
        ], cold_start=True, retriever="query")

    def _cold_start(self, user, k: int, skip: frozenset = frozenset()) -> Recommendations:
        order = [r for r in sorted(range(len(self.ids)), key=lambda r: (-self.popularity[r], r)) if r not in skip][:k]
        return Recommendations(user, [
            Recommendation(self.ids[r], self.items[r].title, float(self.popularity[r]), n,
                           f"Popular with other users ({self.popularity[r]} interactions); "
                           "there is no history to personalise on yet.")
            for n, r in enumerate(order, 1)
        ], cold_start=True, retriever="popularity")
