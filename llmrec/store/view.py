"""A store as a long-lived reader holds it: the items (ids, text vectors, :class:`~llmrec.data.types.Item`),
the users' histories and the items' popularity, loaded from a data directory (or a ``chroma_host``
server) and reloaded when another process's ingest changes the store (:meth:`StoreView.refresh`)."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np

from llmrec.config import Config
from llmrec.data.types import Item, histories, item_from_metadata
from llmrec.errors import ConfigError, UnknownItemError, UnknownUserError
from llmrec.store.snapshot import StampWatch, read_snapshot


class StoreView:
    """The store's items and histories (rows of ``vectors`` follow ``ids``). Subclasses name the
    attributes a reload keeps (``_KEPT_ON_RELOAD``: loaded models) and drops (``_DROPPED_ON_RELOAD``:
    caches of the old data)."""

    _KEPT_ON_RELOAD: tuple[str, ...] = ("_refresh_lock",)
    _DROPPED_ON_RELOAD: tuple[str, ...] = ()

    def __init__(self, cfg: Config, ids: list[str], vectors: np.ndarray, metas: list[dict], interactions):
        self.cfg = cfg
        self.ids = ids
        self.vectors = vectors
        self.index = {iid: r for r, iid in enumerate(ids)}
        self.items = [item_from_metadata(i, m) for i, m in zip(ids, metas, strict=True)]
        self.histories = histories([x for x in interactions if x.item in self.index])
        pop = Counter(x.item for x in interactions if x.item in self.index)
        self.popularity = np.array([pop.get(i, 0) for i in ids], dtype=np.int64)

    @classmethod
    def load(cls, data_dir=None, config: Config | None = None):
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
        if not cfg.chroma.recheck_s >= 0:
            raise ConfigError(f"config key 'chroma_recheck_s' must be >= 0 (0 = check before every request), "
                              f"got {cfg.chroma.recheck_s}")
        return cls._open(cfg)

    @classmethod
    def _open(cls, cfg: Config, reopen: bool = False):
        """Read the store into a new one (:func:`llmrec.store.snapshot.read_snapshot`)."""
        snap = read_snapshot(cfg, reopen)
        rec = cls(cfg, snap.ids, snap.vectors, snap.metas, snap.interactions)
        rec._watch = StampWatch(snap.stamps, snap.stamp, cfg.chroma.recheck_s)
        rec._refresh_lock = threading.Lock()
        return rec

    @property
    def version(self) -> str | None:
        """The store's change stamp this Recommender's data was loaded under (None: not made by :meth:`load`,
        or a store no ingest has stamped)."""
        watch = getattr(self, "_watch", None)
        return watch.stamp if watch is not None else None

    def refresh(self, force: bool = False) -> bool:
        """Reload the items and interactions when the store's change stamp
        (:class:`llmrec.store.ChangeStamp`: the server's with ``chroma_host``, else the embedded
        store's; renewed by every ``llmrec ingest`` that writes, from any process) differs from the
        one this Recommender loaded under. Called before each :meth:`recommend` and
        :meth:`history_of`; checks at most every ``chroma_recheck_s`` seconds (0: every call;
        ``force``: now). The check is one small read (about 3 ms against a local ``chroma run``,
        under 1 ms embedded); a reload costs a full :meth:`load` (the LLM and the trained ranker are
        kept; an embedded store is reopened, since chromadb's per-process client state does not
        follow another process's new vectors). A no-op (False) for one not made by :meth:`load`.

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
        watch = getattr(self, "_watch", None)
        seen = watch.changed(force) if watch is not None else None
        if seen is None:
            return False
        with self._refresh_lock:
            if self._watch.stamp == seen:  # another thread reloaded meanwhile
                return False
            fresh = type(self)._open(self.cfg, reopen=True)
            self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k not in self._KEPT_ON_RELOAD})
            for k in self._DROPPED_ON_RELOAD:
                self.__dict__.pop(k, None)
        return True

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
