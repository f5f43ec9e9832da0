"""RankerModel's prompt forms (real SmolLM2-135M tokenizer and embeddings, real ml-100k titles)."""

import torch

from llmrec.llm.hf import TransformersBackend
from llmrec.rank.model import RankerModel


def test_titles_only_prompt_token_ids_and_embeds_agree_and_are_not_cached(base_cfg, ml100k):
    hf = TransformersBackend(base_cfg.replace(threads=1))
    model = RankerModel(hf.model, hf.tokenizer)
    items = ml100k.items
    for start in range(0, 60, 10):  # six distinct prompts (5 history items, 5 candidates each)
        history, candidates = items[start:start + 5], items[start + 5:start + 10]
        ids = model.token_ids(history, candidates)
        want = hf.tokenizer(model.text(history, candidates), add_special_tokens=False).input_ids
        assert ids == want
        with torch.no_grad():
            emb = model.embeds(history, candidates)
            assert torch.equal(emb, hf.model.get_input_embeddings()(torch.tensor(ids)))
    # The piece cache holds the pieces between soft-token slots only; whole prompts are unique.
    assert model._piece_cache == {}
