"""The trained ranker on a tiny REAL configuration: SmolLM2-135M with LoRA and the soft-token
projector, a few steps on real ml-latest-small users (first 50), 5 candidates per prompt."""

import json
import shutil
from pathlib import Path

import pytest

from llmrec.errors import ConfigError
from llmrec.eval.ranker import rank_data, ranker_dir, train_for_split
from llmrec.eval.runner import load_split
from llmrec.rank import checkpoint as ckpt
from llmrec.rank.train import evaluate, params_from, validation_set
from tests.support.tiny_ranker import tiny_cfg

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_cfg):
    cfg = tiny_cfg(tmp_path_factory.mktemp("rk-home"), base_cfg)
    lines: list[str] = []
    man = train_for_split(cfg, log=lines.append)
    return cfg, man, lines


def test_training_lowers_the_loss_and_writes_a_versioned_checkpoint(trained):
    cfg, man, lines = trained
    probe = man["train_probe_loss"]
    assert probe["examples"] == 8
    assert probe["after"] < probe["before"], probe
    assert man["steps"] == 6 and man["soft_tokens"] and not man["cap_hit"]
    assert man["format"] == ckpt.FORMAT
    assert set(man["base_model"]) == {"llm", "config_sha256", "weights_sha256"}
    assert man["retriever"]["kind"] == "fusion" and len(man["retriever"]["weights"]) == 2
    folder = ranker_dir(cfg)
    for f in ("manifest.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "projector.pt",
              "item_vectors.npy", "item_ids.json"):
        assert (folder / f).exists(), f
    assert json.loads((folder / "adapter" / "adapter_config.json").read_text())["r"] == cfg.ranker_lora_r
    assert any("ETA" in line for line in lines)
    assert [h["step"] for h in man["history"]] == [0, 2, 4, 6]


def test_checkpoint_round_trips(trained):
    cfg, man, _ = trained
    model = ckpt.load(ranker_dir(cfg), cfg, retriever=man["retriever"])
    assert model.soft and model.projector.spec.modality == "collaborative"
    data = rank_data(cfg, load_split(cfg))
    ev = evaluate(model, data, validation_set(data, params_from(cfg)), cfg.ranker_batch_size)
    assert ev["loss"] == pytest.approx(man["best"]["loss"], abs=1e-3)
    assert ev["ndcg10"] == pytest.approx(man["best"]["ndcg10"], abs=1e-9)


def test_a_finished_run_resumes_without_retraining(trained):
    cfg, man, _ = trained
    lines: list[str] = []
    again = train_for_split(cfg, log=lines.append)
    assert any("resuming at step 6/6" in line for line in lines)
    assert again["best"] == man["best"] and again["steps"] == 6


def _copy(trained, tmp_path):
    cfg, man, _ = trained
    dst = tmp_path / "ckpt"
    shutil.copytree(ranker_dir(cfg), dst)
    return cfg, man, dst


def test_another_base_model_is_refused(trained, tmp_path):
    cfg, man, dst = _copy(trained, tmp_path)
    # A real other model folder: the same weights file with a different config.
    other = tmp_path / "other-llm"
    shutil.copytree(Path(cfg.llm), other, symlinks=True)
    conf = json.loads((other / "config.json").read_text())
    conf["rope_theta"] = float(conf.get("rope_theta", 10000.0)) * 2
    (other / "config.json").write_text(json.dumps(conf))
    with pytest.raises(ckpt.RankerMismatchError, match="base_model") as e:
        ckpt.load(dst, cfg.replace(llm=str(other)), retriever=man["retriever"])
    assert str(dst) in str(e.value) and "train-ranker" in str(e.value)


def test_another_template_is_refused(trained, tmp_path, monkeypatch):
    cfg, man, dst = _copy(trained, tmp_path)
    from llmrec.rank import model as model_mod

    real = model_mod._template
    monkeypatch.setattr(model_mod, "_template", lambda name: real(name) + "\nAnswer quickly.")
    with pytest.raises(ckpt.RankerMismatchError, match="template"):
        ckpt.load(dst, cfg, retriever=man["retriever"])


def test_another_retriever_is_refused(trained, tmp_path):
    cfg, man, dst = _copy(trained, tmp_path)
    with pytest.raises(ckpt.RankerMismatchError, match="retriever"):
        ckpt.load(dst, cfg, retriever={**man["retriever"], "weights": [0.5, 0.5]})


