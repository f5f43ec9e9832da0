"""The item store: Chroma collections of item vectors, one per vector kind.

One collection per kind, ``items_{kind}``, in one data directory: ``text`` (the text encoder's
vectors; its metadata are the items as the recommender reads them), ``image`` (the image
encoder's, written by ``llmrec ingest`` for items with an image), ``sasrec`` (a trained
retriever's). Open one with ``ItemStore(path, kind)``; :func:`kinds` lists those present.
Ids are the catalog's item ids; metadata are the item's fields. Only our own embeddings are
ever written or queried (Chroma is never asked to embed text: offline it cannot).
An embedded ``PersistentClient`` under the data directory by default; a Chroma server when
``chroma_host`` is configured. On a server the store also holds the interactions (collection
``interactions``, :mod:`llmrec.interactions`). Both kinds hold a change stamp (:class:`ChangeStamp`,
collection ``llmrec_state``) that every ingest that writes renews, so that a long-lived reader (a
replica, ``llmrec serve``) notices another process's writes.

Every Chroma call goes through :class:`StoreClient` / :class:`GuardedCollection`: a server's HTTP
calls time out after ``timeout_s`` (config ``chroma_timeout_s``), and timeouts, broken connections
and Chroma's own failures become :class:`StoreUnavailableError` / :class:`~llmrec.errors.StoreError`
naming the server (or folder), what was being done and what to do.
"""

from __future__ import annotations

import math
import re
import time
import uuid
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from llmrec.data.types import item_key
from llmrec.errors import StoreError

_INT64 = (-(2**63), 2**63 - 1)
_KIND = re.compile(r"[A-Za-z0-9_-]{1,100}")
DEFAULT_TIMEOUT_S = 10.0
"""Seconds one Chroma server call may take when no timeout is given (config ``chroma_timeout_s``'s default)."""


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


class StoreUnavailableError(StoreError):
    """The store did not answer: a Chroma server that is down, unreachable, paused or slower than
    ``chroma_timeout_s``, or whose connection broke during a call. Nothing already stored is lost;
    the same call may succeed once the server is back.

    Attributes:
        where: ``the Chroma server at HOST:PORT`` (or ``the Chroma store at FOLDER``).
        action: what was being done, e.g. ``writing collection 'items_text'``.
        reason: what went wrong, e.g. ``no answer within 2 s (chroma_timeout_s)``.
    """

    def __init__(self, where: str, action: str, reason: str, advice: str):
        self.where, self.action, self.reason = where, action, reason
        super().__init__(f"{where} failed while {action}: {reason}; {advice}")


@contextmanager
def chroma_call(where: str, action: str, timeout_s: float | None = None):
    """Run Chroma client calls in this block; their failures leave it as typed errors.

    Args:
        where: ``the Chroma server at HOST:PORT`` or ``the Chroma store at FOLDER``, for messages.
        action: what the block does, for messages (``reading the change stamp``).
        timeout_s: the HTTP timeout in force (seconds), for messages.
    Raises:
        StoreUnavailableError: an HTTP timeout (``httpx.TimeoutException``) or a transport failure
            (``httpx.TransportError``: refused or reset connection, the server dying mid-response).
        StoreError: any other failure of the client (Chroma's own errors, a server's 5xx, a damaged
            embedded store); a :class:`StoreError` raised inside passes unchanged.
    """
    import httpx

    try:
        yield
    except StoreError:
        raise
    except httpx.TimeoutException as e:
        limit = f"{timeout_s:g} s" if timeout_s is not None else "the client's timeout"
        raise StoreUnavailableError(
            where, action, f"no answer within {limit} (chroma_timeout_s; {type(e).__name__})",
            "check that the server is running and not paused or overloaded, then retry "
            "(or raise chroma_timeout_s for a slow server)") from e
    except httpx.TransportError as e:
        raise StoreUnavailableError(where, action, f"{type(e).__name__}: {str(e).rstrip('.') or 'connection lost'}",
                                    "check that the server is running and reachable, then retry") from e
    except Exception as e:  # chromadb's errors (ChromaError, ValueError, httpx.HTTPStatusError, ...)
        raise StoreError(f"{where} failed while {action}: {type(e).__name__}: {e}") from e


