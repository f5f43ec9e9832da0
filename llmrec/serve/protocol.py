"""Request and response schemas of ``llmrec serve`` (OpenAI's chat-completions wire format).

Only shapes live here (pydantic models, no logic): :mod:`llmrec.serve.serving` checks what the
schemas cannot (limits, roles, the model name) and builds the responses; :mod:`llmrec.serve.app`
routes. Requests are validated strictly (``"stream": "yes"`` is an error, not ``True``); fields
OpenAI defines that llmrec has no use for (``temperature``, ``seed``, ``max_tokens``, ...) are
type-checked and ignored (llmrec's answer is deterministic); unknown fields are ignored, as vLLM
does. llmrec's own data rides in the ``llmrec`` extension field of a response (see
:class:`ChatCompletionResponse`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmrec.errors import LLMRecError


class APIError(LLMRecError):
    """An error answered in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.

    Attributes:
        status: the HTTP status (4xx: the client's mistake; 5xx: the server's).
        type: OpenAI's error type (``invalid_request_error``, ``authentication_error``,
            ``rate_limit_error``, ``timeout_error``, ``server_error``).
        param: the request field at fault, e.g. ``messages[2].content`` (None when no one field is).
        code: a short machine-readable reason (``model_not_found``, ``invalid_api_key``, ...); never
            None: when not given, ``invalid_value`` (a 4xx naming a ``param``), ``invalid_request``
            (another 4xx) or ``server_error`` (5xx).
        headers: extra response headers (``Retry-After`` on a 429 or 503, ``Connection: close``).
    """

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        if code is None:
            code = "server_error" if status >= 500 else "invalid_value" if param else "invalid_request"
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers

    def body(self) -> dict:
        """The JSON body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


# ---------------------------------------------------------------------- requests
class ContentPart(_Strict):
    """One part of a list-valued ``content``; only ``{"type": "text", "text": ...}`` is served."""

    model_config = ConfigDict(strict=True, extra="allow")
    type: str
    text: str | None = None


class ChatMessage(_Strict):
    """One message. ``content``: a string or a list of text parts (None only for an assistant
    message). System, developer and assistant messages are accepted and their content ignored:
    the conversation's state is rebuilt from the user messages alone."""

    model_config = ConfigDict(strict=True, extra="allow")  # name, tool_calls, refusal, ...
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool | None = None
    """True: one extra chunk with ``usage`` and empty ``choices`` before ``data: [DONE]``."""


class JSONSchemaFormat(_Strict):
    name: str = Field(max_length=64)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(_Strict):
    """``text`` (default): the recommendations as readable text; ``json_object`` / ``json_schema``:
    the content is the JSON of :func:`llmrec.serve.structured.answer_object` (for ``json_schema``
    reduced to the properties the schema names)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class ChatCompletionRequest(_Strict):
    """``POST /v1/chat/completions``. ``messages``: the whole conversation, oldest first, ending with
    a user message (the server keeps no state between requests)."""

    model: str
    messages: list[ChatMessage]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    n: int | None = Field(default=1, ge=1, le=128)
    # Accepted, type-checked, without effect (the answer is deterministic):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    parallel_tool_calls: bool | None = None
    # Refused when used (llmrec makes no tool calls and returns no logprobs):
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


# ---------------------------------------------------------------------- responses
class Usage(BaseModel):
    """Counts of whitespace-separated words (not model tokens: the ranker reads a prompt of its own,
    which the client never sees): ``prompt_tokens`` over the user messages, ``completion_tokens``
    over the answer's content."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    """A non-streaming answer. ``llmrec``: the extension field, ``{"items": [Recommendation as a dict:
    item_id, title, score (null when not finite), rank, explanation, because, retrieval_score],
    "question": str | None, "meta": the session's reply meta (action, resolved, retriever, ranker,
    cold_start, ...), "timing": {"queue_s", "work_s", "server_s", "replayed_turns"}}``: seconds waiting for a worker,
    replaying and ranking in it, and from the request's arrival to the response being built."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[Choice]
    usage: Usage
    llmrec: dict[str, Any]


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed answer (dumped with ``exclude_unset``): the first carries
    ``delta.role``, the next ones ``delta.content``, the last ``finish_reason`` and the ``llmrec``
    extension field; with ``stream_options.include_usage`` every chunk has ``usage: null`` and one
    more chunk with empty ``choices`` carries the usage."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str | None = None
    choices: list[ChunkChoice]
    usage: Usage | None = None
    llmrec: dict[str, Any] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llmrec"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
