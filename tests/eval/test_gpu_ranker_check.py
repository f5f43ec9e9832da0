"""The prepared GPU run's ranker stage (eval/gpu_ranker_check.py), dry-run on the CPU: the real
SmolLM2-135M cut to 2 layers, real ml-100k titles. It must write finite, normalised scores and
timings, and one batch's loss must fall under training (the script exits 1 otherwise)."""

import json
import runpy
import sys
from pathlib import Path

from llmrec.encoders.locations import BUILTIN_LLM

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "gpu_ranker_check.py"


def test_gpu_ranker_check_dry_run(base_cfg, ml100k, tmp_path, monkeypatch):
    titles = tmp_path / "titles.txt"
    titles.write_text("\n".join(it.title for it in ml100k.items[:100]) + "\n", encoding="utf-8")
    out = tmp_path / "gpu_ranker.json"
    argv = [str(SCRIPT), "--model", str(base_cfg.models_dir() / BUILTIN_LLM), "--titles", str(titles),
            "--out", str(out), "--dry-run", "--layers", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
        rc = 0
    except SystemExit as e:
        rc = e.code
    rep = json.loads(out.read_text())
    assert rep["weights"] == "pretrained" and rep["model"]["layers"] == 2
    assert rep["score"] and all(r["finite_normalised"] and r["s_per_prompt"] > 0 for r in rep["score"])
    assert {r["dtype"] for r in rep["score"]} == {"bf16", "fp32", "bf16-titles-only"}
    assert rep["train"] and rep["train"][0]["s_per_step"] > 0
    o = rep["overfit_one_batch"]
    assert o["falls"] and o["loss_last"] < o["loss_first"]
    assert rc == 0


def test_gpu_ranker_check_refuses_too_few_titles(base_cfg, tmp_path, monkeypatch):
    titles = tmp_path / "titles.txt"
    titles.write_text("Toy Story (1995)\n", encoding="utf-8")
    argv = [str(SCRIPT), "--model", str(base_cfg.models_dir() / BUILTIN_LLM), "--titles", str(titles),
            "--out", str(tmp_path / "o.json"), "--dry-run", "--layers", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
        raise AssertionError("expected SystemExit")
    except SystemExit as e:
        assert "at least 40 titles, got 1" in str(e.code)