class GuardedCollection:
    """A ``chromadb`` collection whose calls raise :class:`StoreUnavailableError` / :class:`StoreError`
    (see :func:`chroma_call`) instead of ``httpx`` or ``chromadb`` exceptions. The methods llmrec uses:
    ``get``, ``upsert``, ``update``, ``delete``, ``count``, ``modify`` (the same arguments as chromadb's),
    and ``name``, ``metadata``."""

    def __init__(self, collection, client: StoreClient):
        self.raw, self.client = collection, client
        self.name = collection.name

    @property
    def metadata(self) -> dict | None:
        return self.raw.metadata

    def _call(self, verb: str, method: str, **kw):
        with self.client.call(f"{verb} collection {self.name!r}"):
            return getattr(self.raw, method)(**kw)

    def get(self, **kw) -> dict:
        return self._call("reading", "get", **kw)

    def count(self) -> int:
        return self._call("counting", "count")

    def upsert(self, **kw) -> None:
        self._call("writing", "upsert", **kw)

    def update(self, **kw) -> None:
        self._call("writing", "update", **kw)

    def delete(self, **kw) -> None:
        self._call("deleting from", "delete", **kw)

    def modify(self, **kw) -> None:
        self._call("writing", "modify", **kw)


class StoreClient:
    """A ``chromadb`` client (``raw``) whose calls raise typed errors (:func:`chroma_call`).

    Attributes:
        raw: the ``chromadb`` client. where: ``the Chroma server at HOST:PORT`` or
            ``the Chroma store at FOLDER``. timeout_s: a server's HTTP timeout (None: embedded).
    """

    def __init__(self, raw, where: str, timeout_s: float | None = None):
        self.raw, self.where, self.timeout_s = raw, where, timeout_s

    def call(self, action: str):
        """:func:`chroma_call` for this client: ``with client.call("reading ..."): ...``."""
        return chroma_call(self.where, action, self.timeout_s)

    def get_or_create_collection(self, name: str, **kw) -> GuardedCollection:
        with self.call(f"opening collection {name!r}"):
            return GuardedCollection(self.raw.get_or_create_collection(name, **kw), self)

    def get_collection(self, name: str) -> GuardedCollection | None:
        """The collection ``name``, None when the store has none of that name."""
        from chromadb.errors import NotFoundError

        with self.call(f"opening collection {name!r}"):
            try:
                return GuardedCollection(self.raw.get_collection(name), self)
            except NotFoundError:
                return None

    def list_collections(self) -> list[str]:
        """The names of the store's collections."""
        with self.call("listing the collections"):
            return [c if isinstance(c, str) else c.name for c in self.raw.list_collections()]

    def get_max_batch_size(self) -> int:
        with self.call("asking the batch size"):
            return int(self.raw.get_max_batch_size())


def as_store_client(client) -> StoreClient:
    """``client`` as a :class:`StoreClient` (a bare ``chromadb`` client is wrapped; messages call it
    ``the Chroma store``)."""
    return client if isinstance(client, StoreClient) else StoreClient(client, "the Chroma store")


def _heartbeat(host: str, port: int, timeout_s: float) -> None:
    """One ``GET /api/v2/heartbeat`` under ``timeout_s``: ``chromadb.HttpClient`` makes its first calls
    before its timeout can be set, so an unreachable or paused server is found here instead.

    Raises:
        StoreUnavailableError: no answer in time, or no server there."""
    import httpx

    with chroma_call(f"the Chroma server at {host}:{port}", "connecting", timeout_s):
        r = httpx.get(f"http://{host}:{port}/api/v2/heartbeat", timeout=timeout_s)
        if r.status_code >= 500:
            raise httpx.RemoteProtocolError(f"heartbeat answered HTTP {r.status_code}")


def _set_timeout(raw, timeout_s: float) -> None:
    """Put ``timeout_s`` on an ``HttpClient``'s ``httpx`` session (chromadb 1.x builds it with none and
    has no setting for it). Warns when this chromadb keeps its session elsewhere."""
    import httpx

    session = getattr(getattr(raw, "_server", None), "_session", None)
    if not isinstance(session, httpx.Client):
        warnings.warn("this chromadb's HttpClient has no httpx session where llmrec looks for it: Chroma calls "
                      "run without chroma_timeout_s", RuntimeWarning, stacklevel=3)
        return
    session.timeout = httpx.Timeout(timeout_s)


