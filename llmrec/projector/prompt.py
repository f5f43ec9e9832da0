"""The alignment prompt (``prompts/describe.*.txt``) and the splicing of soft tokens into it.

LLaVA stage 1 (Liu et al., "Visual Instruction Tuning", NeurIPS 2023): with the encoder and the
LLM frozen, only the projector is trained so that the LLM, given an item's soft tokens, writes the
item's text. The prompt holds one soft-token slot (:data:`SLOT`) where the projector's ``k`` vectors
go; no item text appears in the prompt, only in the answer (the training target).
"""

from __future__ import annotations

import copy
import hashlib
import json

import torch

from llmrec.rank.prompts import _template, quote, render

TEMPLATE = "describe"
SLOT = "<|soft|>"
"""Placeholder of the soft tokens in the rendered prompt (item text is quoted and can never spell it)."""
TARGET_CHARS = 160
"""Longest answer trained on (the item's quoted text is cut there)."""


def messages(modality: str):
    """Chat messages of the alignment prompt for one item of ``modality`` (``image``, ``audio``)."""
    return render(TEMPLATE, modality=modality, slot=SLOT)


def target_text(title: str, text: str = "") -> str:
    """What the LLM is trained to write: ``Title. Description`` (quoting rules of ``quote``, without
    the surrounding JSON quotes), at most :data:`TARGET_CHARS` characters."""
    s = f"{title}. {text}".strip() if text else title
    return json.loads(quote(s, TARGET_CHARS))


def template_hash() -> str:
    """sha256 (16 hex) of the prompt files, the slot and the answer format."""
    h = hashlib.sha256()
    for part in ("system", "user"):
        h.update(_template(f"{TEMPLATE}.{part}.txt").encode())
    h.update(f"|{SLOT}|{TARGET_CHARS}|{target_text('Alien, The (1979)', 'Genres: Horror <x> ' + 'é' * 200)}".encode())
    return h.hexdigest()[:16]


class Splicer:
    """Builds input embeddings of ``prompt + answer`` with soft tokens in the slot.

    Args:
        llm: a causal LM (frozen). tokenizer: its tokenizer. modality: the prompt's modality word.
    """

    def __init__(self, llm, tokenizer, modality: str):
        self.llm, self.tok = llm, tokenizer
        text = tokenizer.apply_chat_template(messages(modality), add_generation_prompt=True, tokenize=False)
        if text.count(SLOT) != 1:
            raise ValueError(f"the {TEMPLATE} prompt must hold the slot {SLOT!r} exactly once")
        before, after = text.split(SLOT)
        self.before = self._ids(before)
        self.after = self._ids(after)
        end = tokenizer.eos_token or ""
        self.end = self._ids(tokenizer.convert_tokens_to_string([end]) if end else "")

    def _ids(self, s: str) -> torch.Tensor:
        return self.tok(s, add_special_tokens=False, return_tensors="pt").input_ids[0]

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def answer_ids(self, answer: str, end: bool = True) -> torch.Tensor:
        """Token ids [m] of an answer, followed by the end-of-turn token when ``end``."""
        ids = self._ids(answer)
        return torch.cat([ids, self.end]) if end else ids

    @torch.no_grad()
    def _prefix(self):
        """The key/value cache of the prompt before the slot (the same for every item; computed once)."""
        if getattr(self, "_cache", None) is None:
            out = self.llm(input_ids=self.before[None].to(self.device), use_cache=True)
            self._cache = out.past_key_values
        return self._cache

    def batch(self, soft: torch.Tensor, answers: list[torch.Tensor]):
        """One right-padded batch of what follows the cached prefix: soft tokens, the rest of the
        prompt, the answer.

        Args:
            soft: float [B, k, d_llm], the projector's output (differentiable).
            answers: B token-id tensors (``answer_ids``).

        Returns ``(inputs_embeds [B, L, d], attention_mask [B, L], labels [B, L])``: labels are -100
        except on the answer tokens (predicted from the position before each)."""
        emb = self.llm.get_input_embeddings()
        dev = self.device
        post = emb(self.after.to(dev))
        rows, labels = [], []
        for b, ans in enumerate(answers):
            a = ans.to(dev)
            x = torch.cat([soft[b].to(post.dtype), post, emb(a)], 0)
            y = torch.full((x.shape[0],), -100, dtype=torch.long, device=dev)
            y[x.shape[0] - len(a):] = a
            rows.append(x)
            labels.append(y)
        L = max(r.shape[0] for r in rows)
        d = rows[0].shape[1]
        X = rows[0].new_zeros(len(rows), L, d)
        M = torch.zeros(len(rows), L, dtype=torch.long, device=dev)
        Y = torch.full((len(rows), L), -100, dtype=torch.long, device=dev)
        for b, (x, y) in enumerate(zip(rows, labels, strict=True)):
            X[b, :len(x)], M[b, :len(x)], Y[b, :len(y)] = x, 1, y
        return X, M, Y

    def logits(self, X: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        """Logits [B, L, vocab] of the batch ``(X, M)`` of :meth:`batch` after the cached prefix."""
        B, P = X.shape[0], len(self.before)
        cache = copy.deepcopy(self._prefix())
        cache.batch_repeat_interleave(B)
        mask = torch.cat([torch.ones(B, P, dtype=M.dtype, device=M.device), M], 1)
        pos = torch.arange(P, P + X.shape[1], device=X.device)[None].expand(B, -1)
        return self.llm(inputs_embeds=X, attention_mask=mask, position_ids=pos, past_key_values=cache,
                        use_cache=True).logits

    def answer_logprobs(self, soft: torch.Tensor, answers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sums [B], counts [B])``: summed log-probability of each answer's tokens given its soft
        tokens, and the number of answer tokens."""
        X, M, Y = self.batch(soft, answers)
        logits = self.logits(X, M)[:, :-1].float()
        tgt = Y[:, 1:]
        lp = torch.log_softmax(logits, -1).gather(-1, tgt.clamp(min=0)[..., None])[..., 0]
        mask = (tgt != -100).float()
        return (lp * mask).sum(1), mask.sum(1)
