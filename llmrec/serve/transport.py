"""Connection-level limits of ``llmrec serve``: uvicorn's settings and a bounded request-head read.

uvicorn (0.30 .. 0.55 at least) has an idle keep-alive timeout (``timeout_keep_alive``) but no
timeout on reading a request: a client that connects and sends nothing, or half a header line, or
one header byte every few seconds (slowloris), holds its connection open for ever. Measured on
uvicorn 0.55 with httptools: 400 such connections were still open after 70 s.
:func:`bounded_protocol` subclasses the HTTP protocol uvicorn would pick (httptools when installed,
else h11) so that:

- the request head (request line and headers) must be complete within ``read_timeout_s`` of the
  connection opening, or of the previous response on a keep-alive connection; past it the
  connection is closed -- silently if nothing of a new request arrived, after a ``408`` in
  OpenAI's error shape if part of one did;
- a request head is at most :data:`MAX_HEAD_BYTES` (431 in OpenAI's shape, then closed;
  h11's own limit is set to the same).

The body is bounded by the app (:class:`llmrec.serve.app.Guard`): it must arrive within
``read_timeout_s`` of the head (408, ``Connection: close``). Not covered: a client slow to *read*
the response (answers are small: the kernel's socket buffer takes them whole).
"""

from __future__ import annotations

import asyncio
import json

from llmrec.config import Config
from llmrec.serve.protocol import APIError

MAX_HEAD_BYTES = 64 * 1024
"""Longest request head (request line + headers), bytes."""
_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


def raw_error(e: APIError) -> bytes:
    """A whole HTTP/1.1 response for ``e`` (OpenAI's JSON error body) that closes the connection."""
    body = json.dumps(e.body()).encode()
    head = (f"HTTP/1.1 {e.status} {_REASONS.get(e.status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode() + body


def bounded_protocol(read_timeout_s: float, max_head_bytes: int = MAX_HEAD_BYTES) -> type[asyncio.Protocol]:
    """uvicorn's automatic HTTP/1.1 protocol class with a deadline and a size limit on each request
    head (see the module docstring). Pass it as ``uvicorn.Config(http=...)``.

    Args:
        read_timeout_s: seconds, > 0.
        max_head_bytes: bytes, >= 1.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class BoundedHead(AutoHTTPProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0

        def _waiting_head(self) -> bool:
            """No request in progress: the next bytes are (part of) a request head."""
            cycle = getattr(self, "cycle", None)
            return cycle is None or cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(read_timeout_s, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self, e: APIError | None) -> None:
            if not self.transport.is_closing():
                if e is not None:
                    self.transport.write(raw_error(e))
                self.transport.close()

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self._waiting_head():
                self._refuse(None if self._head_bytes == 0 else APIError(
                    408, f"the request head was not received within {read_timeout_s:g} s (serve_read_timeout_s)",
                    code="request_timeout"))

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            waiting = self._waiting_head()
            super().data_received(data)
            if waiting and self._waiting_head():  # still no complete head
                self._head_bytes += len(data)
                if self._head_bytes > max_head_bytes:
                    self._refuse(APIError(431, f"the request head is at most {max_head_bytes} bytes",
                                          code="request_header_too_large"))

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return BoundedHead


def uvicorn_options(cfg: Config) -> dict:
    """``uvicorn.Config`` keyword arguments from ``cfg``'s ``serve_*`` keys: the bounded protocol
    (``serve_read_timeout_s`` for the head), ``timeout_keep_alive`` (``serve_read_timeout_s``: an
    idle keep-alive connection is closed after it), ``limit_concurrency`` (``serve_max_connections``:
    uvicorn answers a plain-text 503 to a request arriving while that many connections or requests
    are open), h11's head size limit, and the graceful shutdown's bound (``serve_timeout_s`` + 5 s)."""
    return {"http": bounded_protocol(cfg.serve.read_timeout_s), "timeout_keep_alive": cfg.serve.read_timeout_s,
            "limit_concurrency": cfg.serve.max_connections, "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
            "timeout_graceful_shutdown": int(cfg.serve.timeout_s) + 5}
