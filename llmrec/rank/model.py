"""The trainable verbalizer ranker: the LLM (+ LoRA adapter) reads a compact prompt in which each
history and candidate item is its quoted title followed, optionally, by ``k`` collaborative soft
tokens (the retriever's item vector through :class:`llmrec.llm.projector.Projector`, LLaRA's hybrid
item representation); the logits of the candidate labels at the answer position score the
candidates (ONE forward pass, only the last position's logits computed).

Prompt: ``prompts/rank_trained.*.txt``. A soft-token slot is the placeholder :data:`SOFT` in the
rendered text; item text is quoted (``llmrec.rank.prompts.quote``), which neutralises angle
brackets, so item text can never produce a placeholder.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from llmrec.data.types import Item
from llmrec.rank.prompts import _template, quote, render
from llmrec.rank.verbalizer import LABELS

TEMPLATE = "rank_trained"
SOFT = "<|soft|>"
TITLE_CHARS = 60
ITEM_FORMAT = 1
"""Version of :func:`item_line`'s format; part of the template hash."""
QUOTE_PROBE = 'Alien, The (1979) "x" \\ <|im_start|>assistant</data> [INST] \u202e\u200b\n\tend ' + "é" * 70
"""Tricky item text whose quoting (:func:`llmrec.rank.prompts.quote`) is part of the template hash: a
change in how untrusted text is quoted changes the prompts a checkpoint was trained on."""


def template_hash() -> str:
    """sha256 (16 hex) of the prompt template files, the item-line format, the soft placeholder and
    the quoting of :data:`QUOTE_PROBE`."""
    h = hashlib.sha256()
    for part in ("system", "user"):
        h.update(_template(f"{TEMPLATE}.{part}.txt").encode())
    h.update(f"|{ITEM_FORMAT}|{TITLE_CHARS}|{SOFT}|{quote(QUOTE_PROBE, TITLE_CHARS)}".encode())
    return h.hexdigest()[:16]


def item_line(item: Item, soft: bool) -> str:
    """The quoted title (at most 60 characters), then the soft-token slot when ``soft``."""
    return quote(item.title, TITLE_CHARS) + (f" {SOFT}" if soft else "")


def prompt(history: list[Item], candidates: list[Item], soft: bool):
    """Chat messages of the trained ranker's prompt; candidates labelled A, B, ... in the given order.

    Raises ValueError for 0 or more than 26 candidates."""
    if not 1 <= len(candidates) <= len(LABELS):
        raise ValueError(f"between 1 and {len(LABELS)} candidates can be labelled, got {len(candidates)}")
    hist = "\n".join(item_line(it, soft) for it in history) or "(no history)"
    cands = "\n".join(f"{LABELS[i]}. {item_line(it, soft)}" for i, it in enumerate(candidates))
    return render(TEMPLATE, history=hist, candidates=cands, first=LABELS[0], last=LABELS[len(candidates) - 1])


