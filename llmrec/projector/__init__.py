"""Alignment: the projector that maps a modality's vectors (image, audio) to soft tokens in the
LLM's input-embedding space, its training (``llmrec train-projector``) and its checkpoint."""
