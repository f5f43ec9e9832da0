"""Item-kNN: the collaborative retriever that needs no training run.

Item-based collaborative filtering (Sarwar et al., WWW 2001; Deshpande & Karypis, TOIS 2004):
cosine similarity between items' binary user columns, the ``neighbors`` most similar items kept per
item; a user's score for item j is ``sum_h w_h * sim(h, j)`` over the history items h, with
recency weights w (the newest weighs 1, halving every ``half_life`` items back; 0 = all equal).

Sparse throughout (``scipy.sparse``): fitting costs about the sum over users of their history
length squared, and memory O(N * neighbors), so it scales to catalogs whose dense N x N similarity
would not fit. The same class is the harness's ``item-knn`` baseline (``llmrec.eval.baselines``),
whose dense :meth:`item_vectors` feed ``llmrec.topk``.
"""

from __future__ import annotations

import contextlib
import os
import zipfile

import numpy as np
import scipy.sparse as sp

from llmrec.retrieval.validation import HALF_LIVES, select_half_life


def recency_weights(n: int, half_life: float) -> np.ndarray:
    """float64 [n]: weight of each of the n history items (oldest first); the newest weighs 1 and a
    weight halves every ``half_life`` items back; ``half_life`` 0 gives all ones."""
    if half_life <= 0:
        return np.ones(n)
    return 0.5 ** (np.arange(n - 1, -1, -1) / half_life)


