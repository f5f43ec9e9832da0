"""The verbalizer reads one forward pass; its order must equal the label logits' order."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from llmrec.encoders.locations import llm_path
from llmrec.llm.hf import TransformersBackend
from llmrec.rank.verbalizer import LABELS, rank_prompt, verbalizer_rank


@pytest.fixture(scope="module")
def backend(base_cfg):
    return TransformersBackend(base_cfg)


def test_order_equals_direct_label_logits(backend, base_cfg, ml100k):
    history, cands = ml100k.items[:8], ml100k.items[100:120]
    ranking = verbalizer_rank(backend, history, cands)

    # Independently: the model straight from disk, the chat template, the last position's logits.
    path = llm_path(base_cfg)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    text = tok.apply_chat_template(rank_prompt(history, cands), add_generation_prompt=True, tokenize=False)
    ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    label_ids = [tok.convert_tokens_to_ids(lab) for lab in LABELS[:20]]
    direct = logits[label_ids].numpy()
    expected = sorted(range(20), key=lambda i: (-direct[i], i))
    assert ranking.order == expected
    assert sorted(ranking.order) == list(range(20))
    # The backend computes the last position's logits alone (logits_to_keep=1): another matmul shape,
    # float32 rounding differs by up to ~4e-5.
    np.testing.assert_allclose(ranking.logprobs, torch.log_softmax(logits.double(), -1)[label_ids].numpy(), atol=2e-4)


def test_soft_tokens_equal_to_own_embeddings_give_same_scores(backend, ml100k):
    history, cands = ml100k.items[:3], ml100k.items[10:14]
    msgs = rank_prompt(history, cands)
    plain = backend.score_labels(msgs, list("ABCD"))
    # Cut a span of whole tokens out of the user message and feed its own input embeddings back as
    # soft tokens in place of a placeholder: the scores must not change.
    content = msgs[1]["content"]
    enc = backend.tokenizer(content, add_special_tokens=False, return_offsets_mapping=True)
    a, b = 5, 12
    s, e = enc.offset_mapping[a][0], enc.offset_mapping[b - 1][1]
    soft = {"<soft:1>": backend.model.get_input_embeddings()(torch.tensor(enc.input_ids[a:b])).detach()}
    soft_msgs = [msgs[0], {"role": "user", "content": content[:s] + "<soft:1>" + content[e:]}]
    spliced = backend.score_labels(soft_msgs, list("ABCD"), soft_tokens=soft)
    np.testing.assert_allclose(spliced, plain, atol=1e-4)
    with pytest.raises(Exception, match=r"\[k, 576\]"):
        backend.score_labels(soft_msgs, list("ABCD"), soft_tokens={"<soft:1>": torch.zeros(2, 5)})


def test_generate_batch(backend):
    out = backend.generate([[{"role": "user", "content": "Say hello."}]] * 2, max_tokens=5)
    assert len(out) == 2 and all(isinstance(t, str) and t for t in out)


def test_llm_explanations_keep_the_grounded_citation(backend, ml100k):
    from llmrec.rank.explain import explain, grounded

    items, cited = ml100k.items[:2], [[ml100k.items[10]], [ml100k.items[11], ml100k.items[12]]]
    texts = explain(backend, items, cited, "llm", max_tokens=12)
    for text, it, c in zip(texts, items, cited, strict=True):
        assert text.startswith(grounded(it, c))
        tail = text[len(grounded(it, c)):].strip()
        assert tail == "" or tail[-1] in ".!?…"
