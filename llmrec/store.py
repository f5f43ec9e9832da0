"""The item store: Chroma collections of item vectors, one per vector kind.

One collection per kind, ``items_{kind}``, in one data directory: ``text`` (the text encoder's
vectors; its metadata are the items as the recommender reads them), ``image`` (the image
encoder's, written by ``llmrec ingest`` for items with an image), ``sasrec`` (a trained
retriever's). Open one with ``ItemStore(path, kind)``; :func:`kinds` lists those present.
Ids are the catalog's item ids; metadata are the item's fields. Only our own embeddings are
ever written or queried (Chroma is never asked to embed text: offline it cannot).
An embedded ``PersistentClient`` under the data directory by default; a Chroma server when
``chroma_host`` is configured. On a server the store also holds the interactions (collection
``interactions``, :mod:`llmrec.interactions`) and a change stamp (:class:`ChangeStamp`, collection
``llmrec_state``) that every ingest renews, so replicas notice each other's writes.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from llmrec.data.types import item_key
from llmrec.errors import StoreError

_INT64 = (-(2**63), 2**63 - 1)
_KIND = re.compile(r"[A-Za-z0-9_-]{1,100}")


def ensure_dir(path: Path) -> Path:
    """Create the data directory ``path`` (and its parents) if missing.

    Raises:
        StoreError: ``path``, or a folder above it, is a file, or it cannot be created.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StoreError(f"data directory {path} is not a directory (it, or a folder above it, is a file)") from None
    except OSError as e:
        raise StoreError(f"cannot create data directory {path}: {e}") from e
    return path


def open_client(path: Path | None, host: str | None, port: int = 8000):
    """A ``chromadb`` client: ``HttpClient(host, port)`` when ``host`` is set, else an embedded
    ``PersistentClient`` under ``path`` (created if missing); telemetry off.

    Raises:
        StoreError: the server cannot be reached (host and port named), or the folder cannot be
            created or opened (named), or neither ``host`` nor ``path`` is given.
    """
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if host:
        try:
            return chromadb.HttpClient(host=host, port=port, settings=settings)
        except Exception as e:  # chromadb raises ValueError, httpx errors, ...
            raise StoreError(f"cannot reach the Chroma server at {host}:{port}: {e}") from e
    if path is None:
        raise StoreError("an embedded store needs a data directory")
    ensure_dir(path)
    try:
        return chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as e:
        raise StoreError(f"cannot open the Chroma store at {path}: {e}") from e


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


_client = open_client  # the former private name


def kinds(path: str | Path | None, host: str | None = None, port: int = 8000) -> list[str]:
    """The vector kinds that have a collection in the store (sorted), e.g. ``["image", "text"]``."""
    client = open_client(Path(path) if path else None, host, port)
    names = [c if isinstance(c, str) else c.name for c in client.list_collections()]
    return sorted(n[len("items_"):] for n in names if n.startswith("items_"))


class ItemStore:
    """One Chroma collection of item vectors (cosine space).

    Args:
        path: folder of the embedded store (ignored with ``host``).
        kind: the vector kind, e.g. ``text``; the collection is named ``items_{kind}``.
        host, port: a Chroma server instead of the embedded store.
    """

    def __init__(self, path: str | Path | None, kind: str = "text", host: str | None = None, port: int = 8000):
        self.client = open_client(Path(path) if path else None, host, port)
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


STATE_COLLECTION = "llmrec_state"
_STAMP_ID = "stamp"


class ChangeStamp:
    """The store's change stamp: one record in the collection ``llmrec_state`` whose metadata
    ``stamp`` (a random 32-hex token) every ingest that writes renews (:meth:`bump`), and whose
    ``at`` is the time of that write (seconds since the epoch). A reader that remembers the stamp
    it loaded under knows the store changed when :meth:`read` differs: one small ``get``
    (about 3 ms against a local ``chroma run``, see README). A random token, not a counter: two
    writers on different machines never need to agree on the next value.

    Args:
        client: a ``chromadb`` client (:func:`open_client`).
    Raises:
        StoreError: the collection cannot be opened (the server is unreachable).
    """

    def __init__(self, client):
        try:
            self.collection = client.get_or_create_collection(STATE_COLLECTION, embedding_function=None)
        except Exception as e:
            raise StoreError(f"cannot open the store's state collection {STATE_COLLECTION!r}: {e}") from e

    def read(self) -> str | None:
        """The current stamp (None: no ingest has written since the stamp was introduced).

        Raises:
            StoreError: the server cannot be reached."""
        try:
            got = self.collection.get(ids=[_STAMP_ID], include=["metadatas"])
        except Exception as e:
            raise StoreError(f"cannot read the store's change stamp: {e}") from e
        metas = got.get("metadatas") or []
        return str((metas[0] or {}).get("stamp")) if metas else None

    def bump(self) -> str:
        """Renew the stamp; returns the new one."""
        stamp = uuid.uuid4().hex
        self.collection.upsert(ids=[_STAMP_ID], embeddings=[[1.0]], metadatas=[{"stamp": stamp, "at": time.time()}])
        return stamp
