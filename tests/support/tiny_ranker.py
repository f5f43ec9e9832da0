"""The tiny REAL ranker configuration the tests train: SmolLM2-135M with LoRA and the soft-token
projector, a few steps on real ml-latest-small users (first 50), 5 candidates per prompt."""

from llmrec.config import Config
from llmrec.encoders.locations import BUILTIN_LLM

TINY = dict(dataset="ml-latest-small", eval_max_users=50, sasrec_seeds=[0], sasrec_max_len=50, sasrec_dim=32,
            sasrec_max_epochs=2, sasrec_patience=2, eval_ranker_retriever="fusion",
            eval_fusion=["sasrec-ensemble", "item-knn"], candidates=5, ranker_history=3, ranker_examples=8,
            ranker_epochs=3, ranker_batch_size=4, ranker_eval_every=8, ranker_valid_users=4, ranker_patience=5,
            ranker_lr=2e-3, ranker_projector_lr=5e-3)


def tiny_cfg(home, base_cfg, **extra) -> Config:
    return Config.load(env={}, overrides={**TINY, "home": home, "llm": str(base_cfg.models_dir() / BUILTIN_LLM),
                                          **extra})
