"""Projector: any modality vector -> ``k`` soft tokens in the LLM's input-embedding space.

LLaRA (Liao et al., "LLaRA: Large Language-Recommendation Assistant", SIGIR 2024) maps a
sequential recommender's item embedding through a small MLP into the LLM's token space and puts it
beside the item's title ("hybrid item representation"). The same module maps image or audio
features (a vision or speech encoder's pooled vector) for multimodal items: only ``in_dim`` and the
``modality`` name change.

Output scale: each soft token is RMS-normalised and multiplied by a learned scale initialised to the
RMS of the LLM's own input embeddings, so that from the first step the soft tokens have the size of
real tokens (an untrained MLP's output is otherwise orders of magnitude off).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ProjectorSpec:
    """``in_dim``: input vector size; ``d_llm``: LLM hidden size; ``k``: soft tokens per vector;
    ``hidden``: MLP width; ``modality``: what the vectors are (``collaborative``, ``image``, ``audio``)."""

    in_dim: int
    d_llm: int
    k: int = 1
    hidden: int = 256
    modality: str = "collaborative"


class Projector(nn.Module):
    """Two-layer MLP (Linear -> GELU -> Linear) then per-token RMS normalisation and a learned scale.

    ``forward``: float [..., in_dim] -> float [..., k, d_llm].
    """

    def __init__(self, spec: ProjectorSpec, embed_rms: float = 1.0):
        super().__init__()
        if min(spec.in_dim, spec.d_llm, spec.k, spec.hidden) < 1:
            raise ValueError(f"projector sizes must be >= 1, got {spec}")
        self.spec = spec
        self.net = nn.Sequential(nn.Linear(spec.in_dim, spec.hidden), nn.GELU(),
                                 nn.Linear(spec.hidden, spec.k * spec.d_llm))
        self.scale = nn.Parameter(torch.tensor(float(embed_rms)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.spec.in_dim:
            raise ValueError(f"projector expects vectors of size {self.spec.in_dim}, got {tuple(x.shape)}")
        y = self.net(x).unflatten(-1, (self.spec.k, self.spec.d_llm))
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6) * self.scale

    def state(self) -> dict:
        """Everything needed to rebuild it: ``{"spec": {...}, "weights": state_dict}``."""
        return {"spec": asdict(self.spec), "weights": self.state_dict()}

    @classmethod
    def from_state(cls, state: dict) -> Projector:
        """Inverse of :meth:`state`. Raises KeyError/RuntimeError on a damaged state."""
        p = cls(ProjectorSpec(**state["spec"]))
        p.load_state_dict(state["weights"])
        return p


def embedding_rms(embedding: nn.Embedding) -> float:
    """Root-mean-square of the entries of an input-embedding matrix (the size of a real token)."""
    return float(embedding.weight.detach().float().pow(2).mean().sqrt())