def test_damaged_and_missing_checkpoints_are_model_errors(trained, tmp_path):
    cfg, man, dst = _copy(trained, tmp_path)
    with pytest.raises(ckpt.ModelError, match="missing manifest.json"):
        ckpt.load(tmp_path / "nothing", cfg)
    (dst / "projector.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.ModelError, match="damaged"):
        ckpt.load(dst, cfg, retriever=man["retriever"])


@pytest.mark.parametrize("key,value", [("ranker_examples", 0), ("ranker_lr", 0.0), ("ranker_history", -1),
                                       ("candidates", 1)])
def test_bad_ranker_keys_name_the_key(base_cfg, tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        params_from(tiny_cfg(tmp_path, base_cfg, **{key: value}))


def _perms(cfg, users, n):
    import numpy as np

    rng = np.random.default_rng(cfg.seed)
    return {u: rng.permutation(n) for u in users}


def test_harness_llm_systems_zero_shot_trained_and_fused(trained, tmp_path, monkeypatch):
    import numpy as np

    from llmrec.eval import llm_systems, runner

    cfg, man, _ = trained
    cfg = cfg.replace(eval_systems=["fusion"], eval_llm=["zero-shot", "trained"], eval_protocols=["full", "sampled"],
                      eval_negatives=4, eval_llm_bias_users=3, eval_bootstrap=50)
    logs: list[str] = []
    monkeypatch.setattr(runner, "log", logs.append)
    metrics = runner.run(cfg, tmp_path / "out")
    for kind in ("zero-shot", "trained"):
        name = f"fusion+{kind}"
        assert metrics["results"][name]["users"] == 50
        det = metrics["details"][name]
        assert 0 < det["ranker_called"] < 50  # only users whose target is among the 5 candidates
        b = det["position_bias"]
        assert b["users"] == min(3, det["ranker_called"]) and -1 <= b["kendall_tau_shuffled"] <= 1 and 0 <= b["top_is_A"]["shuffled"] <= 1
        # Calibrated: the same cached log-probabilities less each label position's mean over the
        # validation users, recomputed here from the cache.
        cache = json.loads((tmp_path / "out" / "parts" / f"llm-{kind}.json").read_text())
        prior = np.mean(list(cache["valid"].values()), axis=0)
        want = llm_systems.position_bias(cache["test"], cache["reversed"], cache["shuffled"],
                                         _perms(cfg, list(cache["reversed"]), len(prior)), prior)
        got = b["calibrated"]
        assert got["users"] == want["users"] == b["users"] and got["top_is_A"] == want["top_is_A"]
        for key in ("kendall_tau_shuffled", "kendall_tau_reversed"):
            assert got[key] == pytest.approx(want[key], nan_ok=True)
        assert 0 <= metrics["details"][f"{name}+fused"]["fusion_weight"] <= 1
        assert set(metrics["vs_retriever"]["systems"]) >= {name, f"{name}+fused"}
        assert set(metrics["vs_retriever"]["sampled"]) >= {name, f"{name}+fused"}
        assert metrics["sampled"][name]["valid_ratio"] == 1.0
    assert metrics["details"]["fusion+trained"]["checkpoint"]["best"] == man["best"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "position bias" in report and "valid answers only" in report and "fusion+trained+fused" in report
    # A rerun reads the cached log-probabilities (no LLM pass), and users whose target the retriever
    # missed keep the retriever's rank.
    logs.clear()
    parts = tmp_path / "out" / "parts"
    base = json.loads((parts / "fusion.json").read_text())
    split = load_split(cfg)
    again = llm_systems.run(cfg, split, split.users, parts, {"fusion": base}, logs.append)
    assert not any(line.startswith(("[eval] valid:", "[eval] test:", "[eval] sampled:")) for line in logs)
    r0 = np.asarray(base["full"]["ranks"])
    for name in ("fusion+zero-shot", "fusion+trained+fused"):
        r = np.asarray(again[name]["full"]["ranks"])
        missed = r0 >= cfg.candidates
        assert missed.any() and (r[missed] == r0[missed]).all()
        assert (r[~missed] < cfg.candidates).all()


def test_a_ranker_the_harness_trains_is_cached_under_its_checkpoint(trained, tmp_path, monkeypatch):
    # The harness trains a missing ranker (here the titles-only one) before it opens its cache, so the
    # cache's key names that checkpoint and a rerun reads it instead of scoring every user again.
    from llmrec.eval import runner

    cfg, _, _ = trained
    cfg = cfg.replace(eval_systems=["fusion"], eval_llm=["trained-text"], eval_protocols=["full"],
                      eval_llm_bias_users=2, eval_bootstrap=20)
    assert not (ranker_dir(cfg, False) / "manifest.json").exists()
    logs: list[str] = []
    monkeypatch.setattr(runner, "log", logs.append)
    first = runner.run(cfg, tmp_path / "out")
    assert any("no trained-text ranker" in line for line in logs)
    assert any(line.startswith("[eval] valid:") for line in logs)
    assert first["details"]["fusion+trained-text"]["checkpoint"]["soft_tokens"] is False
    logs.clear()
    again = runner.run(cfg, tmp_path / "out")
    assert not any(line.startswith(("[eval] valid:", "[eval] test:", "[eval] reversed:")) for line in logs)
    assert again["results"]["fusion+trained-text"] == first["results"]["fusion+trained-text"]
