"""Triton kernels of llmrec (imported as ``llmrec_kernels``)."""
