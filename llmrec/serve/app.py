"""HTTP routing of ``llmrec serve``: FastAPI routes, the guard middleware, OpenAI-shaped errors.

Routes: ``GET /health`` (no key needed), ``GET /v1/models``, ``POST /v1/chat/completions``,
``GET /openapi.json`` (the schema; behind the key like everything but ``/health`` when one is set;
``/docs`` and ``/redoc`` are off). Every error, a framework's included (malformed JSON, invalid
UTF-8, JSON nested too deeply, a body that is not a JSON object, a validation error, an unknown
route, an oversize or too slow body), is answered as ``{"error": {"message", "type", "param",
"code"}}`` with a non-null ``code``: 4xx for the client's mistakes, 5xx only for the server's.
Connection-level limits (a stalled request head, idle connections, the connection count) are
uvicorn's settings, :mod:`llmrec.serve.transport`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import resource
import sys
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmrec import __version__
from llmrec.config import Config
from llmrec.recommender import Recommender
from llmrec.serve.protocol import APIError, ChatCompletionRequest, ChatCompletionResponse, ModelList
from llmrec.serve.serving import ServingChat
from llmrec.serve.transport import uvicorn_options

log = logging.getLogger("llmrec.serve")
SWITCH_INTERVAL_S = 0.0005
"""The interpreter's GIL switch interval while serving (Python's default: 5 ms): the event loop
waits at most about this long for the GIL when the ranking thread holds it between torch ops."""
_TYPE_TAG = re.compile(r"^(?:str|int|float|bool|dict|list|none|json-or-python|[A-Z]\w*|.*\[.*)$")
"""pydantic's union-branch tags in an error location (``str``, ``list[ContentPart]``): not field names."""


def _error_response(e: APIError, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


def _param(loc) -> str | None:
    out = ""
    for part in loc:
        if part == "body" and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _TYPE_TAG.match(str(part)):
            out += f".{part}" if out else str(part)
    return out or None


def validation_error(exc: RequestValidationError) -> APIError:
    """FastAPI's 422 as OpenAI's 400: the first failing field as ``param``, every reason for it."""
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        ctx = first.get("ctx") or {}
        return APIError(400, f"malformed JSON body: {ctx.get('error', 'JSON decode error')} (at character "
                        f"{first['loc'][-1]})", code="invalid_json")
    param = _param(first.get("loc", ()))
    got = first.get("input")
    if param is None and first.get("type") == "missing":
        return APIError(400, "the request body must be a JSON object (got none)", code="invalid_request_body")
    if param is None and isinstance(got, (bytes, bytearray)):
        return APIError(400, "the request body must be JSON, sent with 'Content-Type: application/json'",
                        code="invalid_request_body")
    if param is None and not isinstance(got, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
            type(got), "null" if got is None else type(got).__name__)
        return APIError(400, f"the request body must be a JSON object, got {kind}", code="invalid_request_body")
    reasons = list(dict.fromkeys(e["msg"] for e in errors if _param(e.get("loc", ())) == param))
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {json.dumps(got, default=repr)[:80]})"
    return APIError(400, f"{param or 'body'}: {' or '.join(reasons)}{shown}", param=param, code="invalid_value")


OPEN_PATHS = ("/health",)
"""Paths served without the API key (a load balancer's probe)."""


