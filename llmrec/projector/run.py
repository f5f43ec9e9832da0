"""``llmrec train-projector`` on a store: its ``items_{modality}`` vectors and its items' texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmrec.config import Config
from llmrec.errors import ConfigError, StoreError

MODALITIES = ("image", "audio")


def store_examples(cfg: Config, modality: str) -> tuple[list[str], np.ndarray, list[str], list[str], str]:
    """``(item ids, projector inputs float32 [N, d], titles, texts, input id)`` of the store's ``modality``
    items (:mod:`llmrec.projector.inputs`: the vectors, with ``projector_text_input`` followed by their
    fallback text's vector; the input id names both encoders then).

    The answer text is the item's description (``text``); for audio, the transcript when the item has
    one and no description.

    Raises:
        ConfigError: an unknown modality.
        StoreError: the store has no vectors of that modality, or they come from several encoders.
    """
    from llmrec.store import ItemStore

    if modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    path, host = cfg.store_dir(), cfg.chroma.host
    ids, V, metas = ItemStore(path, kind=modality, host=host, port=cfg.chroma.port).matrix()
    if not ids:
        raise StoreError(f"the store {path} holds no {modality} vectors: ingest with --{'images' if modality == 'image' else 'audio'}")
    encoders = sorted({str(m.get("encoder")) for m in metas})
    if len(encoders) != 1:
        raise StoreError(f"the store's {modality} vectors come from several encoders ({', '.join(encoders)}): "
                         "re-ingest them with one")
    text = ItemStore(path, kind="text", host=host, port=cfg.chroma.port).metadata(ids)
    titles = [text.get(i, {}).get("title", i) for i in ids]
    texts = []
    for i in ids:
        m = text.get(i, {})
        t = m.get("text", "") or ""
        if modality == "audio" and not t:
            t = m.get("transcript", "") or ""
        texts.append(t)
    from llmrec.projector.inputs import encoder_id, projector_inputs

    return ids, projector_inputs(cfg, modality, V, metas), titles, texts, encoder_id(cfg, encoders[0])


def train_projector(cfg: Config, modality: str = "image", out: str | Path | None = None, log=print) -> dict:
    """Train the store's ``modality`` projector (:mod:`llmrec.projector.train`) and write its checkpoint to
    ``out`` (default ``cfg.projector_path(modality)``). Returns the manifest.

    Raises ConfigError (bad ``projector_*`` keys, modality), StoreError (no vectors), ModelError (LLM)."""
    import torch

    from llmrec.projector import checkpoint
    from llmrec.projector.train import params_from, train
    from llmrec.rank.checkpoint import load_base

    p = params_from(cfg)
    ids, V, titles, texts, encoder = store_examples(cfg, modality)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    llm, tok = load_base(cfg)
    ident = checkpoint.identity(cfg, modality, encoder)
    log(f"train-projector: {len(ids)} {modality} vectors [{V.shape[1]}] from {encoder}")
    model, report = train(llm, tok, V, titles, texts, modality, p, log=log)
    folder = checkpoint.save(Path(out) if out else cfg.projector_path(modality), model, ident, report)
    log(f"projector checkpoint: {folder}")
    return checkpoint.read_manifest(folder)
