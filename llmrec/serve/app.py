"""HTTP routing of ``llmrec serve``: FastAPI routes, the guard middleware, OpenAI-shaped errors.

Routes: ``GET /health`` (no key needed), ``GET /v1/models``, ``POST /v1/chat/completions``.
Every error, a framework's included (malformed JSON, a validation error, an unknown route, an
oversize body), is answered as ``{"error": {"message", "type", "param", "code"}}``: 4xx for the
client's mistakes, 5xx only for the server's.
"""

from __future__ import annotations

import asyncio
import hmac
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
    reasons = list(dict.fromkeys(e["msg"] for e in errors if _param(e.get("loc", ())) == param))
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {json.dumps(got, default=repr)[:80]})"
    return APIError(400, f"{param or 'body'}: {' or '.join(reasons)}{shown}", param=param, code="invalid_value")


class Guard:
    """ASGI middleware: the API key on ``/v1/*`` (when ``api_key`` is set), then the body size.

    A missing or wrong ``Authorization: Bearer <key>`` gets 401; a ``Content-Length`` over
    ``max_body_bytes`` gets 413 before anything is read, and so does a chunked body once it passes
    the limit."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes
        self.key = api_key.encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault("state", {})["llmrec_arrival"] = time.perf_counter()
        headers = dict(scope["headers"])
        if self.key is not None and scope["path"].startswith("/v1"):
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
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, _too_large(limit, received).message)
            return message

        return await self.app(scope, limited, send)


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
    app.add_middleware(Guard, api_key=cfg.serve_api_key, max_body_bytes=cfg.serve_max_body_bytes)

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return _error_response(e, {"Retry-After": "1"} if e.status == 429 else None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        return _error_response(validation_error(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(e.status_code)
        message = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on "
                   f"{request.url.path}"}.get(e.status_code, str(e.detail))
        kind = "invalid_request_error" if e.status_code < 500 else "server_error"
        return _error_response(APIError(e.status_code, message, type=kind, code=code))

    @app.exception_handler(Exception)
    async def _bug(request, e: Exception):
        log.exception("internal error on %s", request.url.path)
        return _error_response(APIError(500, f"internal error: {type(e).__name__}", type="server_error"))

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
    """Serve on ``cfg.serve_host:serve_port`` until SIGINT/SIGTERM (uvicorn; in-flight requests finish
    first, for at most ``serve_timeout_s`` + 5 s). Loads the recommender (``Recommender.load(config=cfg)``)
    unless given, and warms it up (one ranking, the text encoder) before accepting requests.

    Raises:
        ConfigError, StoreError, ModelError: as ``check_config`` and ``Recommender.load``.
    """
    import uvicorn

    from llmrec.serve.serving import check_config

    check_config(cfg)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    rec = recommender or Recommender.load(config=cfg)
    warm_up(rec)
    app = create_app(rec, cfg)
    uvicorn.run(app, host=cfg.serve_host, port=cfg.serve_port, log_level=log_level,
                timeout_graceful_shutdown=int(cfg.serve_timeout_s) + 5)


def warm_up(rec: Recommender) -> None:
    """Load the models a first request would (the ranker's LLM, the query text encoder) by one
    ranking, so that the first request is not slower than the others."""
    from llmrec.agent.session import store_encoder

    store_encoder(rec)
    with_history = [u for u, h in rec.histories.items() if h]
    if with_history:
        rec.recommend(user_id=with_history[0], k=1)
