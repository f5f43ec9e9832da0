"""The ``Recommender``: retrieval, LLM reranking and explanations over one data directory."""

from __future__ import annotations

import json
import math
import operator
import threading
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from llmrec.config import Config
from llmrec.data.types import Item, histories, item_from_metadata
from llmrec.errors import (
    ConfigError,
    ModelError,
    PromptTooLongError,
    RequestError,
    StaleRetrieverWarning,
    StoreError,
    UnknownItemError,
    UnknownUserError,
)
from llmrec.rank.explain import cite, explain
from llmrec.rank.fuse import fuse, zscore
from llmrec.rank.verbalizer import Ranking, modalities, soft_of, verbalizer_rank
from llmrec.retrieval.knn import top_scored
from llmrec.retrieval.topk import MAX_K, topk
from llmrec.retrieval.user_state import recency_weighted
from llmrec.store.interactions import open_interactions


@dataclass
class Recommendation:
    """One recommended item. ``score``: the LLM's label log-probability (natural log) for reranked
    items (-inf, null in JSON, for items past the ``candidates`` the LLM labelled, when k is
    larger), the item's interaction count for cold-start answers. ``rank``: 1-based.
    ``because``: ids of the history items the explanation cites."""

    item_id: str
    title: str
    score: float
    rank: int
    explanation: str
    because: list[str] = field(default_factory=list)
    retrieval_score: float | None = None
    modalities: dict = field(default_factory=dict)
    """How the ranking LLM saw the item's image and audio (``llmrec.rank.verbalizer.modalities``):
    ``{"image": "caption"}``, ``"soft_tokens"``, ``"transcript"``, ``"unused"``; {} for an item with
    neither, or when no LLM ranked it."""


