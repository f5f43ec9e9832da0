"""The trained ranker's compute on a GPU: scoring throughput and LoRA training steps of
:class:`llmrec.rank.model.RankerModel` on CUDA (or the CPU, for a dry run of this script).

Same shapes as the shipped ranker (``eval/ml-latest-small.yaml``): history 10, 20 candidates, one
collaborative soft token per item (projector from 64-d vectors), LoRA r=8 on every layer. The LLM is
SmolLM2-135M's architecture from ``--model`` (its ``config.json`` and tokenizer); its weights are
loaded when the folder has them, else initialised at random (the same FLOPs, so a valid *timing*;
quality is not measured here). Titles are real (``--titles``: one per line).

Measured, each written to ``--out`` as soon as it is done:

1. ``score``: prompts/s of ``RankerModel.score`` (one forward pass, last position's logits) at batch
   sizes 1..128, in bf16 and fp32, soft tokens on; and titles only.
2. ``train``: seconds per optimizer step (forward + backward + AdamW, LoRA + projector trainable,
   bf16 autocast on CUDA) at batch 4 and 16; and 40 steps on ONE fixed batch of 16 whose loss must
   fall (gradients flow on this device).

    python eval/gpu_ranker_check.py --model DIR --titles FILE --out runs/gpu_ranker.json [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import time
import types
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="folder with config.json + tokenizer (weights optional)")
    ap.add_argument("--titles", required=True, help="text file, one item title per line")
    ap.add_argument("--out", default="runs/gpu_ranker.json")
    ap.add_argument("--budget", type=float, default=150.0, help="seconds; no new measurement starts after it")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on whatever device (tests the script)")
    ap.add_argument("--layers", type=int, default=0, help="keep only the first N layers (a smaller real configuration)")
    a = ap.parse_args(argv)

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from llmrec.data.types import Item
    from llmrec.llm.projector import Projector, ProjectorSpec
    from llmrec.rank.model import RankerModel
    from llmrec.rank.train import _lora

    t_start = time.perf_counter()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rep: dict = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
                 "torch": torch.__version__, "score": [], "train": [], "notes": []}

    def save():
        rep["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        out.write_text(json.dumps(rep, indent=1))

    def left() -> float:
        return a.budget - (time.perf_counter() - t_start)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    model_dir = Path(a.model)
    conf = AutoConfig.from_pretrained(model_dir)
    if a.layers:
        conf.num_hidden_layers = a.layers
    tok = AutoTokenizer.from_pretrained(model_dir)
    has_weights = any(model_dir.glob("*.safetensors")) or any(model_dir.glob("*.bin"))
    torch.manual_seed(0)
    if has_weights:
        llm = AutoModelForCausalLM.from_pretrained(model_dir, config=conf, dtype=torch.float32)
    else:
        llm = AutoModelForCausalLM.from_config(conf, dtype=torch.float32)
    rep["weights"] = "pretrained" if has_weights else "random (timing only)"
    rep["model"] = {"layers": conf.num_hidden_layers, "hidden": conf.hidden_size,
                    "params_M": round(sum(p.numel() for p in llm.parameters()) / 1e6, 1)}
    llm = _lora(llm.to(dev), types.SimpleNamespace(lora_r=8, lora_layers=0))

    titles = [t.strip() for t in Path(a.titles).read_text(encoding="utf-8").splitlines() if t.strip()]
    if len(titles) < 40:
        raise SystemExit(f"--titles needs at least 40 titles, got {len(titles)}")
    items = [Item(id=str(n), title=t) for n, t in enumerate(titles)]
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(items), 64)).astype(np.float32)
    index = {it.id: n for n, it in enumerate(items)}
    proj = Projector(ProjectorSpec(in_dim=64, d_llm=conf.hidden_size, k=1)).to(dev)
    n_hist, n_cand = (3, 5) if a.dry_run else (10, 20)

    def prompts(n: int):
        out_ = []
        for _ in range(n):
            pick = rng.choice(len(items), n_hist + n_cand, replace=False)
            out_.append(([items[i] for i in pick[:n_hist]], [items[i] for i in pick[n_hist:]]))
        return out_

    soft_model = RankerModel(llm, tok, proj, vectors, index)
    plain_model = RankerModel(llm, tok)
    rep["prompt_tokens"] = int(soft_model.embeds(*prompts(1)[0]).shape[0])
    save()

    # 1. scoring throughput
    batches = [1, 2] if a.dry_run else [1, 8, 32, 128]
    for dtype_name, dtype, model in [("bf16", torch.bfloat16, soft_model), ("fp32", torch.float32, soft_model),
                                     ("bf16-titles-only", torch.bfloat16, plain_model)]:
        for B in batches if dtype_name != "bf16-titles-only" else batches[-1:]:
            if left() < 0:
                rep["notes"].append(f"budget spent before score {dtype_name} B={B}")
                break
            n = max(B * (2 if a.dry_run else 4), 2 if a.dry_run else 64)
            data = prompts(n)
            ctx = torch.autocast(dev.type, dtype=dtype) if dtype != torch.float32 else torch.autocast(dev.type, enabled=False)
            with ctx:
                model.score(data[:B])  # warm-up
                sync()
                t = time.perf_counter()
                for i in range(0, n, B):
                    lp = model.score(data[i:i + B])
                sync()
                dt = time.perf_counter() - t
            ok = bool(np.isfinite(lp).all() and np.allclose(np.exp(lp).sum(1), 1, atol=1e-3))
            rep["score"].append({"dtype": dtype_name, "batch": B, "prompts": n, "s_per_prompt": round(dt / n, 5),
                                 "prompts_per_s": round(n / dt, 1), "finite_normalised": ok})
            print(f"score {dtype_name:17s} B={B:4d}: {dt / n * 1e3:8.2f} ms/prompt  {n / dt:8.1f} prompts/s", flush=True)
            save()

    # 2. training steps (fp32 master weights, bf16 autocast on CUDA as torch.amp does)
    params = [q for q in llm.parameters() if q.requires_grad] + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    soft_model.train()

    def step(batch, target):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            logits = soft_model.label_logits(batch)
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    for B in ([2] if a.dry_run else [4, 16]):
        if left() < 0:
            rep["notes"].append(f"budget spent before train B={B}")
            break
        n_steps = 2 if a.dry_run else 10
        data = [prompts(B) for _ in range(n_steps + 1)]
        tgt = torch.as_tensor(rng.integers(0, n_cand, B), device=dev)
        step(data[0], tgt)
        sync()
        t = time.perf_counter()
        for d in data[1:]:
            step(d, tgt)
        sync()
        dt = (time.perf_counter() - t) / n_steps
        rep["train"].append({"batch": B, "s_per_step": round(dt, 4), "s_per_example": round(dt / B, 5)})
        print(f"train B={B}: {dt * 1e3:.1f} ms/step, {dt / B * 1e3:.2f} ms/example", flush=True)
        save()

    fixed = prompts(4 if a.dry_run else 16)
    tgt = torch.as_tensor(rng.integers(0, n_cand, len(fixed)), device=dev)
    losses = [step(fixed, tgt) for _ in range(6 if a.dry_run else 40)]
    rep["overfit_one_batch"] = {"loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4),
                                "uniform": round(float(np.log(n_cand)), 4), "falls": losses[-1] < losses[0]}
    print(f"overfit one batch: loss {losses[0]:.4f} -> {losses[-1]:.4f}", flush=True)
    save()
    return 0 if losses[-1] < losses[0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
