"""Transformers backend: the LLM in-process (CPU or one GPU)."""

from __future__ import annotations

import re

import numpy as np
import torch

from llmrec.config import Config
from llmrec.encoders.locations import llm_path
from llmrec.encoders.text import apply_threads, resolve_device
from llmrec.errors import ModelError, PromptTooLongError
from llmrec.llm.base import Messages, single_token_id


class TransformersBackend:
    """Backend over ``AutoModelForCausalLM`` (float32 on CPU, bfloat16 on CUDA)."""

    name = "transformers"

    def __init__(self, cfg: Config):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = llm_path(cfg)
        apply_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError, RuntimeError) as e:  # missing, not a model, or incomplete folder
            raise ModelError(f"cannot load LLM {self.path!r}: {e}") from e
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._label_ids: dict[str, int] = {}
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        """Positions the model was trained for (0: unknown, not checked)."""

    def _check_length(self, n: int, new_tokens: int = 0) -> None:
        """Raises PromptTooLongError when ``n`` prompt tokens (+ ``new_tokens``) exceed the context."""
        if self.max_context and n + new_tokens > self.max_context:
            raise PromptTooLongError(
                f"prompt is {n} tokens (+{new_tokens} to generate), over the context of {self.max_context} "
                f"tokens of LLM {self.path!r}: lower history_max or candidates, or shorten item texts")

    # ------------------------------------------------------------------ prompts
    def render(self, messages: Messages) -> str:
        """The chat-templated prompt text, ending where the assistant's answer starts."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def label_id(self, label: str) -> int:
        """The label's single token id. Raises ModelError when it is not one token."""
        return single_token_id(self.tokenizer, label, self._label_ids)

    def embed(self, text: str, soft_tokens: dict | None = None) -> torch.Tensor:
        """Input embeddings [seq, d_llm] of a rendered prompt, soft tokens spliced in."""
        emb = self.model.get_input_embeddings()
        pieces = [text]
        if soft_tokens:
            pattern = "(" + "|".join(re.escape(k) for k in soft_tokens) + ")"
            pieces = [p for p in re.split(pattern, text) if p]
        parts = []
        for p in pieces:
            if soft_tokens and p in soft_tokens:
                t = torch.as_tensor(soft_tokens[p], dtype=emb.weight.dtype, device=self.device)
                if t.dim() != 2 or t.shape[1] != emb.weight.shape[1]:
                    raise ModelError(f"soft tokens for {p!r} must be [k, {emb.weight.shape[1]}], got {tuple(t.shape)}")
                parts.append(t)
            else:
                ids = self.tokenizer(p, add_special_tokens=False, return_tensors="pt").input_ids[0].to(self.device)
                parts.append(emb(ids))
        return torch.cat(parts, 0)

    # ------------------------------------------------------------------ calls
    @torch.no_grad()
    def next_token_logits(self, messages: Messages, soft_tokens: dict | None = None) -> torch.Tensor:
        """Logits [vocab] of the token after the prompt (one forward pass)."""
        text = self.render(messages)
        if soft_tokens:
            e = self.embed(text, soft_tokens)
            self._check_length(e.shape[0])
            out = self.model(inputs_embeds=e[None], logits_to_keep=1)
        else:
            ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids.to(self.device)
            self._check_length(ids.shape[1])
            out = self.model(input_ids=ids, logits_to_keep=1)
        return out.logits[0, -1].float()

    def score_labels(self, messages: Messages, labels: list[str], soft_tokens: dict | None = None) -> np.ndarray:
        ids = [self.label_id(lab) for lab in labels]
        logprobs = torch.log_softmax(self.next_token_logits(messages, soft_tokens).double(), -1)
        return logprobs[ids].cpu().numpy()

    @torch.no_grad()
    def generate(self, prompts: list[Messages], max_tokens: int, soft_tokens: list[dict | None] | None = None) -> list[str]:
        if not prompts:
            return []
        tok = self.tokenizer
        kw = dict(max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        if soft_tokens and any(soft_tokens):
            outs = []
            for msgs, soft in zip(prompts, soft_tokens, strict=True):
                e = self.embed(self.render(msgs), soft)[None]
                self._check_length(e.shape[1], max_tokens)
                gen = self.model.generate(inputs_embeds=e, attention_mask=torch.ones(e.shape[:2], dtype=torch.long), **kw)
                outs.append(tok.decode(gen[0], skip_special_tokens=True).strip())
            return outs
        tok.padding_side = "left"
        batch = tok([self.render(m) for m in prompts], add_special_tokens=False, return_tensors="pt", padding=True)
        self._check_length(batch.input_ids.shape[1], max_tokens)
        batch = batch.to(self.device)
        gen = self.model.generate(**batch, **kw)
        new = gen[:, batch.input_ids.shape[1]:]
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]


def zero_shot_ranker(cfg: Config):
    """The base LLM in-process with the trained ranker's prompt (titles only): a
    :class:`~llmrec.rank.model.RankerModel` without adapter or soft tokens, in eval mode (the
    ``transformers`` entry of :data:`llmrec.llm.base.BACKENDS`). Raises ModelError when the LLM
    cannot be loaded."""
    from llmrec.rank import checkpoint as ckpt
    from llmrec.rank.model import RankerModel

    llm, tok = ckpt.load_base(cfg)
    return RankerModel(llm, tok).eval()


def load_ranker(folder, cfg: Config, retriever: dict | None = None):
    """A trained ranker checkpoint in-process, LoRA merged (:func:`llmrec.rank.checkpoint.load`)."""
    from llmrec.rank import checkpoint as ckpt

    return ckpt.load(folder, cfg, retriever=retriever)
