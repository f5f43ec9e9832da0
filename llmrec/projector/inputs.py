"""What a modality projector reads: the item's modality vector, optionally followed by the text
encoder's vector of the item's fallback text (config ``projector_text_input``).

An ImageNet backbone's poster vector does not name the film; the poster's OCR text often does (its
caption, made at ingest). With ``projector_text_input`` the projector input of an image is
``[image vector (d_image) ; text_encoder(caption) (d_text)]``, of an audio clip ``[audio vector ;
text_encoder(transcript)]``; an item with no such text gets zeros in the text part. The encoder id
the checkpoint records becomes ``{encoder}+text:{text encoder}``, so a projector trained one way is
refused the other way (:class:`~llmrec.projector.checkpoint.ProjectorMismatchError`).
"""

from __future__ import annotations

import numpy as np

from llmrec.config import Config

TEXT_KEY = {"image": "caption", "audio": "transcript"}
"""The metadata key of each modality's fallback text in its ``items_{modality}`` collection."""


def encoder_id(cfg: Config, encoder: str) -> str:
    """The id of the projector's input: the modality encoder's, plus the text encoder's when used."""
    return f"{encoder}+text:{cfg.text_encoder}" if cfg.projector.text_input else encoder


def projector_inputs(cfg: Config, modality: str, vectors: np.ndarray, metas: list[dict]) -> np.ndarray:
    """float32 [N, d] (``projector_text_input`` off) or [N, d + d_text]: the store's ``modality``
    vectors [N, d], then the text encoder's L2-normalised vector of each item's fallback text
    (``metas[n][TEXT_KEY[modality]]``; zeros when empty). Raises ModelError when the text encoder
    cannot be loaded."""
    V = np.asarray(vectors, dtype=np.float32)
    if not cfg.projector.text_input:
        return V
    from llmrec.encoders.text import TextEncoder

    texts = [str((m or {}).get(TEXT_KEY[modality]) or "").strip() for m in metas]
    enc = TextEncoder(cfg)
    T = np.zeros((len(texts), enc.dim), dtype=np.float32)
    have = [n for n, t in enumerate(texts) if t]
    if have:
        T[have] = enc.encode([texts[n] for n in have])
    return np.concatenate([V, T], axis=1)
