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

Bounded work: the replay is given the request's deadline and checks it before each turn; past it,
it stops (:class:`DeadlineExceeded`) instead of ranking on for a client that already got its
timeout, so a request holds the worker for at most one turn past its deadline. The turns replayed
before the stop are cached like any others, so a retry resumes after them.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
from collections import OrderedDict

from llmrec.agent.session import ChatSession, Reply
from llmrec.errors import LLMRecError
from llmrec.recommender import Recommender


class DeadlineExceeded(LLMRecError):
    """The request's deadline passed before its replay was done.

    Attributes:
        done: turns replayed (and cached) before the stop.
        left: turns not replayed.
    """

    def __init__(self, done: int, left: int):
        super().__init__(f"the deadline passed after {done} replayed turn(s), {left} left")
        self.done, self.left = done, left

    @property
    def units_done(self) -> int:
        """The turns done, for the limiter's per-turn average (``Limiter``)."""
        return self.done


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
        self._template, self._version = t, self.rec.version

    def _sync(self) -> None:
        """With a Chroma server the recommender reloads when another process ingested
        (``Recommender.refresh``): then the title index is rebuilt and the snapshots, made over the
        old data, are dropped, so that a cached prefix never answers otherwise than a cold replay."""
        refresh = getattr(self.rec, "refresh", None)
        if refresh is not None:
            refresh()
        if self.rec.version != self._version:
            with self._lock:
                if self.rec.version != self._version:
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

    def _cached(self, keys: list[bytes]) -> tuple[ChatSession | None, int]:
        """The snapshot after the longest cached proper prefix of the turns and its length (None, 0)."""
        for k in range(len(keys) - 1, 0, -1):
            snap = self._get(keys[k - 1])
            if snap is not None:
                return snap, k
        return None, 0

    def pending(self, turns: list[str]) -> int:
        """Turns :meth:`answer` would replay for ``turns`` with the cache as it is now, 1..len(turns)
        (an estimate of the request's work: the cache may change before the replay runs)."""
        if not turns:
            raise ValueError("no user message to answer")
        return len(turns) - self._cached(prefix_keys(turns))[1]

    def answer(self, turns: list[str], deadline: float | None = None) -> tuple[Reply, int]:
        """The reply to ``turns[-1]`` after ``turns[:-1]``, and how many turns were replayed (1 when
        the previous state was cached, ``len(turns)`` from a cold cache).

        Args:
            turns: the user messages, oldest first (at least one).
            deadline: a ``time.perf_counter()`` instant; checked before each turn (None: none).

        Raises:
            DeadlineExceeded: ``deadline`` passed before the last turn started.
            What :meth:`ChatSession.send` raises (RequestError for a blank or too long message,
            ModelError, ...), StoreError when a Chroma server cannot be reached."""
        if not turns:
            raise ValueError("no user message to answer")
        self._sync()
        template, keys = self._template, prefix_keys(turns)
        session, start = self._cached(keys)
        session = None if session is None else self._copy(session)
        if len(turns) > 1:
            with self._lock:
                self.hits, self.misses = (self.hits + 1, self.misses) if start else (self.hits, self.misses + 1)
        session = session or self._copy(template)
        reply = None
        for i in range(start, len(turns)):
            if deadline is not None and time.perf_counter() >= deadline:
                raise DeadlineExceeded(i - start, len(turns) - i)
            reply = session.send(turns[i])
            self._put(keys[i], session)
        return reply, len(turns) - start
