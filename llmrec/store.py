"""The item store: Chroma collections of item vectors, one per vector kind.

Ids are the catalog's item ids; metadata are the item's fields. Only our own embeddings are
ever written or queried (Chroma is never asked to embed text: offline it cannot).
An embedded ``PersistentClient`` under the data directory by default; a Chroma server when
``chroma_host`` is configured.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from llmrec.errors import StoreError


def _client(path: Path | None, host: str | None, port: int):
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if host:
        return chromadb.HttpClient(host=host, port=port, settings=settings)
    if path is None:
        raise StoreError("an embedded store needs a data directory")
    Path(path).mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def _clean_metadata(meta: dict) -> dict:
    out = {}
    for k, v in meta.items():
        if v is None:
            continue
        if not isinstance(v, (str, int, float, bool)):
            raise StoreError(f"metadata field {k!r} must be a string, number or boolean, got {type(v).__name__}")
        out[k] = v
    return out


class ItemStore:
    """One Chroma collection of item vectors (cosine space).

    Args:
        path: folder of the embedded store (ignored with ``host``).
        kind: the vector kind, e.g. ``text``; the collection is named ``items_{kind}``.
        host, port: a Chroma server instead of the embedded store.
    """

    def __init__(self, path: str | Path | None, kind: str = "text", host: str | None = None, port: int = 8000):
        self.client = _client(Path(path) if path else None, host, port)
        self.name = f"items_{kind}"
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
        """Insert or update items by id; returns how many were written.

        Args:
            ids: N distinct item ids (strings). vectors: float [N, d]. metadatas: N dicts of scalars.
        Raises:
            StoreError: duplicate ids in the input (named), length or dimension mismatch with the
                collection (both dimensions named), non-finite vectors, bad metadata. Nothing is
                written when the input is rejected.
        """
        ids = [str(i) for i in ids]
        vecs = np.asarray(vectors, dtype=np.float32)
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
        metas = [_clean_metadata(m) for m in (metadatas or [{} for _ in ids])]
        if len(metas) != len(ids):
            raise StoreError(f"{len(metas)} metadata entries for {len(ids)} ids")
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

    # ------------------------------------------------------------------ reads
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
        order = sorted(range(len(ids)), key=lambda r: (0, int(ids[r]), "") if ids[r].isdigit() else (1, 0, ids[r]))
        mat = np.concatenate(vecs)[order]
        return [ids[r] for r in order], mat, [metas[r] for r in order]
