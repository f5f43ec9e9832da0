"""The trained ranker (a ``llmrec train-ranker`` checkpoint) served by vLLM.

The checkpoint's LoRA adapter is served by the vLLM server (``--enable-lora --lora-modules
ranker=CHECKPOINT/adapter``; the local server gets it); the prompt, with its collaborative soft
tokens (the checkpoint's projector over its item vectors), is built here exactly as
:meth:`llmrec.rank.model.RankerModel.embeds` builds it and sent as prompt embeddings. The LoRA
adapter changes only the attention and MLP projections (``llmrec.rank.train.LORA_TARGETS``), so the
base model's input embeddings are the merged model's.

:func:`load` has the signature of :func:`llmrec.rank.checkpoint.load` and its result answers the
same ``score(batch)`` and ``manifest`` as the :class:`~llmrec.rank.model.RankerModel` it returns.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from llmrec.errors import ModelError
from llmrec.rank.model import RankerModel
from llmrec.rank.verbalizer import LABELS

LORA_NAME = "ranker"
"""The adapter's name on the server (``--lora-modules ranker=...``)."""


class _InputEmbeddings(torch.nn.Module):
    """Stands in for the LLM where only its input embeddings are needed (the prompt's embeddings)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.emb = torch.nn.Embedding.from_pretrained(weight, freeze=True)

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.emb


class VLLMRanker:
    """A trained ranker whose LLM (+ LoRA adapter ``lora``) runs on a vLLM server.

    Args:
        backend: a :class:`~llmrec.llm.vllm.VLLMBackend` (tokenizer, embeddings, replicas).
        lora: the adapter's name on the server (None: the base model).
        projector, vectors, index, manifest: as in :class:`~llmrec.rank.model.RankerModel`.
    """

    def __init__(self, backend, lora: str | None, projector=None, vectors: np.ndarray | None = None,
                 index: dict[str, int] | None = None, manifest: dict | None = None):
        self.backend, self.lora = backend, lora
        self.prompts = RankerModel(_InputEmbeddings(backend.embeddings), backend.tokenizer, projector, vectors, index)
        self.manifest = dict(manifest or {})

    @property
    def soft(self) -> bool:
        return self.prompts.soft

    @torch.no_grad()
    def score(self, batch) -> np.ndarray:
        """float64 [B, n]: log-softmax over the n candidate labels of each (history, candidates) pair
        (one server forward pass each, the batch's requests sent concurrently), as
        :meth:`RankerModel.score`. Prompts with soft tokens go as prompt embeddings, others as token ids.

        Raises ValueError for a batch with two candidate counts; ModelError when no server answers."""
        n = {len(c) for _, c in batch}
        if len(n) != 1:
            raise ValueError(f"a batch must have one candidate count, got {sorted(n)}")
        labels = list(LABELS[: n.pop()])

        # Prompts are built here (the tokenizer in one thread), then sent together so that the
        # server batches them (continuous batching).
        if self.soft:  # prompt embeddings (soft tokens spliced in)
            inputs = [self.prompts.embeds(h, c) for h, c in batch]
            call = self.backend.score_embeds
        else:  # token ids: smaller requests, and the server may reuse a cached prefix
            inputs = [self.prompts.token_ids(h, c) for h, c in batch]
            call = self.backend.score_ids

        def one(x) -> np.ndarray:
            lp = call(x, labels, self.lora)
            return lp - np.logaddexp.reduce(lp)

        with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
            return np.stack(list(pool.map(one, inputs)))

    def close(self) -> None:
        """Stop the local vLLM server, if the backend started one."""
        self.backend.close()


def zero_shot(cfg) -> VLLMRanker:
    """The base LLM with the trained ranker's prompt (titles only) on vLLM: ``vllm_url``, or a local
    server. Raises ModelError when no server starts or answers."""
    from llmrec.llm.vllm import VLLMBackend

    return VLLMRanker(VLLMBackend(cfg), None)


def load(folder: str | Path, cfg, retriever: dict | None = None) -> VLLMRanker:
    """The trained ranker of a checkpoint on vLLM: ``vllm_url`` (whose servers must serve the adapter
    as ``ranker``: ``--enable-lora --max-lora-rank R --lora-modules ranker=FOLDER/adapter``), or a local
    server started with it.

    Raises:
        ModelError: missing or damaged checkpoint files, or no server.
        RankerMismatchError: the base model, template (or retriever) differs from the checkpoint's.
    """
    from llmrec.llm.projector import Projector
    from llmrec.llm.vllm import VLLMBackend
    from llmrec.rank import checkpoint as ckpt
    from llmrec.rank.model import template_hash

    folder = Path(folder)
    man = ckpt.read_manifest(folder)
    expected = {"base_model": ckpt.base_identity(cfg), "template": template_hash()}
    if retriever is not None:
        expected["retriever"] = retriever
    ckpt.check(man, expected, folder)
    adapter = folder / "adapter"
    try:
        rank = int(json.loads((adapter / "adapter_config.json").read_text())["r"])
        ids = json.loads((folder / "item_ids.json").read_text())
        projector = vectors = None
        if man.get("soft_tokens"):
            projector = Projector.from_state(torch.load(folder / "projector.pt", weights_only=False)).eval()
            vectors = np.load(folder / "item_vectors.npy")
            if vectors.shape[0] != len(ids):
                raise ValueError(f"item_vectors.npy has {vectors.shape[0]} rows for {len(ids)} item ids")
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as e:
        raise ModelError(f"ranker checkpoint {folder} is damaged: {e}") from e
    max_rank = next((r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= rank), rank)  # vLLM's sizes
    backend = VLLMBackend(cfg, lora_modules={LORA_NAME: str(adapter)}, max_lora_rank=max_rank)
    return VLLMRanker(backend, LORA_NAME, projector, vectors, {i: n for n, i in enumerate(ids)}, man)
