"""Text encoder: sentence-transformers (default: the offline all-MiniLM-L6-v2, 384-d)."""

from __future__ import annotations

import numpy as np

from llmrec.config import Config
from llmrec.encoders.locations import text_encoder_path
from llmrec.errors import ModelError


def apply_threads(threads: int) -> None:
    """Set torch's CPU thread count (config ``threads``; 0 leaves torch's default)."""
    if threads > 0:
        import torch

        torch.set_num_threads(threads)


def resolve_device(name: str) -> str:
    """The torch device for config ``device``: ``auto`` is cuda when present, else cpu.

    Raises:
        ModelError: a cuda device is asked for where torch sees no CUDA device.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} is configured but torch sees no CUDA device: use 'auto' or 'cpu'")
    return name


class TextEncoder:
    """``encode(texts) -> float32 [n, d]``, L2-normalised (cosine = inner product).

    Raises:
        ModelError: the configured encoder is missing or not a sentence-transformers model.
    """

    def __init__(self, cfg: Config):
        from sentence_transformers import SentenceTransformer

        self.path = text_encoder_path(cfg)
        apply_threads(cfg.threads)
        device = resolve_device(cfg.device)
        try:
            self.model = SentenceTransformer(self.path, device=device)
        except (OSError, ValueError, RuntimeError) as e:
            raise ModelError(f"cannot load text encoder {self.path!r}: {e}") from e
        self.batch_size = cfg.encode_batch_size
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Encode texts. Returns float32 [len(texts), dim]; an empty list gives [0, dim]."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vecs = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress,
        )
        return np.asarray(vecs, dtype=np.float32)
