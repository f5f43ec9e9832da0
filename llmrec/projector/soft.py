"""Soft tokens of a store's items for the ranking prompt: each item's image (or audio) vector through
the store's trained projector (``llmrec train-projector``), keyed by the item's slot placeholder
(:func:`llmrec.rank.verbalizer.soft_slot`)."""

from __future__ import annotations

import torch

from llmrec.config import Config
from llmrec.data.types import Item
from llmrec.errors import ModelError, StoreError
from llmrec.rank.verbalizer import soft_slot


class SoftTokens:
    """One modality's soft tokens for a store.

    Args:
        cfg: the config (store, projector folder, base LLM).
        modality: ``image`` or ``audio``.

    Raises:
        StoreError: the store holds no vectors of that modality, or they come from several encoders.
        ModelError: no projector checkpoint (run ``llmrec train-projector``), or a damaged one.
        ProjectorMismatchError: the checkpoint belongs to another encoder, base LLM or prompt.
    """

    def __init__(self, cfg: Config, modality: str):
        from llmrec.projector import checkpoint
        from llmrec.store import ItemStore

        self.modality = modality
        ids, V, metas = ItemStore(cfg.store_dir(), kind=modality, host=cfg.chroma.host, port=cfg.chroma.port).matrix()
        if not ids:
            raise StoreError(f"ranker_modalities names {modality!r} but the store {cfg.store_dir()} holds no "
                             f"{modality} vectors")
        encoders = sorted({str(m.get("encoder")) for m in metas})
        if len(encoders) != 1:
            raise StoreError(f"the store's {modality} vectors come from several encoders ({', '.join(encoders)})")
        folder = cfg.projector_path(modality)
        if not (folder / "manifest.json").exists():
            raise ModelError(f"ranker_modalities names {modality!r} but there is no projector at {folder}: "
                             f"run llmrec train-projector --modality {modality}")
        from llmrec.projector.inputs import encoder_id, projector_inputs

        self.projector = checkpoint.load(folder, checkpoint.identity(cfg, modality, encoder_id(cfg, encoders[0])))
        self.index = {i: n for n, i in enumerate(ids)}
        self.vectors = projector_inputs(cfg, modality, V, metas)

    @torch.no_grad()
    def tokens(self, items: list[Item]) -> dict[str, torch.Tensor]:
        """``{soft_slot(item.id, modality): float32 [k, d_llm]}`` for the items that have a vector."""
        have = list(dict.fromkeys(it.id for it in items if it.id in self.index))
        if not have:
            return {}
        out = self.projector(torch.as_tensor(self.vectors[[self.index[i] for i in have]]))
        return {soft_slot(i, self.modality): out[n] for n, i in enumerate(have)}
