"""Triton kernels of llmrec (imported as ``llmrec_kernels``).

``reference`` holds the torch reference and helpers (no Triton needed); ``topk_triton`` holds the
fused similarity + top-k kernel and is imported lazily (it needs ``triton``).
"""

from llmrec_kernels.reference import exclusion_bitset, lex_topk, topk_reference

__all__ = ["exclusion_bitset", "lex_topk", "topk_reference"]
