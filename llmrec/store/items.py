"""Item collections: one Chroma collection of item vectors per kind (``items_{kind}``), their ids and metadata.

Opened through :func:`llmrec.store.client.open_client`; every call is guarded as described there.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from llmrec.data.types import item_key
from llmrec.errors import StoreError
from llmrec.store.client import (
    DEFAULT_TIMEOUT_S,
    open_client,
)

_INT64 = (-(2**63), 2**63 - 1)
_KIND = re.compile(r"[A-Za-z0-9_-]{1,100}")


def _check_id(i) -> str:
    if isinstance(i, bool) or not isinstance(i, (str, int, np.integer)) or not str(i):
        raise StoreError(f"item id must be a non-empty string or an integer, got {i!r}")
    return str(i)


def _clean_metadata(meta, item_id: str) -> dict:
    """Metadata as Chroma keeps it unchanged: str keys (not empty, not starting with ``#`` or ``$``,
    not ``chroma:document``), values str, bool, finite float or int64; None values dropped."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise StoreError(f"metadata of item {item_id!r} must be a dict, got {type(meta).__name__}")
    out = {}
    for k, v in meta.items():
        if not isinstance(k, str) or not k or k[0] in "#$" or k == "chroma:document":
            raise StoreError(f"metadata key {k!r} of item {item_id!r} is not allowed "
                             "(keys are non-empty strings not starting with # or $, not chroma:document)")
        if v is None:
            continue
        if not isinstance(v, (str, int, float, bool)):
            raise StoreError(f"metadata field {k!r} must be a string, number or boolean, got {type(v).__name__}")
        if isinstance(v, float) and not math.isfinite(v):
            raise StoreError(f"metadata field {k!r} of item {item_id!r} must be a finite number, got {v}")
        if isinstance(v, int) and not isinstance(v, bool) and not _INT64[0] <= v <= _INT64[1]:
            raise StoreError(f"metadata field {k!r} of item {item_id!r} is an integer outside the int64 range")
        out[k] = v
    return out


def collection_name(kind: str) -> str:
    """The Chroma collection of a vector kind: ``items_{kind}``.

    Raises:
        StoreError: ``kind`` is not 1-100 letters, digits, ``_`` or ``-``.
    """
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise StoreError(f"vector kind must be 1-100 letters, digits, '_' or '-', got {kind!r}")
    return f"items_{kind}"




def kinds(path: str | Path | None, host: str | None = None, port: int = 8000,
          timeout_s: float = DEFAULT_TIMEOUT_S) -> list[str]:
    """The vector kinds that have a collection in the store (sorted), e.g. ``["image", "text"]``.

    Raises:
        StoreError: as :func:`open_client`."""
    client = open_client(Path(path) if path else None, host, port, timeout_s)
    return sorted(n[len("items_"):] for n in client.list_collections() if n.startswith("items_"))


