"""The store's collaborative retriever, as ``recommend`` uses it: the trained one (``llmrec
train-retriever``) when there is one, else item-kNN over the stored interactions.

Policy that belongs to the retriever lives here: which one is used (a trained folder, or item-kNN,
also when an interrupted retrain left the folder half-replaced, or when ``chroma_host`` makes the
local folder unshared), staleness (:class:`StaleRetrieverWarning`), a retriever of another catalog
(:class:`ModelError`), and the map between the retriever's item order and the store's rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from llmrec.errors import ConfigError, ModelError, StaleRetrieverWarning
from llmrec.retrieval.knn import ItemKNN, top_scored
from llmrec.retrieval.store_data import StoreSequences
from llmrec.retrieval.topk import topk


@dataclass
class StoreRetriever:
    """Attributes:
        name: ``sasrec``, ``sasrec-ensemble``, ``fusion`` (the trained retriever's manifest kind) or
            ``item-knn``.
        manifest: the trained retriever's manifest ({} for item-kNN).
        data: the store's :class:`StoreSequences` (what collaborative retrievers learn from).
        retriever: the trained retriever (item ids in, ``dense_scores`` saying whether it scores
            itself or through ``user_vectors`` / ``item_vectors``), or None (item-kNN).
        knn: the fitted item-kNN when ``retriever`` is None, else None.
        index: store item id -> store row.
        rows: int64 [M]: store row of each position the retriever scores.
        pos: store row -> position.
        keep: int64 [M] (trained retriever only): position -> the retriever's own item index.
        items: float32 [M, d] (a vector retriever only): its item vectors at ``keep``.
    """

    name: str
    manifest: dict
    data: StoreSequences
    retriever: object | None
    knn: ItemKNN | None
    index: dict
    rows: np.ndarray
    pos: dict
    keep: np.ndarray | None = None
    items: np.ndarray | None = None

    @classmethod
    def load(cls, cfg, interactions, ids: list[str], index: dict, stacklevel: int = 1) -> StoreRetriever:
        """The trained retriever at ``cfg.retriever_path()`` (written by ``llmrec train-retriever``)
        when there is one, else item-kNN over the stored interactions (fitted here, cached in the
        store as ``item-knn.npz``). ``ids``: the store's item ids in row order, ``index`` id -> row.
        Warns (:class:`StaleRetrieverWarning`) when the store's interactions are no longer those the
        trained retriever saw; uses item-kNN, with an :class:`IncompleteRetrieverWarning`, when an
        interrupted ``train-retriever`` left it half-replaced. With ``chroma_host`` set and no
        ``retriever_dir``, item-kNN (warning when the local folder holds a retriever): every replica
        over the server then answers alike. ``stacklevel``: the warnings', counted from the caller
        (1: the line calling this).

        Raises:
            ModelError: the trained retriever shares no item id with the store (another catalog's),
                or its files are unreadable or damaged, or ``retriever_dir`` is a file.
            ConfigError: ``knn_neighbors`` < 0.
        """
        from llmrec.retrieval.knn import fit_for_store
        from llmrec.retrieval.store_data import store_sequences
        from llmrec.retrieval.train import load_trained

        data = store_sequences(interactions, ids)
        folder = cfg.retriever_path()
        # With a Chroma server only shared state counts: {data_dir}/retriever is this machine's
        # alone (another replica may lack it), so only an explicit retriever_dir is used.
        local_only = bool(cfg.chroma.host) and not cfg.retriever.dir
        if local_only and (folder / "manifest.json").exists():
            warnings.warn(f"the trained retriever in {folder} is not used: with chroma_host set, replicas share "
                          "only the server's state; set retriever_dir to a folder deployed to every replica",
                          UserWarning, stacklevel=stacklevel + 1)
        loaded = None if local_only else load_trained(folder, stacklevel=stacklevel + 1)
        if loaded is None:
            if cfg.knn_neighbors < 0:
                raise ConfigError(f"config key 'knn_neighbors' must be >= 0 (0 = keep all), got {cfg.knn_neighbors}")
            knn = fit_for_store(cfg.store_dir(), data, cfg.knn_neighbors)
            rows = np.array([index[i] for i in data.item_ids], dtype=np.int64)
            return cls("item-knn", {}, data, None, knn, index, rows, {r: p for p, r in enumerate(rows.tolist())})
        retriever, manifest = loaded
        keep = [(n, index[i]) for n, i in enumerate(retriever.item_ids) if i in index]
        if not keep:
            origin = manifest.get("store") or manifest.get("dataset") or "another catalog"
            raise ModelError(f"the trained retriever in {folder} (trained on {origin}, "
                             f"{len(retriever.item_ids)} items) shares no item id with the store "
                             f"{cfg.store_dir()}: train one for this store with `llmrec train-retriever"
                             f" --data-dir {cfg.store_dir()}`, or set retriever_dir to its folder")
        if manifest.get("fingerprint") != data.fingerprint:
            warnings.warn(StaleRetrieverWarning(
                f"the trained retriever in {folder} was trained on other interactions than the store "
                f"{cfg.store_dir()} now holds ({manifest.get('n_interactions', '?')} then, "
                f"{data.n_interactions} now): it still works, items it does not know fall back to "
                f"content similarity; retrain with `llmrec train-retriever --data-dir {cfg.store_dir()}`"),
                stacklevel=stacklevel + 1)
        rows = np.array([r for _, r in keep], dtype=np.int64)  # retriever position -> store row
        own = np.array([n for n, _ in keep], dtype=np.int64)  # retriever position -> its own index
        # A vector retriever: llmrec.topk over its item vectors; one scoring itself needs none.
        items = None if retriever.dense_scores else retriever.item_vectors()[own]
        return cls(manifest.get("kind", "sasrec"), manifest, data, retriever, None, index, rows,
                   {r: p for p, r in enumerate(rows.tolist())}, own, items)

    def collaborative(self, history: list[str], n: int, skip_rows: Iterable[int] = ()) -> tuple[
            np.ndarray, np.ndarray, str]:
        """At most ``n`` (>= 1) candidates from the history items this retriever knows, best first;
        the history and ``skip_rows`` (store rows) never returned. Item-kNN returns only items with
        a positive score. Returns (store rows int64 [<= n], scores float32 [<= n], :attr:`name`);
        no rows when no history item is known to it (or nothing is left to score)."""
        known = [self.pos[self.index[i]] for i in history if self.index[i] in self.pos]
        if not known:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), self.name
        excl = sorted(set(known) | {self.pos[r] for r in skip_rows if r in self.pos})
        if self.retriever is None:
            idx, sc = top_scored(self.knn.scores([known])[0], n, excl)
            return self.rows[idx], sc, self.name
        m = min(n, len(self.rows) - len(excl))
        if m < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), self.name
        if self.retriever.dense_scores:  # fusion: dense fused scores, exact sort
            fused = self.retriever.scores([list(history)])[0][self.keep]
            idx, scores = top_scored(fused, m, excl, positive_only=False)
            return self.rows[idx], scores, self.name
        user = self.retriever.user_vectors([list(history)])
        scores, idx = topk(user, self.items, m, exclude=[excl])
        return self.rows[idx[0].numpy()], scores[0].numpy(), self.name
