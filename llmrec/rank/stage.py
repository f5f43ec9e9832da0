"""The ranking stage of the :class:`~llmrec.recommender.Recommender`: the LLM backend (loaded on first
use), the zero-shot verbalizer ranking (with soft tokens for images and audio where configured, less
history when a prompt is over the LLM's context) and the store's trained ranker fused with the
retriever. A mixin over a :class:`~llmrec.store.view.StoreView` and its retrieval stage (``cfg``,
``items``, ``index``, ``manifest``)."""

from __future__ import annotations

import numpy as np

from llmrec.data.types import Item
from llmrec.errors import ModelError, PromptTooLongError
from llmrec.rank.fuse import fuse
from llmrec.rank.verbalizer import Ranking, verbalizer_rank


class RankStage:
    """The LLM ranking of candidates (see the module docstring)."""

    _backend = None

    @property
    def backend(self):
        if self._backend is None:
            from llmrec.llm.base import make_backend

            self._backend = make_backend(self.cfg)
        return self._backend

    def soft_tokens(self, items: list[Item]) -> dict:
        """Soft tokens of ``items`` for the zero-shot prompt, one entry per item and ``ranker_modalities``
        modality it has a vector of (:class:`~llmrec.projector.soft.SoftTokens`, loaded on first use).

        Raises StoreError / ModelError / ProjectorMismatchError as ``SoftTokens`` does."""
        if not self.cfg.rank.modalities:
            return {}
        if getattr(self, "_soft", None) is None:
            from llmrec.projector.soft import SoftTokens

            self._soft = [SoftTokens(self.cfg, m) for m in self.cfg.rank.modalities]
        out: dict = {}
        for source in self._soft:
            out.update(source.tokens(items))
        return out

    @property
    def trained_ranker(self):
        """The store's trained ranker (:class:`~llmrec.rank.model.RankerModel`; with ``llm_backend: vllm``
        a :class:`~llmrec.llm.vllm_ranker.VLLMRanker`, its LoRA adapter on the vLLM server), loaded on first use;
        None when ``ranker`` is ``zero-shot``, or ``auto`` without a checkpoint.

        Raises:
            RankerMismatchError: the checkpoint was trained for another base model, prompt template
                or retriever (each difference named).
            ModelError: ``ranker`` is ``trained`` and there is no checkpoint, or it is damaged, or
                ``chroma_host`` is set without ``ranker_dir`` (with ``auto`` that means zero-shot)."""
        if not hasattr(self, "_trained"):
            from llmrec.llm.base import load_ranker
            from llmrec.rank.store import ranker_path, retriever_identity

            folder = ranker_path(self.cfg)
            local_only = bool(self.cfg.chroma.host) and not self.cfg.rank.dir  # see _load_retriever
            if self.cfg.ranker == "trained" and local_only:
                raise ModelError("ranker is 'trained' with chroma_host set: set ranker_dir to the checkpoint folder "
                                 f"deployed to every replica (the local {folder} is not shared)")
            if self.cfg.ranker == "zero-shot" or (self.cfg.ranker == "auto" and (
                    local_only or not (folder / "manifest.json").exists())):
                self._trained = None
            else:  # on cfg.llm_backend: in-process, or (vllm) the adapter served, the prompt built here
                self._trained = load_ranker(folder, self.cfg, retriever=retriever_identity(self.cfg, self.manifest))
        return self._trained

    def _rank_trained(self, model, hist: list[str], cands: list[Item], rscores: np.ndarray) -> Ranking:
        """Order by the trained ranker fused with the retriever (the checkpoint's validation weight)."""
        n = self.cfg.rank.history
        shown = [self.items[self.index[i]] for i in hist[-n:]] if n else []
        lp = model.score([(shown, cands)])[0]
        w = (model.manifest.get("fusion") or {}).get("weight")
        final = lp if w is None or len(cands) < 2 else fuse(lp, np.asarray(rscores, dtype=np.float64), w)
        return Ranking(sorted(range(len(cands)), key=lambda i: (-final[i], i)), lp)

    def _rank_zero_shot(self, shown: list[Item], cands: list[Item]) -> tuple[Ranking, list[Item], dict]:
        """The verbalizer ranking of ``cands`` (with soft tokens where configured); a prompt over the LLM's
        context shows less history (the most recent kept). Returns (ranking, history shown, soft tokens)."""
        soft = self.soft_tokens(shown + cands)
        while True:
            try:
                return verbalizer_rank(self.backend, shown, cands, soft), shown, soft
            except PromptTooLongError:
                if len(shown) <= 1:
                    raise
                shown = shown[len(shown) // 2:]
