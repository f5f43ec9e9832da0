"""The Chroma client of a store: an embedded ``PersistentClient`` under the data directory, or a server
(``chroma_host``), every call guarded (:class:`StoreClient`, :class:`GuardedCollection`, :func:`chroma_call`).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

from llmrec.errors import StoreError

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