class ItemStore:
    """One Chroma collection of item vectors (cosine space).

    Args:
        path: folder of the embedded store (ignored with ``host``).
        kind: the vector kind, e.g. ``text``; the collection is named ``items_{kind}``.
        host, port: a Chroma server instead of the embedded store.
        timeout_s: seconds one server call may take (config ``chroma_timeout_s``).
        reopen: see :func:`open_client`.
    Raises:
        StoreError: as :func:`open_client`; every method raises :class:`StoreUnavailableError` when
            the server times out or its connection fails, :class:`StoreError` for other failures.
    """

    def __init__(self, path: str | Path | None, kind: str = "text", host: str | None = None, port: int = 8000,
                 timeout_s: float = DEFAULT_TIMEOUT_S, reopen: bool = False):
        self.client = open_client(Path(path) if path else None, host, port, timeout_s, reopen)
        self.kind = kind
        self.name = collection_name(kind)
        self.collection = self.client.get_or_create_collection(
            self.name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )

    # ------------------------------------------------------------------ writes
    def dim(self) -> int | None:
        """Vector dimension of the stored items (None while empty)."""
        d = (self.collection.metadata or {}).get("dim")
        if d is not None:
            return int(d)
        got = self.collection.get(limit=1, include=["embeddings"])
        emb = got.get("embeddings")
        return None if emb is None or len(emb) == 0 else len(emb[0])

    def upsert(self, ids: list[str], vectors, metadatas: list[dict] | None = None, progress=None) -> int:
        """Insert or update items by id; returns how many were written. An existing item's vector
        is replaced; its metadata are merged (the keys given replace theirs, other stored keys stay:
        :meth:`update_metadata` with ``None`` values removes keys).

        Args:
            ids: N distinct item ids (non-empty strings or integers). vectors: float [N, d].
            metadatas: N dicts of scalars (see :func:`_clean_metadata`).
        Raises:
            StoreError: empty, None or boolean ids, duplicate ids in the input (named), length or
                dimension mismatch with the collection (both dimensions named), non-numeric or
                non-finite vectors, bad metadata (item and key named). Nothing is written when the
                input is rejected.
        """
        ids = [_check_id(i) for i in ids]
        try:
            vecs = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise StoreError(f"vectors must be numbers: {e}") from None
        if vecs.ndim != 2 or vecs.shape[0] != len(ids):
            raise StoreError(f"vectors must be [{len(ids)}, d] for {len(ids)} ids, got shape {vecs.shape}")
        dups = [i for i, c in Counter(ids).items() if c > 1]
        if dups:
            raise StoreError(f"duplicate item id(s) in one input: {', '.join(dups[:10])}")
        if not np.isfinite(vecs).all():
            bad = [ids[r] for r in np.where(~np.isfinite(vecs).all(1))[0][:10]]
            raise StoreError(f"non-finite vector values for item(s): {', '.join(bad)}")
        have = self.dim()
        if have is not None and have != vecs.shape[1]:
            raise StoreError(
                f"vector dimension {vecs.shape[1]} does not match collection {self.name!r} dimension {have}"
            )
        metadatas = [{} for _ in ids] if metadatas is None else list(metadatas)
        if len(metadatas) != len(ids):
            raise StoreError(f"{len(metadatas)} metadata entries for {len(ids)} ids")
        metas = [_clean_metadata(m, i) for m, i in zip(metadatas, ids, strict=True)]
        if have is None and len(ids):
            self.collection.modify(metadata={"dim": int(vecs.shape[1])})
        step = max(1, int(self.client.get_max_batch_size()))
        for s in range(0, len(ids), step):
            self.collection.upsert(
                ids=ids[s:s + step], embeddings=vecs[s:s + step],
                metadatas=[m or None for m in metas[s:s + step]],
            )
            if progress:
                progress(min(step, len(ids) - s))
        return len(ids)

    def update_metadata(self, ids: list[str], metadatas: list[dict]) -> int:
        """Merge ``metadatas`` into the stored metadata of items already in the collection (a
        ``None`` value removes that key); vectors unchanged. Returns how many were updated.

        Raises:
            StoreError: an id is not in the collection (named), duplicate ids, bad metadata, or
                lengths differ. Nothing is written when the input is rejected.
        """
        ids = [_check_id(i) for i in ids]
        if len(metadatas) != len(ids):
            raise StoreError(f"{len(metadatas)} metadata entries for {len(ids)} ids")
        dups = [i for i, c in Counter(ids).items() if c > 1]
        if dups:
            raise StoreError(f"duplicate item id(s) in one input: {', '.join(dups[:10])}")
        stored = self.metadata(ids)
        missing = [i for i in ids if i not in stored]
        if missing:
            raise StoreError(f"item(s) not in collection {self.name!r}: {', '.join(missing[:10])}")
        metas = []
        for m, i in zip(metadatas, ids, strict=True):
            if not isinstance(m, dict):
                raise StoreError(f"metadata of item {i!r} must be a dict, got {type(m).__name__}")
            clean = _clean_metadata(m, i)
            metas.append({**clean, **{k: None for k, v in m.items() if v is None}})
        step = max(1, int(self.client.get_max_batch_size()))
        for s in range(0, len(ids), step):
            self.collection.update(ids=ids[s:s + step], metadatas=metas[s:s + step])
        return len(ids)

    def delete(self, ids: list[str]) -> int:
        """Remove these items (ids not in the collection are ignored); returns how many were removed."""
        ids = [_check_id(i) for i in ids]
        have = list(self.metadata(ids))
        step = max(1, int(self.client.get_max_batch_size()))
        for s in range(0, len(have), step):
            self.collection.delete(ids=have[s:s + step])
        return len(have)

    # ------------------------------------------------------------------ reads
    def get(self, ids: list[str]) -> tuple[list[str], np.ndarray, list[dict]]:
        """The stored items among ``ids``: (ids found, in the order asked; float32 [n, d]; metadatas)."""
        ids = [str(i) for i in ids]
        found: dict[str, tuple] = {}
        step = max(1, int(self.client.get_max_batch_size()))
        for s in range(0, len(ids), step):
            got = self.collection.get(ids=ids[s:s + step], include=["embeddings", "metadatas"])
            for i, e, m in zip(got["ids"], got["embeddings"], got["metadatas"], strict=True):
                found[i] = (np.asarray(e, dtype=np.float32), m or {})
        order = [i for i in dict.fromkeys(ids) if i in found]
        if not order:
            return [], np.zeros((0, self.dim() or 0), np.float32), []
        return order, np.stack([found[i][0] for i in order]), [found[i][1] for i in order]

    def count(self) -> int:
        return self.collection.count()

    def metadata(self, ids: list[str]) -> dict[str, dict]:
        """Stored metadata of those ``ids`` that are in the store."""
        out: dict[str, dict] = {}
        step = max(1, int(self.client.get_max_batch_size()))
        for s in range(0, len(ids), step):
            got = self.collection.get(ids=[str(i) for i in ids[s:s + step]], include=["metadatas"])
            out.update({i: m or {} for i, m in zip(got["ids"], got["metadatas"], strict=True)})
        return out

    def ids(self) -> list[str]:
        """All item ids, in the order of :meth:`matrix`."""
        n, ids = self.count(), []
        step = max(1, int(self.client.get_max_batch_size()))
        for off in range(0, n, step):
            ids += self.collection.get(limit=step, offset=off, include=[])["ids"]
        return sorted(ids, key=item_key)

    def matrix(self) -> tuple[list[str], np.ndarray, list[dict]]:
        """All items: (ids [N], float32 [N, d], metadatas [N]), in a stable id order."""
        n = self.count()
        ids, vecs, metas = [], [], []
        step = max(1, int(self.client.get_max_batch_size()))
        for off in range(0, n, step):
            got = self.collection.get(limit=step, offset=off, include=["embeddings", "metadatas"])
            ids += got["ids"]
            vecs.append(np.asarray(got["embeddings"], dtype=np.float32))
            metas += [m or {} for m in got["metadatas"]]
        if not ids:
            return [], np.zeros((0, self.dim() or 0), np.float32), []
        order = sorted(range(len(ids)), key=lambda r: item_key(ids[r]))
        mat = np.concatenate(vecs)[order]
        return [ids[r] for r in order], mat, [metas[r] for r in order]
