"""Stateless conversations: the session state is rebuilt from the request's user messages.

The server keeps no conversation. A request's user messages ``u1 .. un`` are replayed through a
fresh :class:`~llmrec.agent.session.ChatSession` (``send(u1)``, ..., ``send(un)``) and the last
reply is the answer. The session is deterministic, so the replay reproduces the lists shown
before: "why the second one?" and "show more" refer to what the client was shown, whatever the
client put in the assistant messages (they are not read).

An optimisation only: after each replayed turn a snapshot of the session (a deep copy of its
state, sharing the recommender and the title index) is kept in an LRU cache under a hash of the
user messages so far; a request resumes from the longest cached prefix of its own user messages,
so a conversation that grows one turn at a time replays one turn per request. The answer never
depends on the cache: a snapshot is the state the same replay reaches.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict

from llmrec.agent.session import ChatSession, Reply
from llmrec.recommender import Recommender


def prefix_keys(turns: list[str]) -> list[bytes]:
    """``keys[i]``: the SHA-256 of ``turns[: i + 1]`` (length-prefixed UTF-8, chained)."""
    keys, h = [], hashlib.sha256(b"llmrec-chat-replay-v1").digest()
    for t in turns:
        data = t.encode("utf-8", "surrogatepass")
        h = hashlib.sha256(h + len(data).to_bytes(8, "big") + data).digest()
        keys.append(h)
    return keys


class Replayer:
    """Answers a conversation's last user message by replaying them all.

    Args:
        recommender: shared by every session (used from one thread at a time per session; the
            server's worker pool decides how many at once).
        cache_size: session snapshots kept (0: no cache, every request replays from the start).
        page_size: recommendations per reply (``ChatSession``'s; default the config's ``k``).
    """

    def __init__(self, recommender: Recommender, cache_size: int, page_size: int | None = None):
        self.rec, self.page_size = recommender, page_size
        self.cache_size = cache_size
        self._cache: OrderedDict[bytes, ChatSession] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        self._new_template()

    def _new_template(self) -> None:
        t = ChatSession(self.rec, page_size=self.page_size)
        # Never copied: read-only after construction and large (the store, the title index).
        self._shared = {id(v): v for v in (t.rec, t.index, t.by_genre, t.genres)}
        self._template, self._version = t, getattr(self.rec, "_stamp", None)

    def _sync(self) -> None:
        """With a Chroma server the recommender reloads when another process ingested
        (``Recommender.refresh``): then the title index is rebuilt and the snapshots, made over the
        old data, are dropped, so that a cached prefix never answers otherwise than a cold replay."""
        refresh = getattr(self.rec, "refresh", None)
        if refresh is not None:
            refresh()
        if getattr(self.rec, "_stamp", None) != self._version:
            with self._lock:
                if getattr(self.rec, "_stamp", None) != self._version:
                    self._cache.clear()
                    self._new_template()

    def _copy(self, session: ChatSession) -> ChatSession:
        return copy.deepcopy(session, dict(self._shared))

    def _get(self, key: bytes) -> ChatSession | None:
        with self._lock:
            snap = self._cache.get(key)
            if snap is not None:
                self._cache.move_to_end(key)
            return snap

    def _put(self, key: bytes, session: ChatSession) -> None:
        if self.cache_size <= 0:
            return
        snap = self._copy(session)
        with self._lock:
            self._cache[key] = snap
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def clear(self) -> None:
        """Drop every snapshot (the answers stay the same, only slower)."""
        with self._lock:
            self._cache.clear()

    def answer(self, turns: list[str]) -> tuple[Reply, int]:
        """The reply to ``turns[-1]`` after ``turns[:-1]``, and how many turns were replayed (1 when
        the previous state was cached, ``len(turns)`` from a cold cache).

        Raises what :meth:`ChatSession.send` raises (RequestError for a blank or too long message,
        ModelError, ...), StoreError when a Chroma server cannot be reached."""
        if not turns:
            raise ValueError("no user message to answer")
        self._sync()
        template, keys = self._template, prefix_keys(turns)
        session, start = None, 0
        for k in range(len(turns) - 1, 0, -1):
            snap = self._get(keys[k - 1])
            if snap is not None:
                session, start = self._copy(snap), k
                break
        if len(turns) > 1:
            with self._lock:
                self.hits, self.misses = (self.hits + 1, self.misses) if start else (self.hits, self.misses + 1)
        session = session or self._copy(template)
        reply = None
        for i in range(start, len(turns)):
            reply = session.send(turns[i])
            self._put(keys[i], session)
        return reply, len(turns) - start