def _forget_embedded(path: Path) -> None:
    """Make the next ``PersistentClient`` on ``path`` a new one. chromadb keeps one client state per
    folder per process, whose vector cache does not follow other processes' writes (reading their
    new items' vectors fails with ``Error finding id``); clients already open keep the old state."""
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(path), None)


def open_client(path: Path | None, host: str | None, port: int = 8000, timeout_s: float = DEFAULT_TIMEOUT_S,
                reopen: bool = False) -> StoreClient:
    """A :class:`StoreClient`: over ``chromadb.HttpClient(host, port)`` when ``host`` is set, every HTTP
    call under ``timeout_s`` seconds (connect and read; config ``chroma_timeout_s``); else over an
    embedded ``PersistentClient`` under ``path`` (created if missing). Telemetry off.

    Args:
        reopen: embedded only: a new client state rather than the one this process already keeps for
            ``path`` (see :func:`_forget_embedded`): what a reader does after another process wrote.
    Raises:
        StoreUnavailableError: the server does not answer within ``timeout_s`` or is not there (host
            and port named).
        StoreError: the server refuses the client, or the folder cannot be created or opened
            (named), or neither ``host`` nor ``path`` is given.
    """
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if host:
        where = f"the Chroma server at {host}:{port}"
        _heartbeat(host, port, timeout_s)
        with chroma_call(where, "connecting", timeout_s):
            raw = chromadb.HttpClient(host=host, port=port, settings=settings)
        _set_timeout(raw, timeout_s)
        return StoreClient(raw, where, timeout_s)
    if path is None:
        raise StoreError("an embedded store needs a data directory")
    ensure_dir(path)
    if reopen:
        _forget_embedded(path)
    try:
        raw = chromadb.PersistentClient(path=str(path), settings=settings)
    except Exception as e:
        raise StoreError(f"cannot open the Chroma store at {path}: {e}") from e
    return StoreClient(raw, f"the Chroma store at {path}")


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


STATE_COLLECTION = "llmrec_state"
_STAMP_ID = "stamp"


class ChangeStamp:
    """The store's change stamp: one record in the collection ``llmrec_state`` whose metadata
    ``stamp`` (a random 32-hex token) every ingest that writes renews (:meth:`bump`), and whose
    ``at`` is the time of that write (seconds since the epoch). A reader that remembers the stamp
    it loaded under knows the store changed when :meth:`read` differs: one small ``get`` (about
    3 ms against a local ``chroma run``, under 1 ms embedded; see README). A random token, not a
    counter: two writers on different machines never need to agree on the next value.

    The same on a server and in an embedded store: an embedded reader's long-lived client does see
    another process's stamp (it is read from the store's sqlite file), though not that process's new
    vectors (see :func:`open_client`'s ``reopen``). Reading never creates the collection (a store
    ingested before stamps existed, or a read-only one, reads None until an ingest bumps).

    Args:
        client: a :class:`StoreClient` (:func:`open_client`) or a bare ``chromadb`` client.
    """

    def __init__(self, client):
        self.client = as_store_client(client)
        self.collection: GuardedCollection | None = None

    def read(self) -> str | None:
        """The current stamp (None: no ingest has written since the stamp was introduced).

        Raises:
            StoreUnavailableError: the server does not answer within its timeout, or is gone.
            StoreError: the store fails otherwise."""
        if self.collection is None:
            self.collection = self.client.get_collection(STATE_COLLECTION)
            if self.collection is None:
                return None
        with self.client.call("reading the change stamp"):
            got = self.collection.raw.get(ids=[_STAMP_ID], include=["metadatas"])
        metas = got.get("metadatas") or []
        return str((metas[0] or {}).get("stamp")) if metas else None

    def bump(self) -> str:
        """Renew the stamp; returns the new one.

        Raises:
            StoreUnavailableError, StoreError: as :meth:`read`."""
        if self.collection is None:
            self.collection = self.client.get_or_create_collection(STATE_COLLECTION, embedding_function=None)
        stamp = uuid.uuid4().hex
        with self.client.call("renewing the change stamp"):
            self.collection.raw.upsert(ids=[_STAMP_ID], embeddings=[[1.0]],
                                       metadatas=[{"stamp": stamp, "at": time.time()}])
        return stamp
