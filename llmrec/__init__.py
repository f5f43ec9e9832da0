"""llmrec: a multimodal recommender whose ranking brain is a language model."""

from llmrec.config import Config
from llmrec.retrieval.topk import topk

__version__ = "0.1.0"
__all__ = ["Config", "topk", "__version__"]