@dataclass
class Recommendations:
    """``retriever``: which retriever found the candidates: ``sasrec``, ``sasrec-ensemble`` or
    ``fusion`` (SASRec + item-kNN [+ EASE]; trained by ``llmrec train-retriever``), ``item-knn`` (the default without one), ``+text`` appended when
    content similarity filled slots the collaborative retriever could not, ``text`` when no history
    item has interactions (content only), or ``popularity`` for a cold-start answer."""

    user: str | None
    items: list[Recommendation]
    cold_start: bool = False
    retriever: str | None = None
    ranker: str | None = None
    """``trained`` (the store's checkpoint of ``llmrec train-ranker``), ``zero-shot``, or None (no LLM:
    a cold-start answer)."""

    def to_dict(self) -> dict:
        """Plain data; a non-finite score (an item ranked past the LLM's labels) becomes None."""
        items = [asdict(r) for r in self.items]
        for d in items:
            for key in ("score", "retrieval_score"):
                if d[key] is not None and not math.isfinite(d[key]):
                    d[key] = None
        return {"user": self.user, "cold_start": self.cold_start, "retriever": self.retriever, "ranker": self.ranker,
                "items": items}

    def to_json(self) -> str:
        """Strict JSON (no NaN or Infinity): see :meth:`to_dict`."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1, allow_nan=False)


class Recommender:
    """Recommends items for a stored user or for an ad-hoc history.

    Load with :meth:`load`; the LLM is loaded on first use.
    """

    def __init__(self, cfg: Config, ids: list[str], vectors: np.ndarray, metas: list[dict], interactions):
        self.cfg = cfg
        self.ids = ids
        self.vectors = vectors
        self.index = {iid: r for r, iid in enumerate(ids)}
        self.items = [item_from_metadata(i, m) for i, m in zip(ids, metas, strict=True)]
        self.histories = histories([x for x in interactions if x.item in self.index])
        pop = Counter(x.item for x in interactions if x.item in self.index)
        self.popularity = np.array([pop.get(i, 0) for i in ids], dtype=np.int64)
        self._backend = None
        self._load_retriever(interactions)

    def _load_retriever(self, interactions) -> None:
        """The trained retriever at ``cfg.retriever_path()`` (written by ``llmrec train-retriever``)
        when there is one, else item-kNN over the stored interactions (fitted here, cached in the
        store as ``item-knn.npz``). Warns (:class:`StaleRetrieverWarning`) when the store's
        interactions are no longer those the trained retriever saw; uses item-kNN, with an
        :class:`IncompleteRetrieverWarning`, when an interrupted ``train-retriever`` left it half-replaced.
        With ``chroma_host`` set and no ``retriever_dir``, item-kNN (warning when the local folder
        holds a retriever): every replica over the server then answers alike.

        Raises:
            ModelError: the trained retriever shares no item id with the store (another catalog's),
                or its files are unreadable or damaged, or ``retriever_dir`` is a file.
            ConfigError: ``knn_neighbors`` < 0.
        """
        from llmrec.retrieval.knn import fit_for_store
        from llmrec.retrieval.store_data import store_sequences
        from llmrec.retrieval.train import load_trained

        self.data = store_sequences(interactions, self.ids)
        folder = self.cfg.retriever_path()
        # With a Chroma server only shared state counts: {data_dir}/retriever is this machine's
        # alone (another replica may lack it), so only an explicit retriever_dir is used.
        local_only = bool(self.cfg.chroma_host) and not self.cfg.retriever_dir
        if local_only and (folder / "manifest.json").exists():
            warnings.warn(f"the trained retriever in {folder} is not used: with chroma_host set, replicas share "
                          "only the server's state; set retriever_dir to a folder deployed to every replica",
                          UserWarning, stacklevel=3)
        loaded = None if local_only else load_trained(folder)
        if loaded is None:
            if self.cfg.knn_neighbors < 0:
                raise ConfigError(f"config key 'knn_neighbors' must be >= 0 (0 = keep all), got {self.cfg.knn_neighbors}")
            self.retriever, self.retriever_name, self.manifest = None, "item-knn", {}
            self.knn = fit_for_store(self.cfg.store_dir(), self.data, self.cfg.knn_neighbors)
            self._r_rows = np.array([self.index[i] for i in self.data.item_ids], dtype=np.int64)
            self._r_pos = {r: p for p, r in enumerate(self._r_rows.tolist())}
            return
        self.retriever, self.manifest = loaded
        self.retriever_name = self.manifest.get("kind", "sasrec")
        keep = [(n, self.index[i]) for n, i in enumerate(self.retriever.item_ids) if i in self.index]
        if not keep:
            origin = self.manifest.get("store") or self.manifest.get("dataset") or "another catalog"
            raise ModelError(f"the trained retriever in {folder} (trained on {origin}, "
                             f"{len(self.retriever.item_ids)} items) shares no item id with the store "
                             f"{self.cfg.store_dir()}: train one for this store with `llmrec train-retriever"
                             f" --data-dir {self.cfg.store_dir()}`, or set retriever_dir to its folder")
        if self.manifest.get("fingerprint") != self.data.fingerprint:
            warnings.warn(StaleRetrieverWarning(
                f"the trained retriever in {folder} was trained on other interactions than the store "
                f"{self.cfg.store_dir()} now holds ({self.manifest.get('n_interactions', '?')} then, "
                f"{self.data.n_interactions} now): it still works, items it does not know fall back to "
                f"content similarity; retrain with `llmrec train-retriever --data-dir {self.cfg.store_dir()}`"),
                stacklevel=3)
        self._r_rows = np.array([r for _, r in keep], dtype=np.int64)  # retriever position -> store row
        self._r_pos = {r: p for p, r in enumerate(self._r_rows.tolist())}  # store row -> position
        self._r_keep = np.array([n for n, _ in keep], dtype=np.int64)  # retriever position -> its own index
        if not hasattr(self.retriever, "scores"):  # a vector retriever: llmrec.topk over its item vectors
            self._r_items = self.retriever.item_vectors()[self._r_keep]

    @classmethod
    def load(cls, data_dir=None, config: Config | None = None) -> Recommender:
        """Open a data directory made by ``llmrec ingest`` (with ``chroma_host``: the server's store;
        items and interactions are read from it, nothing from the local data directory but the
        item-kNN cache, so every replica over one server answers the same; see :meth:`refresh`).

        Raises:
            StoreError: the directory holds no store (it is not created) or no ingested items, the
                Chroma server cannot be reached, or the stored interactions are corrupt.
            ConfigError: ``chroma_recheck_s`` < 0.
        """
        cfg = config or Config.load()
        if data_dir is not None:
            cfg = cfg.replace(data_dir=data_dir)
        if not cfg.chroma_recheck_s >= 0:
            raise ConfigError(f"config key 'chroma_recheck_s' must be >= 0 (0 = check before every request), "
                              f"got {cfg.chroma_recheck_s}")
        return cls._open(cfg)

    @classmethod
    def _open(cls, cfg: Config, reopen: bool = False) -> Recommender:
        """Read the store into a new Recommender. ``reopen``: an embedded store through a new client
        state (after another process wrote: see :func:`llmrec.store.open_client`)."""
        from llmrec.store import ChangeStamp, ItemStore

        path = cfg.store_dir()
        if cfg.chroma_host is None and not (path / "chroma.sqlite3").is_file():
            raise StoreError(f"no store at {path}: run `llmrec ingest` first")
        store = ItemStore(path, "text", cfg.chroma_host, cfg.chroma_port, cfg.chroma_timeout_s, reopen=reopen)
        stamp_src = ChangeStamp(store.client)
        stamp = stamp_src.read()  # read first: a write while we load shows at the next check
        ids, vecs, metas = store.matrix()
        if not ids:
            where = f"{cfg.chroma_host}:{cfg.chroma_port}" if cfg.chroma_host else str(path)
            raise StoreError(f"the store at {where} holds no items: run `llmrec ingest` first")
        rec = cls(cfg, ids, vecs, metas, open_interactions(cfg, path, store.client).read())
        rec._stamp_src, rec._stamp, rec._checked_at = stamp_src, stamp, time.monotonic()
        rec._refresh_lock = threading.Lock()
        return rec

    def refresh(self, force: bool = False) -> bool:
        """Reload the items and interactions when the store's change stamp
        (:class:`llmrec.store.ChangeStamp`: the server's with ``chroma_host``, else the embedded
        store's; renewed by every ``llmrec ingest`` that writes, from any process) differs from the
        one this Recommender loaded under. Called before each :meth:`recommend` and
        :meth:`history_of`; checks at most every ``chroma_recheck_s`` seconds (0: every call;
        ``force``: now). The check is one small read (about 3 ms against a local ``chroma run``,
        under 1 ms embedded); a reload costs a full :meth:`load` (the LLM and the trained ranker are
        kept; an embedded store is reopened, since chromadb's per-process client state does not
        follow another process's new vectors). A no-op (False) for a Recommender not made by :meth:`load`.

        Not atomic against a :meth:`recommend` running in another thread: a server calls it (or
        serialises requests) so that no request is in flight while it reloads.

        Returns:
            True when it reloaded.
        Raises:
            StoreUnavailableError: (a :class:`StoreError`) the server does not answer within
                ``chroma_timeout_s`` or is gone; the Recommender keeps its previous state.
            StoreError: what the store holds now cannot be loaded (the Recommender then keeps its
                previous state).
        """
        src = getattr(self, "_stamp_src", None)
        if src is None:
            return False
        now = time.monotonic()
        if not force and self.cfg.chroma_recheck_s > 0 and now - self._checked_at < self.cfg.chroma_recheck_s:
            return False
        self._checked_at = now
        seen = src.read()
        if seen == self._stamp:
            return False
        with self._refresh_lock:
            if self._stamp == seen:  # another thread reloaded meanwhile
                return False
            fresh = type(self)._open(self.cfg, reopen=True)
            keep = ("_backend", "_trained", "_refresh_lock")
            self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k not in keep})
            self.__dict__.pop("_soft", None)  # the soft tokens' item vectors are re-read on next use
        return True

    @property
    def backend(self):
        if self._backend is None:
            from llmrec.llm.hf import make_backend

            self._backend = make_backend(self.cfg)
        return self._backend

    def item(self, item_id: str) -> Item:
        try:
            return self.items[self.index[str(item_id)]]
        except KeyError:
            raise UnknownItemError(f"unknown item id {item_id!r}") from None

    def history_of(self, user_id) -> list[str]:
        """The stored user's item ids, oldest first (by timestamp, then item id); checks :meth:`refresh` first.

        Raises:
            UnknownUserError: no interactions stored for ``user_id``.
            StoreError: see :meth:`refresh`."""
        self.refresh()
        return self._history(user_id)

    def _history(self, user_id) -> list[str]:
        try:
            return self.histories[str(user_id)]
        except KeyError:
            raise UnknownUserError(f"unknown user {user_id!r}: no interactions stored for this user") from None

    def candidates(self, history: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Retriever: (item rows [<= n], scores [<= n]) for a non-empty history, history excluded."""
        rows, scores, _ = self._retrieve(history, n)
        return rows, scores

    def _retrieve(self, history: list[str], n: int, skip: frozenset = frozenset()) -> tuple[np.ndarray, np.ndarray, str]:
        """Collaborative candidates (the trained retriever, else item-kNN) from the history items it
        knows; content (text-vector) candidates fill what it cannot give (no known history item, or
        fewer than ``n`` items it can score). ``skip``: further store rows never returned (besides
        the history). Returns (store rows, scores, retriever name):
        ``sasrec``/``sasrec-ensemble``/``item-knn``, ``+text`` when content filled some slots,
        ``text`` when only content was used."""
        rows = [self.index[i] for i in history]
        known = [self._r_pos[r] for r in rows if r in self._r_pos]
        seen = set(rows) | set(skip)
        n = min(n, MAX_K, len(self.ids) - len(seen))
        got_rows, got_scores, name = np.zeros(0, np.int64), np.zeros(0, np.float32), "text"
        if n < 1:
            return got_rows, got_scores, name
        if known:
            excl = sorted(set(known) | {self._r_pos[r] for r in skip if r in self._r_pos})
            if self.retriever is not None:
                m = min(n, len(self._r_rows) - len(excl))
                if m >= 1 and hasattr(self.retriever, "scores"):  # fusion: dense fused scores, exact sort
                    fused = self.retriever.scores([list(history)])[0][self._r_keep]
                    idx, got_scores = top_scored(fused, m, excl, positive_only=False)
                    got_rows = self._r_rows[idx]
                elif m >= 1:
                    user = self.retriever.user_vectors([list(history)])
                    scores, idx = topk(user, self._r_items, m, exclude=[excl])
                    got_rows, got_scores = self._r_rows[idx[0].numpy()], scores[0].numpy()
            else:
                idx, sc = top_scored(self.knn.scores([known])[0], n, excl)
                got_rows, got_scores = self._r_rows[idx], sc
            name = self.retriever_name
        if len(got_rows) >= n:
            return got_rows[:n], got_scores[:n], name
        recent = rows[-self.cfg.history_max:]
        user = recency_weighted(self.vectors[recent], self.cfg.recency_half_life)
        taken = seen | set(got_rows.tolist())
        scores, idx = topk(user[None], self.vectors, n - len(got_rows), exclude=[taken])
        name = "text" if not len(got_rows) else f"{name}+text"
        return (np.concatenate([got_rows, idx[0].numpy()]), np.concatenate([got_scores, scores[0].numpy()]), name)

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
        if (user_id is None) == (history is None):
            raise RequestError("give exactly one of user_id or history")
        self.refresh()  # with a Chroma server: another replica's ingest is seen (see refresh)
        for name, value in (("history", history), ("exclude", exclude)):
            if value is not None and (isinstance(value, (str, bytes)) or not hasattr(value, "__iter__")):
                raise RequestError(f"{name} must be a list of item ids, got {type(value).__name__} {value!r}")
        skip = frozenset(self.index[self.item(i).id] for i in exclude) if exclude is not None else frozenset()
        query = None if query_vector is None else self._query(query_vector, query_weight)
        k = self.cfg.k if k is None else k
        try:
            ok = not isinstance(k, bool) and operator.index(k) >= 1
        except TypeError:
            ok = False
        if not ok:
            raise RequestError(f"k must be an integer >= 1, got {k!r}")
        k = operator.index(k)
        hist = self._history(user_id) if user_id is not None else [self.item(i).id for i in history]
        hist = list(dict.fromkeys(reversed(hist)))[::-1]  # each item once, at its latest position
        user = None if user_id is None else str(user_id)
        seen = {self.index[i] for i in hist}
        if not hist:
            return self._cold_start(user, k, skip) if query is None else self._query_start(user, k, skip, query)
        if len(seen | skip) >= len(self.ids):
            return Recommendations(user, [])
        if query is None:
            rows, rscores, retriever = self._retrieve(hist, max(k, self.cfg.candidates), skip)
        else:
            rows, rscores, retriever = self._retrieve_with_query(hist, max(k, self.cfg.candidates), skip, *query)
        shown = [self.items[self.index[i]] for i in hist[-self.cfg.history_max:]]
        cands = [self.items[r] for r in rows[: self.cfg.candidates]]
        trained = self.trained_ranker
        if trained is not None:
            ranking = self._rank_trained(trained, hist, cands, rscores[: len(cands)])
        soft = self.soft_tokens(shown + cands) if trained is None else {}
        while trained is None:  # a prompt over the LLM's context: show less history (the most recent kept)
            try:
                ranking = verbalizer_rank(self.backend, shown, cands, soft)
                break
            except PromptTooLongError:
                if len(shown) <= 1:
                    raise
                shown = shown[len(shown) // 2:]
        order = ranking.order + list(range(len(cands), len(rows)))  # beyond the labels: retriever order
        picked = order[:k]
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
                              fallback=trained is None and p < len(cands))
            out.append(Recommendation(it.id, it.title, score, r, text, [c.id for c in cs], float(rscores[p]), seen))
        return Recommendations(user, out, retriever=retriever, ranker="zero-shot" if trained is None else "trained")

    def soft_tokens(self, items: list[Item]) -> dict:
        """Soft tokens of ``items`` for the zero-shot prompt, one entry per item and ``ranker_modalities``
        modality it has a vector of (:class:`~llmrec.projector.soft.SoftTokens`, loaded on first use).

        Raises StoreError / ModelError / ProjectorMismatchError as ``SoftTokens`` does."""
        if not self.cfg.ranker_modalities:
            return {}
        if getattr(self, "_soft", None) is None:
            from llmrec.projector.soft import SoftTokens

            self._soft = [SoftTokens(self.cfg, m) for m in self.cfg.ranker_modalities]
        out: dict = {}
        for source in self._soft:
            out.update(source.tokens(items))
        return out

    @property
    def trained_ranker(self):
        """The store's trained ranker (:class:`~llmrec.rank.model.RankerModel`; with ``llm_backend: vllm``
        a :class:`~llmrec.llm.vllm_ranker.VLLMRanker`, its LoRA adapter on the vLLM server), loaded on first use;
        None when ``ranker`` is ``zero-shot``, or ``auto`` without a checkpoint.

        Raises:
            RankerMismatchError: the checkpoint was trained for another base model, prompt template
                or retriever (each difference named).
            ModelError: ``ranker`` is ``trained`` and there is no checkpoint, or it is damaged, or
                ``chroma_host`` is set without ``ranker_dir`` (with ``auto`` that means zero-shot)."""
        if not hasattr(self, "_trained"):
            from llmrec.rank import checkpoint as ckpt
            from llmrec.rank.store import ranker_path, retriever_identity

            folder = ranker_path(self.cfg)
            local_only = bool(self.cfg.chroma_host) and not self.cfg.ranker_dir  # see _load_retriever
            if self.cfg.ranker == "trained" and local_only:
                raise ModelError("ranker is 'trained' with chroma_host set: set ranker_dir to the checkpoint folder "
                                 f"deployed to every replica (the local {folder} is not shared)")
            if self.cfg.ranker == "zero-shot" or (self.cfg.ranker == "auto" and (
                    local_only or not (folder / "manifest.json").exists())):
                self._trained = None
            else:
                load = ckpt.load
                if self.cfg.llm_backend == "vllm":  # the adapter served by vLLM, the prompt built here
                    from llmrec.llm.vllm_ranker import load
                self._trained = load(folder, self.cfg, retriever=retriever_identity(self.cfg, self.manifest))
        return self._trained

    def _rank_trained(self, model, hist: list[str], cands: list[Item], rscores: np.ndarray) -> Ranking:
        """Order by the trained ranker fused with the retriever (the checkpoint's validation weight)."""
        n = self.cfg.ranker_history
        shown = [self.items[self.index[i]] for i in hist[-n:]] if n else []
        lp = model.score([(shown, cands)])[0]
        w = (model.manifest.get("fusion") or {}).get("weight")
        final = lp if w is None or len(cands) < 2 else fuse(lp, np.asarray(rscores, dtype=np.float64), w)
        return Ranking(sorted(range(len(cands)), key=lambda i: (-final[i], i)), lp)

    def _query(self, query_vector, weight) -> tuple[np.ndarray, float]:
        """The checked, L2-normalised query vector float32 [d] and its weight (see :meth:`recommend`)."""
        try:
            q = np.asarray(query_vector, dtype=np.float32).reshape(-1)
            w = float(weight)
        except (TypeError, ValueError) as e:
            raise RequestError(f"query_vector must be a vector of numbers and query_weight a number: {e}") from None
        norm = float(np.linalg.norm(q)) if q.size else 0.0
        if q.shape != (self.vectors.shape[1],) or not math.isfinite(norm) or norm == 0:
            raise RequestError(f"query_vector must be a finite non-zero vector of {self.vectors.shape[1]} numbers "
                               f"(the store's text vectors), got shape {tuple(q.shape)}")
        if not 0 <= w <= 1:
            raise RequestError(f"query_weight must be in [0, 1], got {weight!r}")
        return q / norm, w

    def _retrieve_with_query(self, history: list[str], n: int, skip: frozenset, q: np.ndarray,
                             w: float) -> tuple[np.ndarray, np.ndarray, str]:
        """The best ``n`` of the retriever's top ``MAX_K`` plus the query's top ``n``, by the blend of
        the standardised retriever order and query cosines (see :meth:`recommend`)."""
        rows, _, name = self._retrieve(history, MAX_K, skip)
        place = np.arange(len(rows), dtype=np.float64)  # the retriever's order (its scores may mix scales)
        taken = {self.index[i] for i in history} | set(skip) | set(rows.tolist())
        m = min(n, len(self.ids) - len(taken))
        if m >= 1:
            _, idx = topk(q[None], self.vectors, m, exclude=[sorted(taken)])
            extra = idx[0].numpy()
            rows = np.concatenate([rows, extra])
            place = np.concatenate([place, np.full(len(extra), float(len(place)))])

        blend = (1 - w) * zscore(-place) + w * zscore((self.vectors[rows] @ q).astype(np.float64))
        order = np.lexsort((rows, -blend))[:n]
        return rows[order], blend[order].astype(np.float32), f"{name}+query"

    def _query_start(self, user, k: int, skip: frozenset, q: tuple[np.ndarray, float]) -> Recommendations:
        """No history, a query: the items closest to it (cosine), best first."""
        k = min(k, MAX_K, len(self.ids) - len(skip))
        if k < 1:
            return Recommendations(user, [], cold_start=True, retriever="query")
        scores, idx = topk(q[0][None], self.vectors, k, exclude=[sorted(skip)])
        return Recommendations(user, [
            Recommendation(self.ids[r], self.items[r].title, float(s), n,
                           f"Close to what you asked for (text similarity {s:.2f}); "
                           "there is no history to personalise on yet.")
            for n, (r, s) in enumerate(zip(idx[0].tolist(), scores[0].tolist(), strict=True), 1)
        ], cold_start=True, retriever="query")

    def _cold_start(self, user, k: int, skip: frozenset = frozenset()) -> Recommendations:
        order = [r for r in sorted(range(len(self.ids)), key=lambda r: (-self.popularity[r], r)) if r not in skip][:k]
        return Recommendations(user, [
            Recommendation(self.ids[r], self.items[r].title, float(self.popularity[r]), n,
                           f"Popular with other users ({self.popularity[r]} interactions); "
                           "there is no history to personalise on yet.")
            for n, r in enumerate(order, 1)
        ], cold_start=True, retriever="popularity")
