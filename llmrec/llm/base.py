"""The LLM backend seam: the :class:`Backend` protocol, the registry of serving backends by name
(:data:`BACKENDS`, config ``llm_backend``) and the factories the rest of llmrec calls
(:func:`make_backend`, :func:`zero_shot_ranker`, :func:`load_ranker`).

Implementations: ``transformers`` in-process (``hf.py``); ``vllm``, a vLLM OpenAI-compatible server
(``vllm.py``; its trained ranker in ``vllm_ranker.py``).

A prompt is a list of chat messages ``[{"role": "system"|"user"|"assistant", "content": str}]``.
Soft tokens: an optional mapping from a placeholder string that appears verbatim in the prompt
(e.g. ``"<soft:item42:image>"``) to a float tensor [k, d_llm] of input embeddings that replace it
(the projector's output for an image or audio clip).

Adding a serving backend: a module implementing :class:`Backend` (and, for the trained ranker, a
``load(folder, cfg, retriever)`` like :func:`llmrec.rank.checkpoint.load`), plus its line in
:data:`BACKENDS`. Entries name their factories as ``"module:attribute"`` strings, imported on first
use, so that importing this module (as the prompt code does) loads neither torch nor an HTTP client.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from llmrec.errors import ConfigError, ModelError

Messages = list[dict[str, str]]


@runtime_checkable
class Backend(Protocol):
    """An LLM that scores next-token labels and generates text.

    What the rest of llmrec calls (the verbalizer, explanations, chat intent). Both implementations
    render prompts with the model's own chat template and map labels to token ids with
    :func:`single_token_id`, so they read the same tokens.

    Attributes:
        name: the registry name (``cfg.llm_backend``) of the implementation.
    """

    name: str

    def score_labels(self, messages: Messages, labels: list[str], soft_tokens: dict | None = None) -> np.ndarray:
        """Next-token log-probabilities (natural log, over the full vocabulary) of each label's
        single token, right after the assistant turn starts: ONE forward pass.

        Returns float64 [len(labels)] (each <= 0). Raises ModelError if a label is not a single
        token (or the model cannot answer); PromptTooLongError if the prompt exceeds the context.
        """
        ...

    def generate(self, prompts: list[Messages], max_tokens: int, soft_tokens: list[dict | None] | None = None) -> list[str]:
        """Greedy completion of each prompt, at most ``max_tokens`` new tokens each, decoded with
        special tokens skipped and stripped: one str per prompt, in order ([] for no prompts).
        ``soft_tokens``: one mapping (or None) per prompt.

        Raises PromptTooLongError when a prompt plus ``max_tokens`` exceeds the context; ModelError
        when the model cannot answer."""
        ...


def single_token_id(tokenizer, label: str, cache: dict[str, int]) -> int:
    """``label``'s token id for ``tokenizer`` (no special tokens), memoised in ``cache``.

    Raises ModelError when it is not exactly one token."""
    if label not in cache:
        ids = tokenizer.encode(label, add_special_tokens=False)
        if len(ids) != 1:
            raise ModelError(f"label {label!r} is {len(ids)} tokens for this tokenizer; labels must be one token")
        cache[label] = ids[0]
    return cache[label]


@dataclass(frozen=True)
class BackendEntry:
    """One serving backend of :data:`BACKENDS`: where its factories live, as ``"module:attribute"``.

    Attributes:
        backend: ``(cfg) -> Backend``.
        zero_shot: ``(cfg) -> ranker``: the base LLM with the trained ranker's prompt (titles only).
        trained: ``(folder, cfg, retriever=None) -> ranker``: a ``llmrec train-ranker`` checkpoint;
            raises ModelError (missing or damaged files, no server) or RankerMismatchError.
        A ranker answers ``score(batch: [(history items, candidate items)]) -> float64 [B, n]`` (log-softmax
        over the candidate labels, natural log) and has a ``manifest`` dict.
    """

    backend: str
    zero_shot: str
    trained: str

    def load(self, role: str) -> Any:
        """The factory ``role`` (``backend``, ``zero_shot`` or ``trained``), imported now."""
        module, _, attr = getattr(self, role).partition(":")
        return getattr(importlib.import_module(module), attr)


BACKENDS: dict[str, BackendEntry] = {
    "transformers": BackendEntry("llmrec.llm.hf:TransformersBackend", "llmrec.llm.hf:zero_shot_ranker",
                                 "llmrec.llm.hf:load_ranker"),
    "vllm": BackendEntry("llmrec.llm.vllm:VLLMBackend", "llmrec.llm.vllm_ranker:zero_shot",
                         "llmrec.llm.vllm_ranker:load"),
}
"""The serving backends by name (config ``llm_backend``)."""


def backend_entry(name: str) -> BackendEntry:
    """The registry entry ``name``. Raises ConfigError naming the registered backends."""
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown llm_backend {name!r} (available: {', '.join(BACKENDS)})") from None


def make_backend(cfg) -> Backend:
    """The :class:`Backend` named by ``cfg.llm_backend``: ``transformers`` (in-process) or ``vllm``
    (:class:`llmrec.llm.vllm.VLLMBackend`: ``vllm_url``, or a local server it starts).

    Raises ConfigError for an unknown name; ModelError when the model (or server) cannot be loaded."""
    return backend_entry(cfg.llm_backend).load("backend")(cfg)


def zero_shot_ranker(cfg):
    """The base LLM with the trained ranker's prompt on ``cfg.llm_backend`` (see :class:`BackendEntry`).
    Raises ConfigError for an unknown backend; ModelError when the model or server cannot be had."""
    return backend_entry(cfg.llm_backend).load("zero_shot")(cfg)


def load_ranker(folder, cfg, retriever: dict | None = None):
    """The trained ranker of the checkpoint ``folder`` on ``cfg.llm_backend``: in-process, LoRA merged
    (``transformers``), or its adapter served by vLLM, the prompt built here (``vllm``).

    Raises:
        ConfigError: an unknown backend.
        ModelError: missing or damaged checkpoint files, or no server.
        RankerMismatchError: the base model, template (or ``retriever``) differs from the checkpoint's."""
    return backend_entry(cfg.llm_backend).load("trained")(folder, cfg, retriever=retriever)
