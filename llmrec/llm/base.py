"""The LLM backend interface. Implementations: transformers in-process (``hf.py``); a vLLM
server backend (``vllm.py``) implements the same two calls.

A prompt is a list of chat messages ``[{"role": "system"|"user"|"assistant", "content": str}]``.
Soft tokens: an optional mapping from a placeholder string that appears verbatim in the prompt
(e.g. ``"<soft:item42:image>"``) to a float tensor [k, d_llm] of input embeddings that replace it
(the projector's output for an image or audio clip).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

Messages = list[dict[str, str]]


@runtime_checkable
class Backend(Protocol):
    name: str

    def score_labels(self, messages: Messages, labels: list[str], soft_tokens: dict | None = None) -> np.ndarray:
        """Next-token log-probabilities (natural log, over the full vocabulary) of each label's
        single token, right after the assistant turn starts: ONE forward pass.

        Returns float64 [len(labels)]. Raises ModelError if a label is not a single token.
        """
        ...

    def generate(self, prompts: list[Messages], max_tokens: int, soft_tokens: list[dict | None] | None = None) -> list[str]:
        """Greedy completion of each prompt, at most ``max_tokens`` new tokens each."""
        ...