class RankerModel(torch.nn.Module):
    """LLM (with or without a peft adapter) + optional projector + the items' soft-token input vectors.

    Args:
        llm: a causal LM (``transformers`` or ``peft`` model). tokenizer: its tokenizer.
        projector: a :class:`~llmrec.llm.projector.Projector`, or None (titles only).
        vectors: float32 [N, d] projector inputs, row ``index[item_id]``; unknown items get zeros.
        index: item id -> row of ``vectors``.
    """

    def __init__(self, llm, tokenizer, projector=None, vectors: np.ndarray | None = None,
                 index: dict[str, int] | None = None):
        super().__init__()
        self.llm, self.tokenizer, self.projector = llm, tokenizer, projector
        if projector is not None and (vectors is None or index is None):
            raise ValueError("a projector needs the item vectors and their index")
        device = llm.get_input_embeddings().weight.device
        self.register_buffer("vectors", torch.as_tensor(vectors if vectors is not None else np.zeros((0, 1)),
                                                        dtype=torch.float32, device=device), persistent=False)
        self.index = dict(index or {})
        self.label_ids = [self._single_token(c) for c in LABELS]
        self._piece_cache: dict[str, torch.Tensor] = {}

    @property
    def soft(self) -> bool:
        return self.projector is not None

    def _single_token(self, label: str) -> int:
        ids = self.tokenizer.encode(label, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"label {label!r} is {len(ids)} tokens for this tokenizer; labels must be one token")
        return ids[0]

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    def _tokenize(self, text: str) -> torch.Tensor:
        return self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0]

    def _ids(self, piece: str) -> torch.Tensor:
        """Token ids of a piece between soft-token slots (cached: the same titles recur)."""
        if piece not in self._piece_cache:
            if len(self._piece_cache) > 50_000:
                self._piece_cache.clear()
            self._piece_cache[piece] = self._tokenize(piece)
        return self._piece_cache[piece]

    def text(self, history: list[Item], candidates: list[Item]) -> str:
        """The chat-templated prompt, ending where the answer starts (soft-token placeholders in it
        when :attr:`soft`)."""
        return self.tokenizer.apply_chat_template(prompt(history, candidates, self.soft),
                                                  add_generation_prompt=True, tokenize=False)

    def token_ids(self, history: list[Item], candidates: list[Item]) -> list[int]:
        """The prompt's token ids (the tokens :meth:`embeds` embeds). Raises ValueError for a ranker
        with soft tokens (its prompt is not all tokens)."""
        if self.soft:
            raise ValueError("a prompt with soft tokens has no token-id form; use embeds()")
        return self._tokenize(self.text(history, candidates)).tolist()

    def embeds(self, history: list[Item], candidates: list[Item]) -> torch.Tensor:
        """Input embeddings [seq, d_llm] of one prompt, soft tokens spliced in (differentiable
        through the projector)."""
        text = self.text(history, candidates)
        emb = self.llm.get_input_embeddings()
        if not self.soft:  # a whole prompt is unique per user and order: not worth caching
            return emb(self._tokenize(text).to(self.device))
        pieces = text.split(SOFT)
        ids = [self._ids(p) for p in pieces]
        tok = emb(torch.cat(ids).to(self.device))
        items = history + candidates  # one slot per item, in prompt order
        if len(items) != len(pieces) - 1:
            raise RuntimeError(f"prompt has {len(pieces) - 1} soft-token slots for {len(items)} items")
        rows = torch.tensor([self.index.get(it.id, -1) for it in items], device=self.device)
        vec = torch.zeros(len(items), self.vectors.shape[1], device=self.device)
        known = rows >= 0
        vec[known] = self.vectors[rows[known]]
        soft = self.projector(vec).to(tok.dtype)  # [items, k, d]
        out, at = [], 0
        for n, t in enumerate(ids):
            out.append(tok[at:at + len(t)])
            at += len(t)
            if n < len(items):
                out.append(soft[n])
        return torch.cat(out, 0)

    def label_logits(self, batch: list[tuple[list[Item], list[Item]]]) -> torch.Tensor:
        """Logits [B, n] of the n candidate labels at the answer position (one forward pass of the
        left-padded batch; every prompt of a batch must have the same number of candidates)."""
        n = {len(c) for _, c in batch}
        if len(n) != 1:
            raise ValueError(f"a batch must have one candidate count, got {sorted(n)}")
        es = [self.embeds(h, c) for h, c in batch]
        L = max(e.shape[0] for e in es)
        d = es[0].shape[1]
        x = es[0].new_zeros(len(es), L, d)
        mask = torch.zeros(len(es), L, dtype=torch.long, device=self.device)
        for b, e in enumerate(es):
            x[b, L - e.shape[0]:] = e
            mask[b, L - e.shape[0]:] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.llm(inputs_embeds=x, attention_mask=mask, position_ids=pos, logits_to_keep=1)
        return out.logits[:, -1, self.label_ids[:n.pop()]].float()

    @torch.no_grad()
    def score(self, batch: list[tuple[list[Item], list[Item]]]) -> np.ndarray:
        """float64 [B, n]: log-softmax over the candidate labels (higher = better)."""
        was = self.training
        self.eval()
        try:
            return torch.log_softmax(self.label_logits(batch).double(), -1).cpu().numpy()
        finally:
            self.train(was)
