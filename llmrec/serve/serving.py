"""The logic of ``POST /v1/chat/completions``: check a request, answer it, shape the response.

A request is checked beyond its schema (:func:`ServingChat.turns`): the model name, ``n``, tools,
the message count and length limits, that the last message is the user's. Its user messages are
then answered by :class:`~llmrec.serve.replay.Replayer` (the server is stateless) in a worker
thread of :class:`~llmrec.serve.limiter.Limiter`, within ``serve_timeout_s``. Every refusal is an
:class:`~llmrec.serve.protocol.APIError` naming the field at fault.

Bounded work per request: at most ``serve_max_user_turns`` user messages (each may cost one
ranking; all of the request's user messages count, whatever the snapshot cache holds, so that
whether a request is accepted never depends on the cache); the limiter weighs the request by the
turns it will replay (its cost); and the replay stops at the request's deadline (admission +
``serve_timeout_s``), checked between turns.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from functools import partial

from llmrec import __version__
from llmrec.agent.parse import MAX_MESSAGE_CHARS
from llmrec.agent.session import Reply
from llmrec.config import Config
from llmrec.errors import (
    ConfigError,
    LLMRecError,
    ModelError,
    RequestError,
    StoreError,
    UnknownItemError,
    UnknownUserError,
)
from llmrec.recommender import Recommender
from llmrec.serve.limiter import Busy, Limiter, Timeout, Timing
from llmrec.serve.protocol import (
    APIError,
    AssistantMessage,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    Usage,
)
from llmrec.serve.replay import DeadlineExceeded, Replayer
from llmrec.serve.structured import answer_object, check_schema, item_dict, project

STORE_RETRY_AFTER_S = 5
"""``Retry-After`` seconds of a 503 when the store (a Chroma server) is unavailable or timed out."""
CHUNK_CHARS = 256
"""Longest content piece of one streamed chunk (the content is cut at line ends first)."""


def check_config(cfg: Config) -> None:
    """Raise ConfigError naming the ``serve_*`` key out of range: port 1..65535, body bytes, messages,
    user turns, connections, concurrency >= 1, queue and cache size >= 0, timeouts > 0 and finite, message chars
    1..4,000 (the chat parser's limit), a non-empty model name, an API key (when set) non-empty."""
    def bad(key, want):
        raise ConfigError(f"config key {key!r} must be {want}, got {getattr(cfg, key)!r}")

    if not 1 <= cfg.serve.port <= 65535:
        bad("serve_port", "in 1..65535")
    for key in ("serve_max_body_bytes", "serve_max_messages", "serve_max_user_turns", "serve_max_connections",
                "serve_concurrency"):
        if getattr(cfg, key) < 1:
            bad(key, ">= 1")
    for key in ("serve_queue", "serve_cache_size"):
        if getattr(cfg, key) < 0:
            bad(key, ">= 0")
    if not 1 <= cfg.serve.max_message_chars <= MAX_MESSAGE_CHARS:
        bad("serve_max_message_chars", f"in 1..{MAX_MESSAGE_CHARS} (the chat session's limit)")
    for key in ("serve_timeout_s", "serve_read_timeout_s"):
        if not (math.isfinite(getattr(cfg, key)) and getattr(cfg, key) > 0):
            bad(key, "a finite number of seconds > 0")
    if not cfg.serve.model_name.strip():
        bad("serve_model_name", "a non-empty name")
    if cfg.serve.api_key is not None and not cfg.serve.api_key.strip():
        bad("serve_api_key", "a non-empty key or null (no authentication)")


def _plain(x):
    """JSON-safe data: tuples/sets as lists, numpy scalars as Python numbers, non-finite floats as None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted(_plain(v) for v in x)
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _words(text: str) -> int:
    return len(text.split())


class ServingChat:
    """Answers chat-completion requests over one recommender.

    Args:
        recommender: the store's :class:`~llmrec.recommender.Recommender`.
        cfg: the ``serve_*`` keys (:func:`check_config`), ``k`` (recommendations per reply).

    Raises:
        ConfigError: a ``serve_*`` key out of range.
    """

    def __init__(self, recommender: Recommender, cfg: Config):
        check_config(cfg)
        self.cfg = cfg
        self.model = cfg.serve.model_name
        self.replayer = Replayer(recommender, cfg.serve.cache_size, page_size=cfg.k)
        self.limiter = Limiter(cfg.serve.concurrency, cfg.serve.queue)
        self.created = int(time.time())
        self.fingerprint = f"llmrec-{__version__}"

    def models(self) -> ModelList:
        """``GET /v1/models``: the one model served."""
        return ModelList(data=[ModelCard(id=self.model, created=self.created)])

    # ------------------------------------------------------------------ checks
    def turns(self, req: ChatCompletionRequest) -> list[str]:
        """The user messages' texts, oldest first, after every check.

        Raises:
            APIError: 404 unknown ``model``; 400 for ``n`` != 1, ``stream_options`` without
                ``stream``, ``tools``/``tool_choice``/``logprobs`` used, a ``json_schema`` format
                without a schema or asking for properties llmrec does not produce, no messages, more
                than ``serve_max_messages``, more than ``serve_max_user_turns`` user messages
                (``code`` ``too_many_user_turns``), a non-text content part, a tool message, a user message
                blank, not valid Unicode or longer than ``serve_max_message_chars``, or a last message
                not the user's.
        """
        if req.model != self.model:
            raise APIError(404, f"the model {req.model!r} does not exist: this server serves {self.model!r} "
                           "(GET /v1/models)", param="model", code="model_not_found")
        if req.n not in (None, 1):
            raise APIError(400, f"n must be 1: llmrec's answer is deterministic, so every choice would be the same "
                           f"(got {req.n})", param="n", code="unsupported_value")
        if req.stream_options is not None and not req.stream:
            raise APIError(400, "stream_options is only allowed when stream is true", param="stream_options")
        if req.tools:
            raise APIError(400, "tools are not supported: llmrec makes no tool calls (use response_format for JSON)",
                           param="tools", code="unsupported_parameter")
        if req.tool_choice not in (None, "none", "auto"):
            raise APIError(400, "tool_choice is not supported: llmrec makes no tool calls", param="tool_choice",
                           code="unsupported_parameter")
        if req.logprobs:
            raise APIError(400, "logprobs are not supported", param="logprobs", code="unsupported_parameter")
        fmt = req.response_format
        if fmt is not None and fmt.type == "json_schema":
            if fmt.json_schema is None or fmt.json_schema.schema_ is None:
                raise APIError(400, "response_format of type json_schema needs json_schema.schema",
                               param="response_format.json_schema")
            check_schema(fmt.json_schema.schema_)
        if not req.messages:
            raise APIError(400, "messages must not be empty: send the conversation, ending with a user message",
                           param="messages", code="empty_messages")
        if len(req.messages) > self.cfg.serve.max_messages:
            raise APIError(400, f"at most {self.cfg.serve.max_messages} messages (serve_max_messages), got "
                           f"{len(req.messages)}", param="messages", code="too_many_messages")
        users = sum(m.role == "user" for m in req.messages)
        if users > self.cfg.serve.max_user_turns:
            raise APIError(400, f"at most {self.cfg.serve.max_user_turns} user messages (serve_max_user_turns), got "
                           f"{users}: each is replayed and may cost a ranking; start a new conversation or send "
                           "only its latest turns", param="messages", code="too_many_user_turns")
        turns = []
        for i, m in enumerate(req.messages):
            if m.role in ("tool", "function"):
                raise APIError(400, f"messages[{i}]: {m.role} messages are not supported (llmrec makes no tool calls)",
                               param=f"messages[{i}].role")
            text = self._text(m.content, i)
            if m.role != "user":
                continue  # system, developer, assistant: accepted, their content ignored
            if text is None or not text.strip():
                raise APIError(400, f"messages[{i}]: a user message must have non-blank content",
                               param=f"messages[{i}].content")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise APIError(400, f"messages[{i}]: the content is not valid Unicode (a lone surrogate)",
                               param=f"messages[{i}].content") from None
            if len(text) > self.cfg.serve.max_message_chars:
                raise APIError(400, f"messages[{i}]: a user message is at most {self.cfg.serve.max_message_chars} "
                               f"characters (serve_max_message_chars), got {len(text)}",
                               param=f"messages[{i}].content", code="message_too_long")
            turns.append(text)
        if req.messages[-1].role != "user":
            raise APIError(400, f"the last message must be the user's, got role {req.messages[-1].role!r}",
                           param=f"messages[{len(req.messages) - 1}].role")
        return turns

    @staticmethod
    def _text(content, i: int) -> str | None:
        if content is None or isinstance(content, str):
            return content
        texts = []
        for j, part in enumerate(content):
            if part.type != "text" or part.text is None:
                raise APIError(400, f"messages[{i}].content[{j}]: only text parts are supported, got type "
                               f"{part.type!r}", param=f"messages[{i}].content[{j}].type")
            texts.append(part.text)
        return "\n".join(texts)

    # ------------------------------------------------------------------ answering
    async def answer(self, req: ChatCompletionRequest) -> tuple[Reply, int, Timing, list[str]]:
        """Check the request and answer it: (reply, turns replayed, timing, user turns).

        Raises:
            APIError: the checks of :meth:`turns`; 429 when the worker pool and its queue are full
                or the work queued ahead plus this request's turns would pass ``serve_timeout_s``
                (``Limiter.expected_s``); 504 past ``serve_timeout_s`` (the replay stops there too,
                between turns); 400 for a message the chat session refuses; 500 when a model fails;
                503 with ``Retry-After`` when the store is unavailable.
        """
        turns = self.turns(req)
        timeout_s = self.cfg.serve.timeout_s
        deadline = time.perf_counter() + timeout_s  # the limiter admits (or refuses) without awaiting first
        try:
            (reply, replayed), timing = await self.limiter.run(
                partial(self.replayer.answer, turns, deadline=deadline), timeout_s, cost=self.replayer.pending(turns))
        except Busy:
            st = self.limiter.stats()
            raise APIError(429, f"the server is busy: {st['running'] + st['queued']} requests running or queued "
                           f"(room for {self.limiter.capacity}: serve_concurrency + serve_queue), or the wait "
                           f"would pass serve_timeout_s ({self.cfg.serve.timeout_s:g} s); retry later",
                           type="rate_limit_error", code="server_busy", headers={"Retry-After": "1"}) from None
        except (Timeout, DeadlineExceeded):
            raise APIError(504, f"no answer within {self.cfg.serve.timeout_s:g} s (serve_timeout_s), counted from "
                           "the request's admission, queue wait included", type="timeout_error",
                           code="timeout") from None
        except (RequestError, UnknownUserError, UnknownItemError) as e:
            raise APIError(400, str(e), param="messages") from None
        except ModelError as e:
            raise APIError(500, f"the model failed: {e}", type="server_error", code="model_error") from None
        except StoreError as e:
            raise APIError(503, f"the store is unavailable: {e}", type="server_error", code="store_unavailable",
                           headers={"Retry-After": str(STORE_RETRY_AFTER_S)}) from None
        except LLMRecError as e:
            raise APIError(500, str(e), type="server_error") from None
        return reply, replayed, timing, turns

    def content(self, req: ChatCompletionRequest, reply: Reply) -> str:
        """The assistant's content: the readable text, or the JSON of ``response_format``."""
        fmt = req.response_format
        if fmt is None or fmt.type == "text":
            return reply.text
        obj = answer_object(reply)
        if fmt.type == "json_schema":
            obj = project(obj, fmt.json_schema.schema_)
        return json.dumps(obj, ensure_ascii=False, allow_nan=False)

    def extension(self, reply: Reply, replayed: int, timing: Timing) -> dict:
        """The ``llmrec`` field: items, question, meta, timing (see ChatCompletionResponse)."""
        return {"items": [item_dict(r) for r in reply.items], "question": reply.question,
                "meta": _plain(reply.meta),
                "timing": {"queue_s": round(timing.queue_s, 6), "work_s": round(timing.work_s, 6),
                           "server_s": None if timing.server_s is None else round(timing.server_s, 6),
                           "replayed_turns": replayed}}

    def usage(self, turns: list[str], content: str) -> Usage:
        p, c = sum(_words(t) for t in turns), _words(content)
        return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)

    def response(self, req, reply: Reply, replayed: int, timing: Timing, turns: list[str]) -> ChatCompletionResponse:
        """The non-streaming response."""
        content = self.content(req, reply)
        return ChatCompletionResponse(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.model,
            system_fingerprint=self.fingerprint, choices=[Choice(message=AssistantMessage(content=content))],
            usage=self.usage(turns, content), llmrec=self.extension(reply, replayed, timing))

    def chunks(self, req, reply: Reply, replayed: int, timing: Timing, turns: list[str]) -> Iterator[str]:
        """The server-sent events of a streamed response: ``data: {chunk}\\n\\n`` each (role first,
        content pieces, the finish chunk with the ``llmrec`` field, the usage chunk when
        ``stream_options.include_usage``), then ``data: [DONE]\\n\\n``."""
        content = self.content(req, reply)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.model, "system_fingerprint": self.fingerprint}
        extra = {"usage": None} if include_usage else {}

        def event(choices, **more) -> str:
            chunk = ChatCompletionChunk(**head, choices=choices, **extra, **more)
            return f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"

        def choice(delta: Delta, finish=None) -> list[ChunkChoice]:
            return [ChunkChoice(index=0, delta=delta, finish_reason=finish, logprobs=None)]

        yield event(choice(Delta(role="assistant", content="")))
        for line in content.splitlines(keepends=True):
            for k in range(0, len(line), CHUNK_CHARS):
                yield event(choice(Delta(content=line[k:k + CHUNK_CHARS])))
        yield event(choice(Delta(), "stop"), llmrec=self.extension(reply, replayed, timing))
        if include_usage:
            extra = {}
            yield event([], usage=self.usage(turns, content))
        yield "data: [DONE]\n\n"
