"""What a reader loads from a store in one go (items, vectors, interactions) and the change stamp it
loaded under; :class:`StampWatch` tells a long-lived reader (``llmrec serve``, a replica) when another
process's ingest changed the store, checking at most every ``chroma_recheck_s`` seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from llmrec.errors import StoreError
from llmrec.store.interactions import open_interactions
from llmrec.store.items import ItemStore
from llmrec.store.stamp import ChangeStamp


@dataclass
class StoreSnapshot:
    """The text collection's ``ids`` [N], ``vectors`` float32 [N, d] and ``metas`` [N] (the items), the
    store's ``interactions``, and the change ``stamp`` read before them (a write while loading shows at
    the next check) with its source ``stamps``."""

    ids: list[str]
    vectors: np.ndarray
    metas: list[dict]
    interactions: list
    stamps: ChangeStamp
    stamp: str | None


def read_snapshot(cfg, reopen: bool = False) -> StoreSnapshot:
    """Read the store of ``cfg`` (``cfg.store_dir()``, or the ``chroma_host`` server). ``reopen``: an
    embedded store through a new client state (after another process wrote: see
    :func:`llmrec.store.client.open_client`).

    Raises:
        StoreError: no store at the data directory (it is not created), no ingested items, the server
            cannot be reached, or the stored interactions are corrupt."""
    path = cfg.store_dir()
    if cfg.chroma.host is None and not (path / "chroma.sqlite3").is_file():
        raise StoreError(f"no store at {path}: run `llmrec ingest` first")
    store = ItemStore(path, "text", cfg.chroma.host, cfg.chroma.port, cfg.chroma.timeout_s, reopen=reopen)
    stamps = ChangeStamp(store.client)
    stamp = stamps.read()
    ids, vecs, metas = store.matrix()
    if not ids:
        where = f"{cfg.chroma.host}:{cfg.chroma.port}" if cfg.chroma.host else str(path)
        raise StoreError(f"the store at {where} holds no items: run `llmrec ingest` first")
    return StoreSnapshot(ids, vecs, metas, open_interactions(cfg, path, store.client).read(), stamps, stamp)


class StampWatch:
    """Whether the store changed since ``stamp`` was read: :meth:`changed` reads the stamp again at most
    every ``recheck_s`` seconds (0: every call)."""

    def __init__(self, stamps: ChangeStamp, stamp: str | None, recheck_s: float):
        self.stamps, self.stamp, self.recheck_s = stamps, stamp, recheck_s
        self.checked_at = time.monotonic()

    def changed(self, force: bool = False) -> str | None:
        """The new stamp when it differs from :attr:`stamp`, else None (also when the last check was
        under ``recheck_s`` ago and not ``force``). Raises StoreUnavailableError as ``ChangeStamp.read``."""
        now = time.monotonic()
        if not force and self.recheck_s > 0 and now - self.checked_at < self.recheck_s:
            return None
        self.checked_at = now
        seen = self.stamps.read()
        return None if seen == self.stamp else seen