class ItemKNN:
    """Item-kNN over 0-based item indices.

    Args:
        neighbors: most similar items kept per item (ties at the cut are all kept; 0 = keep all).
        half_life: recency half-life of the user's history weights; None = choose it on validation
            (:func:`llmrec.retrieval.validation.select_half_life`, or :meth:`select_half_life` here).
    """

    kind = name = "item-knn"
    dense_scores = True
    """:meth:`scores` (the sparse product) is its score; its dense vectors feed ``llmrec.topk`` in the harness."""

    def __init__(self, neighbors: int = 100, half_life: float | None = None):
        self.neighbors, self.half_life = neighbors, half_life

    def fit_sequences(self, sequences: list[list[int]], n_items: int) -> ItemKNN:
        """Fit on per-user item-index sequences (only these interactions are seen).

        Returns self; ``self.sim`` is a float32 CSR [N, N]: row h = the kept similarities of h.
        Raises ValueError when an index is outside [0, n_items)."""
        rows = np.concatenate([np.full(len(set(s)), u) for u, s in enumerate(sequences)] or [np.zeros(0, int)])
        cols = np.concatenate([np.fromiter(set(s), dtype=np.int64) for s in sequences] or [np.zeros(0, int)])
        if cols.size and (cols.min() < 0 or cols.max() >= n_items):
            raise ValueError(f"item indices must be in [0, {n_items}), got {cols.min()}..{cols.max()}")
        X = sp.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=(len(sequences), n_items))
        co = (X.T @ X).tocsr()
        co.sum_duplicates()
        norm = np.sqrt(co.diagonal()).astype(np.float32)
        co.setdiag(0.0)
        co.eliminate_zeros()
        coo = co.tocoo()
        data = coo.data.astype(np.float32) / np.maximum(norm[coo.row] * norm[coo.col], np.float32(1e-12))
        sim = sp.csr_matrix((data, (coo.row, coo.col)), shape=(n_items, n_items), dtype=np.float32)
        if 0 < self.neighbors < n_items:
            sim = _keep_top(sim, self.neighbors)
        self.sim, self.n_items = sim, n_items
        return self

    def fit(self, split) -> ItemKNN:
        """Fit on a :class:`llmrec.data.splits.Split`'s TRAINING part; choose the half-life on its
        validation targets when it is None."""
        self.fit_sequences([split.train[u] for u in split.users], split.n_items)
        if self.half_life is None:
            select_half_life(self, split)  # the module function (validation.py), not the method below
        return self

    def _weights(self, histories: list[list[int]]) -> sp.csr_matrix:
        r, c, v = [], [], []
        for b, h in enumerate(histories):
            if h:
                w = recency_weights(len(h), self.half_life or 0.0)
                r.extend([b] * len(h))
                c.extend(h)
                v.extend(w.tolist())
        # duplicates (an item seen twice) add up, as np.add.at does
        return sp.csr_matrix((np.asarray(v, dtype=np.float32), (r, c)), shape=(len(histories), self.n_items))

    def scores(self, histories: list[list[int]]) -> np.ndarray:
        """float32 [B, N]: each history's score for every item (0 where no neighbour links them)."""
        return np.asarray((self._weights(histories) @ self.sim).todense(), dtype=np.float32)

    def user_vectors(self, histories: list[list[int]]) -> np.ndarray:
        """float32 [B, N] dense history weights: with :meth:`item_vectors`, ``U @ V.T = scores``."""
        return np.asarray(self._weights(histories).todense(), dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        """float32 [N, N] dense ``sim.T`` (row j = every item's similarity to j): for the harness."""
        return np.ascontiguousarray(self.sim.T.toarray(), dtype=np.float32)

    def select_half_life(self, histories: list[list[int]], targets: list[int], grid=HALF_LIVES) -> float:
        """Set and return the half-life in ``grid`` with the best NDCG@10 of ``targets`` given
        ``histories`` (history items masked; first best wins)."""
        from llmrec.metrics import ndcg10_from_scores

        best, best_h = -1.0, grid[0]
        for h in grid:
            self.half_life = h
            v = ndcg10_from_scores(self.scores(histories), targets, histories)
            if v > best:
                best, best_h = v, h
        self.half_life = best_h
        self.valid_selection = {"half_life": best_h, "valid_ndcg10": best}
        return best_h

    def state(self) -> dict:
        """Arrays that :meth:`from_state` rebuilds the fitted model from (for ``np.savez``)."""
        s = self.sim
        return {"data": s.data, "indices": s.indices, "indptr": s.indptr, "n_items": np.int64(self.n_items),
                "neighbors": np.int64(self.neighbors), "half_life": np.float64(self.half_life or 0.0)}

    @classmethod
    def from_state(cls, st) -> ItemKNN:
        """The model :meth:`state` saved. Raises ValueError (KeyError: an array missing) when the
        arrays do not form a valid N x N similarity matrix."""
        m = cls(int(st["neighbors"]), float(st["half_life"]))
        n = int(st["n_items"])
        m.sim = sp.csr_matrix((st["data"], st["indices"], st["indptr"]), shape=(n, n))
        m.sim.check_format(full_check=True)  # indices in range, indptr monotonic
        if not np.isfinite(m.sim.data).all():
            raise ValueError("non-finite similarities")
        m.n_items = n
        return m


def _keep_top(sim: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Per row, the entries >= the row's n-th largest value (all of them when it has <= n)."""
    keep = np.ones(sim.nnz, dtype=bool)
    for r in range(sim.shape[0]):
        a, b = sim.indptr[r], sim.indptr[r + 1]
        if b - a > n:
            d = sim.data[a:b]
            cut = np.partition(d, b - a - n)[b - a - n]
            keep[a:b] = d >= cut
    row = np.repeat(np.arange(sim.shape[0]), np.diff(sim.indptr))
    return sp.csr_matrix((sim.data[keep], (row[keep], sim.indices[keep])), shape=sim.shape, dtype=np.float32)


def top_scored(scores: np.ndarray, n: int, exclude, positive_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The at most ``n`` best items, ``exclude`` (item indices) never returned; best first, equal
    scores by lower index. ``positive_only``: only items with a score > 0 (for item-kNN, 0 = no
    neighbour links the item to the history). Returns (indices int64 [<= n], scores float32 [<= n])."""
    s = np.array(scores, dtype=np.float32)
    ex = np.asarray(list(exclude), dtype=np.int64)
    keep = np.ones(len(s), dtype=bool)
    keep[ex] = False
    if positive_only:
        keep &= s > 0
    cand = np.flatnonzero(keep)
    order = cand[np.lexsort((cand, -s[cand]))][:n]
    return order.astype(np.int64), s[order]


CACHE_FILE = "item-knn.npz"
MAX_SELECTION_USERS = 2000
"""Validation users (the first ones) the store's half-life is chosen on; bounds the fit time."""


def fit_for_store(store_dir, data, neighbors: int) -> ItemKNN:
    """Item-kNN over a store's interactions (``data``: a ``StoreSequences``), its half-life chosen on
    each user's last item (users with >= 3 items, at most :data:`MAX_SELECTION_USERS`).

    Cached as ``{store_dir}/item-knn.npz`` with the interactions' fingerprint: refitted when the
    interactions (or ``neighbors``) change. A cache that cannot be written is skipped silently
    (a read-only store still recommends)."""
    from pathlib import Path

    path = Path(store_dir) / CACHE_FILE
    if path.exists():
        try:
            with open(path, "rb") as fh, np.load(fh) as st:
                if (str(st["fingerprint"]) == data.fingerprint and int(st["neighbors"]) == neighbors
                        and int(st["n_items"]) == len(data.item_ids)):
                    return ItemKNN.from_state(st)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            pass  # a damaged cache is refitted
    train, vu, vt = data.holdout()
    knn = ItemKNN(neighbors, half_life=0.0).fit_sequences(train, len(data.item_ids))
    if vt:
        vu, vt = vu[:MAX_SELECTION_USERS], vt[:MAX_SELECTION_USERS]
        knn.select_half_life([train[u] for u in vu], vt)
    knn.fit_sequences(data.seqs, len(data.item_ids))  # the choice made, fit on every interaction
    tmp = path.with_name(f"{CACHE_FILE}.{os.getpid()}.part.npz")  # concurrent writers: one file each
    try:
        np.savez(tmp, fingerprint=np.str_(data.fingerprint), **knn.state())
        tmp.replace(path)
    except OSError:  # e.g. a read-only store, or item-knn.npz is a folder: no cache, no leftover
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return knn
