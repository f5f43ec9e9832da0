"""vLLM backend: the :class:`~llmrec.llm.base.Backend` protocol over vLLM's OpenAI-compatible server.

Prompts are rendered locally with the model's own tokenizer and chat template (exactly as
:class:`llmrec.llm.hf.TransformersBackend` renders them) and sent to ``/v1/completions`` as token
ids, so both backends read the same tokens:

- ``score_labels``: ONE forward pass, ``max_tokens=1``, temperature 0, ``logprob_token_ids`` = the
  label tokens (vLLM's explicit token selection: the raw, full-vocabulary log-probabilities of
  exactly those tokens, however many labels and wherever they rank; ``allowed_token_ids`` keeps the
  sampled token among them).
- ``generate``: greedy (temperature 0) completions of a batch of prompts in one request; the
  returned token ids are decoded locally like transformers' output.
- soft tokens: the prompt's input embeddings (the model's token embeddings with each placeholder
  replaced by its soft-token vectors, as ``TransformersBackend.embed``) sent as ``prompt_embeds``
  (base64 of a ``torch.save``'d float32 tensor [seq, d]; the server needs
  ``--enable-prompt-embeds``, which the local server gets). A server without it makes the backend
  fall back, once and with a warning, to the text alone: each placeholder (and the space before
  it) is dropped, leaving the item's title/text beside it. :attr:`VLLMBackend.soft_mode` says which
  (``"embeds"`` or ``"text"``).

Endpoints: config ``vllm_url``, one URL or a list (replicas, used round-robin; a replica that fails
is skipped for ``RETRY_AFTER_S`` seconds and probed on ``/health`` before it is used again). With no
``vllm_url`` the backend starts a local server (:mod:`llmrec.llm.vllm_server`) and stops it at exit.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
import urllib.error
import urllib.request
import warnings

import numpy as np
import torch

from llmrec.config import Config
from llmrec.encoders.locations import llm_path
from llmrec.errors import ModelError, PromptTooLongError
from llmrec.llm.base import Messages, single_token_id
from llmrec.llm.vllm_server import VLLMServer, healthy

RETRY_AFTER_S = 10.0
"""Seconds a failed replica is skipped before it is probed again."""


class VLLMRequestError(ModelError):
    """A vLLM server refused a request (HTTP 4xx). Attributes: url, status, message (the server's)."""

    def __init__(self, url: str, status: int, message: str):
        self.url, self.status, self.message = url, status, message
        super().__init__(f"vLLM server {url} refused the request (HTTP {status}): {message}")


class Replicas:
    """Round-robin over vLLM server URLs with health checks.

    A replica whose request fails (no connection, a timeout, HTTP 5xx) is marked down and skipped
    for ``retry_after_s`` seconds while another answers; once due, it is probed on ``/health``
    first. When every replica fails the call raises :class:`ModelError` naming each URL and why.
    An HTTP 4xx answer is the request's fault, not the replica's: :class:`VLLMRequestError` at once.
    """

    def __init__(self, urls: list[str], timeout_s: float = 120.0, retry_after_s: float = RETRY_AFTER_S):
        if not urls:
            raise ModelError("vllm_url: no vLLM server URL given")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout_s, self.retry_after_s = timeout_s, retry_after_s
        self.down_until: dict[str, float] = {}
        self.models: dict[str, dict] = {}  # url -> its base model card from /v1/models
        self._next = 0
        self._lock = threading.Lock()

    def _order(self) -> list[str]:
        with self._lock:
            start, self._next = self._next, (self._next + 1) % len(self.urls)
        ring = self.urls[start:] + self.urls[:start]
        now = time.monotonic()
        up = [u for u in ring if self.down_until.get(u, 0) <= now]
        return up + [u for u in ring if u not in up]  # replicas still cooling down: a last resort

    def _http(self, url: str, path: str, body: dict | None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"},
                                     method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                text = json.loads(text).get("error", {}).get("message", text)
            except (ValueError, AttributeError):
                pass
            if 400 <= e.code < 500:
                raise VLLMRequestError(url, e.code, str(text)[:2000]) from None
            raise OSError(f"HTTP {e.code}: {str(text)[:300]}") from None

    def model(self, url: str) -> dict:
        """The base model card (``id``, ``max_model_len``, ...) ``url`` serves, from ``/v1/models``."""
        if url not in self.models:
            cards = self._http(url, "/v1/models", None).get("data") or []
            base = [c for c in cards if not c.get("parent")] or cards
            if not base:
                raise OSError("it serves no model (/v1/models is empty)")
            self.models[url] = base[0]
        return self.models[url]

    def call(self, fn):
        """``fn(url)`` on the next healthy replica, the others in turn when it fails.

        Raises:
            ModelError: every replica failed (each URL named with its reason).
            VLLMRequestError: a replica refused the request (HTTP 4xx).
        """
        reasons = []
        for url in self._order():
            if url in self.down_until and not healthy(url, min(self.timeout_s, 2.0)):
                self.down_until[url] = time.monotonic() + self.retry_after_s
                reasons.append(f"{url} (unhealthy: /health does not answer 200)")
                continue
            try:
                out = fn(url)
            except VLLMRequestError:
                raise
            except (OSError, ValueError) as e:  # refused, reset, timed out, 5xx, not JSON
                self.down_until[url] = time.monotonic() + self.retry_after_s
                reasons.append(f"{url} ({getattr(e, 'reason', None) or e})")
                continue
            self.down_until.pop(url, None)
            return out
        raise ModelError("no vLLM server answered (config vllm_url): " + "; ".join(reasons))

    def post(self, path: str, body: dict, model: str | None = None) -> dict:
        """POST ``body`` (``model`` set to ``model`` or the replica's base model) to ``path``."""
        return self.call(lambda url: self._http(url, path, {**body, "model": model or self.model(url)["id"]}))


def _b64_tensor(t: torch.Tensor) -> str:
    buf = io.BytesIO()
    torch.save(t.detach().to("cpu", torch.float32).contiguous(), buf)
    return base64.b64encode(buf.getvalue()).decode()


def _embedding_matrix(path: str) -> torch.Tensor:
    """float32 [vocab, d]: the model's input embeddings, read from its safetensors files alone."""
    from pathlib import Path

    from safetensors import safe_open

    for f in sorted(Path(path).glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():
                if key.endswith(("embed_tokens.weight", "wte.weight", "word_embeddings.weight")):
                    return st.get_tensor(key).float()
    from transformers import AutoModelForCausalLM  # another layout: load the model once

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).get_input_embeddings().weight.detach()


class VLLMBackend:
    """Backend over one or more vLLM OpenAI-compatible servers (see the module docstring).

    Args:
        cfg: ``llm`` (tokenizer, chat template and embeddings are read from its folder), ``vllm_url``
            (None: start a local server from ``vllm_python``), ``vllm_model``, ``vllm_timeout_s``,
            ``vllm_start_timeout_s`` and the local server's ``vllm_*`` keys.
        urls: replicas to use instead of ``cfg.vllm.url``.

    Raises:
        ModelError: the tokenizer cannot be loaded, or the local server does not start.
    """

    name = "vllm"

    def __init__(self, cfg: Config, urls: list[str] | None = None, lora_modules: dict[str, str] | None = None,
                 max_lora_rank: int = 16):
        from transformers import AutoTokenizer

        self.path = llm_path(cfg)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load the tokenizer of LLM {self.path!r}: {e}") from e
        self.server: VLLMServer | None = None
        urls = list(urls or cfg.vllm.url or [])
        if not urls:
            self.server = VLLMServer.from_config(cfg, lora_modules, max_lora_rank)
            urls = [self.server.start(cfg.vllm.start_timeout_s)]
        self.replicas = Replicas(urls, cfg.vllm.timeout_s)
        self.model_name = cfg.vllm.model
        self.soft_mode: str | None = None
        """How soft tokens reached the server: ``"embeds"`` (prompt embeddings), ``"text"`` (the
        server refused them: placeholders dropped, the item's text alone), None (none sent yet)."""
        self._label_ids: dict[str, int] = {}
        self._emb: torch.Tensor | None = None

    # ------------------------------------------------------------------ prompts
    def render(self, messages: Messages) -> str:
        """The chat-templated prompt text, ending where the assistant's answer starts."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(self, text: str) -> list[int]:
        """Token ids of a rendered prompt (no special tokens added: the template has them)."""
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def label_id(self, label: str) -> int:
        """The label's single token id. Raises ModelError when it is not one token."""
        return single_token_id(self.tokenizer, label, self._label_ids)

    @property
    def embeddings(self) -> torch.Tensor:
        """float32 [vocab, d_llm]: the model's input embedding matrix (read on first use)."""
        if self._emb is None:
            self._emb = _embedding_matrix(self.path)
        return self._emb

    def embed(self, text: str, soft_tokens: dict | None = None) -> torch.Tensor:
        """Input embeddings float32 [seq, d_llm] of a rendered prompt, soft tokens spliced in
        (the same pieces and tokenization as ``TransformersBackend.embed``).

        Raises ModelError when a soft-token tensor is not [k, d_llm]."""
        emb = self.embeddings
        pieces = [text]
        if soft_tokens:
            pattern = "(" + "|".join(re.escape(k) for k in soft_tokens) + ")"
            pieces = [p for p in re.split(pattern, text) if p]
        parts = []
        for p in pieces:
            if soft_tokens and p in soft_tokens:
                t = torch.as_tensor(soft_tokens[p], dtype=torch.float32).detach().cpu()
                if t.dim() != 2 or t.shape[1] != emb.shape[1]:
                    raise ModelError(f"soft tokens for {p!r} must be [k, {emb.shape[1]}], got {tuple(t.shape)}")
                parts.append(t)
            else:
                parts.append(emb[torch.tensor(self.encode(p), dtype=torch.long)])
        return torch.cat(parts, 0)

    @staticmethod
    def strip_soft(text: str, soft_tokens: dict) -> str:
        """``text`` with each soft-token placeholder (and one space before it) removed: the text
        fallback, the item's title or text alone."""
        return re.sub(" ?(" + "|".join(re.escape(k) for k in soft_tokens) + ")", "", text)

    @property
    def max_context(self) -> int:
        """The smallest ``max_model_len`` of the replicas seen so far (0: unknown)."""
        lens = [int(m.get("max_model_len") or 0) for m in self.replicas.models.values()]
        lens = [n for n in lens if n > 0]
        return min(lens) if lens else 0

    def _check_length(self, n: int, new_tokens: int = 0) -> None:
        if self.max_context and n + new_tokens > self.max_context:
            raise PromptTooLongError(
                f"prompt is {n} tokens (+{new_tokens} to generate), over the context of {self.max_context} tokens "
                f"of the vLLM server (config vllm_max_model_len): lower history_max or candidates, or shorten item texts")

    def _inputs(self, messages: Messages, soft: dict | None) -> tuple[dict, int]:
        """The request's prompt fields (``prompt`` token ids or ``prompt_embeds``) and its length."""
        text = self.render(messages)
        if soft and self.soft_mode != "text":
            e = self.embed(text, soft)
            return {"prompt_embeds": _b64_tensor(e)}, e.shape[0]
        if soft:
            text = self.strip_soft(text, soft)
        ids = self.encode(text)
        return {"prompt": ids}, len(ids)

    def _complete(self, build, soft: bool, model: str | None = None) -> dict:
        """POST /v1/completions; ``build()`` gives (body, lengths, new tokens). Falls back to text
        once when the server refuses prompt embeddings."""
        body, lengths, new = build()
        if not self.replicas.models:
            self.replicas.call(self.replicas.model)  # learn max_model_len before the first prompt
        for n in lengths:
            self._check_length(n, new)
        try:
            out = self.replicas.post("/v1/completions", body, model or self.model_name)
        except VLLMRequestError as e:
            if soft and "prompt_embeds" in body and "enable-prompt-embeds" in e.message:
                warnings.warn(f"vLLM server {e.url} does not accept prompt embeddings (start it with "
                              "--enable-prompt-embeds): soft tokens fall back to the items' text", stacklevel=3)
                self.soft_mode = "text"
                return self._complete(build, soft)
            if "maximum context length" in e.message:
                raise PromptTooLongError(f"{e} (config vllm_max_model_len)") from None
            raise
        if soft:
            self.soft_mode = self.soft_mode or "embeds"
        return out

    # ------------------------------------------------------------------ calls
    def score_labels(self, messages: Messages, labels: list[str], soft_tokens: dict | None = None) -> np.ndarray:
        """Next-token log-probabilities (natural log, full vocabulary) of each label's single token
        after the prompt: ONE forward pass on the server. Returns float64 [len(labels)].

        Raises:
            ModelError: a label is not a single token, the server's answer lacks a label, or no
                server answers. PromptTooLongError: the prompt exceeds the server's context.
        """
        return self._label_logprobs(lambda: self._inputs(messages, soft_tokens), labels, bool(soft_tokens))

    def score_embeds(self, embeds: torch.Tensor, labels: list[str], model: str | None = None) -> np.ndarray:
        """Like :meth:`score_labels` for a prompt given as its input embeddings float [seq, d_llm]
        (e.g. the trained ranker's, soft tokens included), served by ``model`` (a LoRA adapter's
        name; None: ``vllm_model`` or the base model). Returns float64 [len(labels)].

        Raises ModelError as :meth:`score_labels` does, and when the server refuses prompt embeddings."""
        return self._label_logprobs(lambda: ({"prompt_embeds": _b64_tensor(embeds)}, int(embeds.shape[0])), labels,
                                    False, model)

    def score_ids(self, ids: list[int], labels: list[str], model: str | None = None) -> np.ndarray:
        """Like :meth:`score_embeds` for a prompt given as its token ids (the server can reuse a
        cached prefix). Returns float64 [len(labels)]. Raises ModelError as :meth:`score_labels`."""
        return self._label_logprobs(lambda: ({"prompt": list(ids)}, len(ids)), labels, False, model)

    def _label_logprobs(self, inputs, labels: list[str], soft: bool, model: str | None = None) -> np.ndarray:
        ids = [self.label_id(lab) for lab in labels]

        def build():
            fields, n = inputs()
            return ({**fields, "max_tokens": 1, "temperature": 0, "logprobs": 1, "logprob_token_ids": ids,
                     "allowed_token_ids": sorted(set(ids)), "return_tokens_as_token_ids": True}, [n], 1)

        out = self._complete(build, soft, model)
        try:
            top = out["choices"][0]["logprobs"]["top_logprobs"][0]
            got = {int(k.rsplit(":", 1)[1]): float(v) for k, v in top.items()}
            return np.array([got[i] for i in ids], dtype=np.float64)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise ModelError(f"the vLLM server's answer lacks the label log-probabilities ({e!r}): "
                             f"{json.dumps(out)[:500]}") from None

    def generate(self, prompts: list[Messages], max_tokens: int, soft_tokens: list[dict | None] | None = None) -> list[str]:
        """Greedy completion of each prompt, at most ``max_tokens`` new tokens each (one request
        for the batch), decoded like transformers' (special tokens skipped, stripped).

        Raises ModelError when no server answers; PromptTooLongError for a prompt over the context."""
        if not prompts:
            return []
        soft = list(soft_tokens) if soft_tokens else [None] * len(prompts)
        if len(soft) != len(prompts):
            raise ModelError(f"generate: {len(prompts)} prompts but {len(soft)} soft-token entries")
        any_soft = any(soft)

        def build():
            fields = [self._inputs(m, s) for m, s in zip(prompts, soft, strict=True)]
            body = {"max_tokens": max_tokens, "temperature": 0, "return_token_ids": True}
            if any("prompt_embeds" in f for f, _ in fields):  # one kind per request: embed them all
                body["prompt_embeds"] = [f.get("prompt_embeds") or _b64_tensor(self.embeddings[torch.tensor(f["prompt"])])
                                         for f, _ in fields]
            else:
                body["prompt"] = [f["prompt"] for f, _ in fields]
            return body, [n for _, n in fields], max_tokens

        out = self._complete(build, any_soft)
        texts = [""] * len(prompts)
        for ch in out.get("choices", []):
            ids = ch.get("token_ids")
            texts[ch["index"]] = (self.tokenizer.decode(ids, skip_special_tokens=True) if ids is not None
                                  else ch.get("text", "")).strip()
        return texts

    def close(self) -> None:
        """Stop the local server, if this backend started one."""
        if self.server is not None:
            self.server.stop()