class Guard:
    """ASGI middleware: the API key on every path but :data:`OPEN_PATHS` (when ``api_key`` is set),
    then the body's size and read time.

    A missing or wrong ``Authorization: Bearer <key>`` gets 401; a ``Content-Length`` over
    ``max_body_bytes`` gets 413 before anything is read, and so does a chunked body once it passes
    the limit; a body not received whole within ``read_timeout_s`` of the request's arrival (its
    head read) gets 408 with ``Connection: close``."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int, read_timeout_s: float = 30.0):
        self.app, self.max_body_bytes, self.read_timeout_s = app, max_body_bytes, read_timeout_s
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        arrival = time.perf_counter()
        scope.setdefault("state", {})["llmrec_arrival"] = arrival
        headers = dict(scope["headers"])
        if self.key is not None and scope["path"] not in OPEN_PATHS:
            auth = headers.get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if not auth:
                return await _send(send, APIError(401, "missing API key: send the header 'Authorization: Bearer "
                                                  "<key>' (serve_api_key)", code="invalid_api_key"))
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                return await _send(send, APIError(401, "incorrect API key", code="invalid_api_key"))
        limit, length = self.max_body_bytes, headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await _send(send, APIError(400, "invalid Content-Length header", code="invalid_request"))
            if int(length) > limit:
                return await _send(send, _too_large(limit, int(length)))
        received, whole, deadline = 0, False, arrival + self.read_timeout_s

        async def limited():
            nonlocal received, whole
            if whole:  # the body is in; later calls wait for a disconnect, unbounded
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.perf_counter(), 0.0))
            except TimeoutError:
                raise HTTPException(408, f"the request body was not received within {self.read_timeout_s:g} s "
                                    f"(serve_read_timeout_s; {received} bytes came)",
                                    headers={"Connection": "close"}) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(limit, received).message)
                whole = not message.get("more_body", False)
            return message

        return await self.app(scope, limited, send)


def http_error(e: StarletteHTTPException, method: str, path: str) -> APIError:
    """A framework's HTTP error as OpenAI's shape, with a code: the body FastAPI could not parse
    (its cause: invalid UTF-8, JSON nested too deeply), an unknown route or method, a body too large
    or too slow."""
    status, cause = e.status_code, e.__cause__
    if status == 400 and isinstance(cause, UnicodeDecodeError):
        return APIError(400, f"the request body is not valid UTF-8 (byte {cause.start}: {cause.reason})",
                        code="invalid_utf8")
    if status == 400 and isinstance(cause, RecursionError):
        return APIError(400, "the JSON body is nested too deeply", code="json_too_deep")
    code = {400: "invalid_request_body", 404: "not_found", 405: "method_not_allowed", 408: "request_timeout",
            413: "request_too_large"}.get(status, "invalid_request" if status < 500 else "server_error")
    message = {404: f"no route {path}", 405: f"{method} is not allowed on {path}"}.get(status, str(e.detail))
    if status == 400 and cause is not None:
        message = f"the request body could not be read: {type(cause).__name__}"
    return APIError(status, message, type="invalid_request_error" if status < 500 else "server_error", code=code)


def _too_large(limit: int, got: int) -> APIError:
    return APIError(413, f"the request body is at most {limit} bytes (serve_max_body_bytes), got {got}"
                    f"{'+' if got > limit else ''}", code="request_too_large")


async def _send(send, e: APIError) -> None:
    body = json.dumps(e.body()).encode()
    await send({"type": "http.response.start", "status": e.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def peak_rss_mb() -> float:
    """This process's peak resident set size, MiB (``getrusage``: KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def create_app(recommender: Recommender, cfg: Config) -> FastAPI:
    """The FastAPI application over ``recommender`` with ``cfg``'s ``serve_*`` keys.

    ``app.state.serving`` is the :class:`~llmrec.serve.serving.ServingChat` (its ``replayer`` holds
    the snapshot cache, its ``limiter`` the worker pool, shut down with the app).

    Raises:
        ConfigError: a ``serve_*`` key out of range (``serving.check_config``).
    """
    serving = ServingChat(recommender, cfg)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(serving.limiter.shutdown)  # in-flight requests have finished by now

    app = FastAPI(title="llmrec", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serving = serving
    app.add_middleware(Guard, api_key=cfg.serve.api_key, max_body_bytes=cfg.serve.max_body_bytes,
                       read_timeout_s=cfg.serve.read_timeout_s)

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return _error_response(e, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        return _error_response(validation_error(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        return _error_response(http_error(e, request.method, request.url.path), e.headers)

    @app.exception_handler(Exception)
    async def _bug(request, e: Exception):
        log.exception("internal error on %s", request.url.path)
        return _error_response(APIError(500, f"internal error: {type(e).__name__}", type="server_error",
                                        code="internal_error"))

    @app.get("/health")
    async def health() -> dict:
        """``{"status": "ok", "model", "running", "queued", "capacity", "rejected", "cache_hits",
        "cache_misses", "rss_peak_mb"}``."""
        rp = serving.replayer
        return {"status": "ok", "model": serving.model, **serving.limiter.stats(), "cache_hits": rp.hits,
                "cache_misses": rp.misses, "rss_peak_mb": peak_rss_mb()}

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> ModelList:
        return serving.models()

    @app.post("/v1/chat/completions", response_model=ChatCompletionResponse)
    async def chat_completions(req: ChatCompletionRequest, request: Request):
        reply, replayed, timing, turns = await serving.answer(req)
        arrival = request.scope.get("state", {}).get("llmrec_arrival")
        timing.server_s = None if arrival is None else time.perf_counter() - arrival
        headers = {"Server-Timing": f"queue;dur={timing.queue_s * 1000:.3f}, work;dur={timing.work_s * 1000:.3f}"}
        if req.stream:
            return StreamingResponse(serving.chunks(req, reply, replayed, timing, turns), media_type="text/event-stream",
                                     headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        body = serving.response(req, reply, replayed, timing, turns)
        response = JSONResponse(body.model_dump(mode="json"), headers=headers)  # rendered here
        if arrival is not None:  # the whole server side but the socket write: arrival to rendered body
            response.headers["Server-Timing"] += f", total;dur={(time.perf_counter() - arrival) * 1000:.3f}"
        return response

    return app


def run(cfg: Config, recommender: Recommender | None = None, *, log_level: str = "info") -> None:
    """Serve on ``cfg.serve.host:serve_port`` until SIGINT/SIGTERM (uvicorn; in-flight requests finish
    first, for at most ``serve_timeout_s`` + 5 s). Loads the recommender (``Recommender.load(config=cfg)``)
    unless given, and warms it up (one ranking, the text encoder) before accepting requests.

    Raises:
        ConfigError, StoreError, ModelError: as ``check_config`` and ``Recommender.load``.
    """
    import uvicorn

    from llmrec.serve.serving import check_config

    check_config(cfg)
    warning = exposure_warning(cfg)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    rec = recommender or Recommender.load(config=cfg)
    warm_up(rec)
    app = create_app(rec, cfg)
    uvicorn.run(app, host=cfg.serve.host, port=cfg.serve.port, log_level=log_level, **uvicorn_options(cfg))


def is_loopback(host: str) -> bool:
    """``host`` reaches this machine only: ``localhost`` or a loopback address (``127.0.0.0/8``,
    ``::1``). Any other name or address (``0.0.0.0``, ``::``, an interface's) may be reachable
    from elsewhere."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(cfg: Config) -> str | None:
    """The warning ``run`` prints when it would listen beyond loopback without ``serve_api_key``."""
    if cfg.serve.api_key or is_loopback(cfg.serve.host):
        return None
    return (f"llmrec serve: WARNING: listening on {cfg.serve.host} (not loopback) without serve_api_key: anyone "
            "who can reach this port can use the API and its ranking workers. Set LLMREC_SERVE__API_KEY, or "
            "serve_host: 127.0.0.1 behind a proxy that authenticates.")


def warm_up(rec: Recommender) -> None:
    """Load the models a first request would (the ranker's LLM, the query text encoder) by one
    ranking, so that the first request is not slower than the others."""
    from llmrec.agent.session import store_encoder

    store_encoder(rec)
    with_history = [u for u, h in rec.histories.items() if h]
    if with_history:
        rec.recommend(user_id=with_history[0], k=1)
