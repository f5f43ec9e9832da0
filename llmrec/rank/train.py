"""Training the verbalizer ranker (``llmrec train-ranker``).

Objective (LlamaRec, Yue et al. 2023, arXiv:2311.02089): cross-entropy over the candidate labels'
logits at the answer position. Examples come from the training split only: the target slides over
each user's training sequence (its later positions), the candidates are the retriever's top
``candidates`` for the history before it (hard negatives; the target replaces the last candidate
when the retriever missed it), and their order is shuffled per example so that no label position
carries the answer. Validation users (training history -> validation target, candidates in the
retriever's order, users whose target is among them) choose the best checkpoint and stop training
early, by the NDCG@10 of the order ``recommend`` serves: the LLM fused with the retriever at the
weight best for that checkpoint (:mod:`llmrec.rank.fuse`; step 0, the untrained model, competes too,
so a checkpoint is kept only when it adds to the retriever on validation). Parameter-efficient: LoRA (``peft``) on the attention and MLP projections of the top
``lora_layers`` layers (0: all), plus the soft-token projector (LLaRA, Liao et al. 2024) when
``soft_tokens`` is on. Budgeted by examples and epochs; ``max_minutes`` is only a safety cap, and
a run it stops says so. Resumable: the state after every validation is kept under ``resume/``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from llmrec.config import Config
from llmrec.data.types import Item
from llmrec.errors import ConfigError
from llmrec.llm.projector import Projector, ProjectorSpec, embedding_rms
from llmrec.metrics import target_rank
from llmrec.rank import checkpoint as ckpt
from llmrec.rank.fuse import choose_weight, ndcg10
from llmrec.rank.model import RankerModel, template_hash

PROBE = 8
"""Training examples whose cross-entropy is measured before and after training (the loss must fall)."""
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class RankerParams:
    """Training hyper-parameters (config group ``rank``, flat keys ``ranker_*``); defaults from there."""

    history: int = Config.default("rank.history")
    candidates: int = 20
    examples: int = Config.default("rank.examples")
    epochs: int = Config.default("rank.epochs")
    batch_size: int = Config.default("rank.batch_size")
    lr: float = Config.default("rank.lr")
    projector_lr: float = Config.default("rank.projector_lr")
    lora_r: int = Config.default("rank.lora_r")
    lora_layers: int = Config.default("rank.lora_layers")
    soft_tokens: bool = Config.default("rank.soft_tokens")
    soft_k: int = Config.default("rank.soft_k")
    eval_every: int = Config.default("rank.eval_every")
    patience: int = Config.default("rank.patience")
    valid_users: int = Config.default("rank.valid_users")
    max_minutes: float = Config.default("rank.max_minutes")
    seed: int = 0


def params_from(cfg: Config) -> RankerParams:
    """The ranker_* keys of ``cfg`` (with ``candidates`` and ``seed``), range-checked.

    Raises ConfigError naming the key."""
    p = RankerParams(history=cfg.rank.history, candidates=cfg.candidates, examples=cfg.rank.examples,
                     epochs=cfg.rank.epochs, batch_size=cfg.rank.batch_size, lr=cfg.rank.lr,
                     projector_lr=cfg.rank.projector_lr, lora_r=cfg.rank.lora_r,
                     lora_layers=cfg.rank.lora_layers, soft_tokens=cfg.rank.soft_tokens, soft_k=cfg.rank.soft_k,
                     eval_every=cfg.rank.eval_every, patience=cfg.rank.patience,
                     valid_users=cfg.rank.valid_users, max_minutes=cfg.rank.max_minutes, seed=cfg.seed)
    for key in ("examples", "epochs", "batch_size", "lora_r", "soft_k", "eval_every", "patience", "valid_users"):
        if getattr(p, key) < 1:
            raise ConfigError(f"config key 'ranker_{key}' must be >= 1, got {getattr(p, key)}")
    for key in ("history", "lora_layers"):
        if getattr(p, key) < 0:
            raise ConfigError(f"config key 'ranker_{key}' must be >= 0, got {getattr(p, key)}")
    for key in ("lr", "projector_lr", "max_minutes"):
        if not (getattr(p, key) > 0 and math.isfinite(getattr(p, key))):
            raise ConfigError(f"config key 'ranker_{key}' must be a positive number, got {getattr(p, key)}")
    if p.candidates < 2:
        raise ConfigError(f"config key 'candidates' must be >= 2 to train a ranker, got {p.candidates}")
    return p


@dataclass
class RankData:
    """What a ranker trains on.

    items: the catalog in index order. train_seqs: per user, the training sequence (item indices,
    chronological). valid: (history, target) pairs of validation users. scorer: the retriever over
    item indices (``user_vectors(histories)``, ``item_vectors()``). vectors: float32 [N, d] soft-token
    inputs (or None). retriever: the retriever's identity (recorded and checked).
    """

    items: list[Item]
    train_seqs: list[list[int]]
    valid: list[tuple[list[int], int]]
    scorer: object
    vectors: np.ndarray | None
    retriever: dict


def retrieve(scorer, histories: list[list[int]], n: int, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The retriever's top ``n`` item indices [B, n] (best first, history masked) and their scores [B, n].

    ``scorer``: a :class:`~llmrec.retrieval.base.Retriever`: ``scores(histories) -> [B, N]`` when its
    ``dense_scores``, else ``user_vectors(histories)`` and ``item_vectors()``."""
    V = None if scorer.dense_scores else np.ascontiguousarray(scorer.item_vectors(), dtype=np.float32)
    tops, vals = [], []
    for s in range(0, len(histories), batch):
        hs = histories[s:s + batch]
        S = (np.array(scorer.scores(hs), dtype=np.float32) if V is None
             else np.asarray(scorer.user_vectors(hs), dtype=np.float32) @ V.T)
        for b, h in enumerate(hs):
            S[b, h] = -np.inf
        idx = np.argsort(-S, axis=1, kind="stable")[:, :n]
        tops.append(idx)
        vals.append(np.take_along_axis(S, idx, 1))
    return np.concatenate(tops), np.concatenate(vals)


def make_examples(data: RankData, p: RankerParams, rng: np.random.Generator) -> list[tuple[list[int], list[int], int]]:
    """``p.examples`` training examples (history, shuffled candidates, target position): users in a
    shuffled round-robin, each turn a random target among the user's last 20 training positions."""
    pools = [(u, list(range(max(1, len(s) - 20), len(s)))) for u, s in enumerate(data.train_seqs) if len(s) >= 2]
    if not pools:
        raise ConfigError("no user has 2 or more training interactions: nothing to train a ranker on")
    for _, pos in pools:
        rng.shuffle(pos)
    picks: list[tuple[int, int]] = []
    turn = 0
    while len(picks) < p.examples:
        order = rng.permutation(len(pools))
        for o in order:
            u, pos = pools[o]
            picks.append((u, pos[turn % len(pos)]))
            if len(picks) == p.examples:
                break
        turn += 1
    hists = [data.train_seqs[u][:t] for u, t in picks]
    targets = [data.train_seqs[u][t] for u, t in picks]
    top, _ = retrieve(data.scorer, hists, p.candidates)
    out = []
    for h, t, cands in zip(hists, targets, top, strict=True):
        c = [int(i) for i in cands]
        if t not in c:
            c[-1] = t
        c = [c[i] for i in rng.permutation(len(c))]
        out.append((h[-p.history:] if p.history else [], c, c.index(t)))
    return out


def validation_set(data: RankData, p: RankerParams) -> list[tuple[list[int], list[int], int, np.ndarray]]:
    """Validation users whose target is among the retriever's top candidates (at most
    ``p.valid_users``, in order): (shown history, candidates in the retriever's order, target position,
    the candidates' retriever scores)."""
    hists = [h for h, _ in data.valid]
    top, sc = retrieve(data.scorer, hists, p.candidates)
    out = []
    for (h, t), cands, scores in zip(data.valid, top, sc, strict=True):
        c = [int(i) for i in cands]
        if t in c:
            out.append((h[-p.history:] if p.history else [], c, c.index(t), scores))
        if len(out) == p.valid_users:
            break
    return out


def _batch(data: RankData, exs) -> list[tuple[list[Item], list[Item]]]:
    return [([data.items[i] for i in e[0]], [data.items[i] for i in e[1]]) for e in exs]


def evaluate(model: RankerModel, data: RankData, exs, batch_size: int, keep: bool = False) -> dict:
    """NDCG@10 and HR@1 of the target among the candidates, and the mean label cross-entropy
    (``keep``: also ``"logprobs"`` [B, n], the label log-probabilities)."""
    nd, hit, ce, lps = [], [], [], []
    for s in range(0, len(exs), batch_size):
        part = exs[s:s + batch_size]
        lp = model.score(_batch(data, part))
        lps.extend(lp)
        for row, e in zip(lp, part, strict=True):
            r = target_rank(row, e[2])
            nd.append(1 / math.log2(r + 2) if r < 10 else 0.0)
            hit.append(float(r == 0))
            ce.append(-row[e[2]])
    out = {"ndcg10": float(np.mean(nd)), "hr1": float(np.mean(hit)), "loss": float(np.mean(ce)), "users": len(exs)}
    if keep:
        out["logprobs"] = np.asarray(lps)
    return out


def validate(model: RankerModel, data: RankData, valid, batch_size: int) -> tuple[dict, np.ndarray]:
    """:func:`evaluate` on the validation users plus ``fused_ndcg10`` / ``fusion_weight`` (the LLM fused
    with the retriever at the best grid weight); returns (metrics, label log-probabilities [B, n])."""
    ev = evaluate(model, data, valid, batch_size, keep=True)
    lps = ev.pop("logprobs")
    w, fused = choose_weight(lps, np.array([e[3] for e in valid]), np.array([e[2] for e in valid]))
    return {**ev, "fused_ndcg10": fused, "fusion_weight": w}, lps


def _lora(llm, p: RankerParams):
    from peft import LoraConfig, get_peft_model

    n_layers = llm.config.num_hidden_layers
    layers = list(range(n_layers - p.lora_layers, n_layers)) if 0 < p.lora_layers < n_layers else None
    conf = LoraConfig(r=p.lora_r, lora_alpha=2 * p.lora_r, lora_dropout=0.05, target_modules=LORA_TARGETS,
                      layers_to_transform=layers, task_type="CAUSAL_LM")
    return get_peft_model(llm, conf)


def _standardise(V: np.ndarray) -> np.ndarray:
    V = np.asarray(V, dtype=np.float32)
    return ((V - V.mean(0)) / np.maximum(V.std(0), 1e-6)).astype(np.float32)


# long: one resumable training loop (steps, validation, early stopping, checkpoints)
def train_ranker(cfg: Config, data: RankData, out: str | Path, log=print, fresh: bool = False) -> dict:
    """Train the ranker on ``data``; write the checkpoint to ``out`` (see ``llmrec.rank.checkpoint``).

    Returns the manifest. Resumes from ``out/resume/`` when it holds a run of the same parameters and
    identities (``fresh=True`` starts over). Raises ConfigError on bad ``ranker_*`` keys.
    """
    p = params_from(cfg)
    out = Path(out)
    t_start = time.time()
    torch.manual_seed(p.seed)
    rng = np.random.default_rng(p.seed)
    vectors = _standardise(data.vectors) if (p.soft_tokens and data.vectors is not None) else None
    if p.soft_tokens and vectors is None:
        raise ConfigError("ranker_soft_tokens is on but the retriever gives no item vectors")
    identity = {"base_model": ckpt.base_identity(cfg), "template": template_hash(), "retriever": data.retriever}
    key = {"params": asdict(p), **identity, "n_items": len(data.items), "selection": "fused_ndcg10"}
    examples = make_examples(data, p, rng)
    valid = validation_set(data, p)
    if not valid:
        raise ConfigError("no validation user has the target among the retriever's candidates")
    retriever_ndcg = ndcg10(np.array([e[3] for e in valid]), np.array([e[2] for e in valid]))
    log(f"[ranker] {len(examples)} training examples x {p.epochs} epoch(s), {len(valid)} validation users, "
        f"soft tokens {'on' if vectors is not None else 'off'}; the retriever alone: validation NDCG@10 "
        f"{retriever_ndcg:.4f}")

    llm, tok = ckpt.load_base(cfg)
    llm = _lora(llm, p)
    projector = None
    if vectors is not None:
        spec = ProjectorSpec(in_dim=vectors.shape[1], d_llm=llm.config.hidden_size, k=p.soft_k)
        projector = Projector(spec, embedding_rms(llm.get_input_embeddings())).to(llm.device)
    index = {it.id: n for n, it in enumerate(data.items)}
    model = RankerModel(llm, tok, projector, vectors, index)
    groups = [{"params": [q for q in llm.parameters() if q.requires_grad], "lr": p.lr}]
    if projector is not None:
        groups.append({"params": list(projector.parameters()), "lr": p.projector_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    total = math.ceil(len(examples) / p.batch_size) * p.epochs
    warm = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * max(0.05, 1 - max(0, s - warm) / max(1, total - warm)))

    resume = out / "resume"
    state = {"step": 0, "best": None, "bad": 0, "history": [], "seconds": 0.0, "stopped": None,
             "retriever_ndcg10": retriever_ndcg}
    if fresh and resume.exists():
        shutil.rmtree(resume)
    if (resume / "state.pt").exists():
        saved = torch.load(resume / "state.pt", weights_only=False)
        if saved.get("key") == key:
            _load_trainable(model, saved["trainable"])
            opt.load_state_dict(saved["opt"])
            sched.load_state_dict(saved["sched"])
            state = saved["state"]
            log(f"[ranker] resuming at step {state['step']}/{total} from {resume}")
        else:
            log(f"[ranker] {resume} holds a run of other settings: starting over")
    probe = examples[:PROBE]
    if state["best"] is None:
        state["probe_before"] = evaluate(model, data, probe, p.batch_size)["loss"]
        base_eval, _ = validate(model, data, valid, p.batch_size)
        state["history"].append({"step": 0, **base_eval})
        state["best"] = {"step": 0, **base_eval}
        log(f"[ranker] step 0 (no training): validation NDCG@10 fused {base_eval['fused_ndcg10']:.4f} "
            f"(weight {base_eval['fusion_weight']}), LLM alone {base_eval['ndcg10']:.4f}, HR@1 {base_eval['hr1']:.4f}, "
            f"loss {base_eval['loss']:.4f}")
        _save_resume(resume, model, opt, sched, state, key, best=True)

    steps_per_epoch = math.ceil(len(examples) / p.batch_size)
    eval_steps = max(1, p.eval_every // p.batch_size)
    t0, done0 = time.time() - state["seconds"], state["step"]
    model.train()
    while state["step"] < total and state["stopped"] is None:
        s = state["step"]
        epoch, b = divmod(s, steps_per_epoch)
        order = np.random.default_rng(p.seed + 1 + epoch).permutation(len(examples))
        part = [examples[i] for i in order[b * p.batch_size:(b + 1) * p.batch_size]]
        logits = model.label_logits(_batch(data, part))
        loss = torch.nn.functional.cross_entropy(logits, torch.tensor([e[2] for e in part], device=logits.device))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([q for g in groups for q in g["params"]], 1.0)
        opt.step()
        sched.step()
        state["step"] = s + 1
        state.setdefault("losses", []).append(loss.item())
        el = time.time() - t0
        if state["step"] % 10 == 0 or state["step"] == total:
            rate = el / max(1, state["step"] - done0) if state["step"] > done0 else 0.0
            recent = float(np.mean(state["losses"][-10:]))
            log(f"[ranker] step {state['step']}/{total} (epoch {epoch + 1}), loss {recent:.4f}, "
                f"{el / 60:.1f} min elapsed, ETA {rate * (total - state['step']) / 60:.1f} min (+ validations)")
        if state["step"] % eval_steps == 0 or state["step"] == total:
            ev, _ = validate(model, data, valid, p.batch_size)
            state["history"].append({"step": state["step"], "train_loss": float(np.mean(state["losses"][-eval_steps:])),
                                     **ev})
            better = ev["fused_ndcg10"] > state["best"]["fused_ndcg10"]
            if better:
                state["best"], state["bad"] = {"step": state["step"], **ev}, 0
            else:
                state["bad"] += 1
            log(f"[ranker] step {state['step']}: validation NDCG@10 fused {ev['fused_ndcg10']:.4f} (weight "
                f"{ev['fusion_weight']}), LLM alone {ev['ndcg10']:.4f}, HR@1 {ev['hr1']:.4f}, loss {ev['loss']:.4f}"
                + (" (best)" if better else f" (best {state['best']['fused_ndcg10']:.4f} at step {state['best']['step']})"))
            if state["bad"] >= p.patience:
                state["stopped"] = f"early stopping: {p.patience} validations without a better fused NDCG@10"
            state["seconds"] = time.time() - t0
            _save_resume(resume, model, opt, sched, state, key, best=better)
        if state["stopped"] is None and (time.time() - t0) / 60 > p.max_minutes:
            state["stopped"] = f"safety cap: {p.max_minutes} minutes"
            log(f"[ranker] warning: the {p.max_minutes}-minute safety cap stopped training at step "
                f"{state['step']}/{total}; results depend on this machine's speed")
            state["seconds"] = time.time() - t0
            _save_resume(resume, model, opt, sched, state, key, best=False)
    state["stopped"] = state["stopped"] or f"budget: {p.examples} examples x {p.epochs} epoch(s)"
    state["seconds"] = time.time() - t0
    probe_after = evaluate(model, data, probe, p.batch_size)["loss"]
    w, w_ndcg = state["best"]["fusion_weight"], state["best"]["fused_ndcg10"]
    log(f"[ranker] fusion with the retriever: weight {w} on the LLM (validation NDCG@10 {w_ndcg:.4f}; "
        f"LLM alone {state['best']['ndcg10']:.4f}; the retriever alone {state['retriever_ndcg10']:.4f})")
    log(f"[ranker] cross-entropy on {len(probe)} training examples: {state.get('probe_before', float('nan')):.4f} "
        f"before training, {probe_after:.4f} after")
    manifest = {"format": ckpt.FORMAT, **identity, "params": asdict(p), "n_items": len(data.items),
                "soft_tokens": projector is not None, "examples": len(examples), "valid_users": len(valid),
                "best": state["best"], "history": state["history"], "stopped": state["stopped"],
                "cap_hit": state["stopped"].startswith("safety cap"), "steps": state["step"],
                "train_seconds": round(state["seconds"], 1), "wall_seconds": round(time.time() - t_start, 1),
                "fusion": {"weight": w, "valid_ndcg10": w_ndcg, "retriever_valid_ndcg10": state["retriever_ndcg10"]},
                "train_probe_loss": {"examples": len(probe), "before": state.get("probe_before"), "after": probe_after},
                "lora_targets": LORA_TARGETS, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _finalise(out, resume / "best", data, vectors, manifest)
    log(f"[ranker] best: step {state['best']['step']}, validation NDCG@10 fused {state['best']['fused_ndcg10']:.4f} "
        f"(LLM alone {state['best']['ndcg10']:.4f}) ({state['stopped']}); checkpoint {out}")
    return manifest


def _trainable(model: RankerModel) -> dict:
    return {n: q.detach().cpu().clone() for n, q in model.named_parameters() if q.requires_grad}


def _load_trainable(model: RankerModel, weights: dict) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w.to(params[n].device))


def _save_resume(resume: Path, model: RankerModel, opt, sched, state: dict, key: dict, best: bool) -> None:
    resume.mkdir(parents=True, exist_ok=True)
    if best:
        tmp = resume / "best.part"
        shutil.rmtree(tmp, ignore_errors=True)
        model.llm.save_pretrained(tmp / "adapter")
        if model.projector is not None:
            torch.save(model.projector.state(), tmp / "projector.pt")
        shutil.rmtree(resume / "best", ignore_errors=True)
        tmp.rename(resume / "best")
    torch.save({"key": key, "trainable": _trainable(model), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "state": state}, resume / "state.pt.part")
    (resume / "state.pt.part").replace(resume / "state.pt")


def _finalise(out: Path, best: Path, data: RankData, vectors, manifest: dict) -> None:
    """Copy the best adapter/projector into ``out`` with the item vectors; the manifest goes last."""
    (out / "manifest.json").unlink(missing_ok=True)
    for name in ("adapter", "projector.pt", "item_vectors.npy", "item_ids.json"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    shutil.copytree(best / "adapter", out / "adapter")
    if vectors is not None:
        shutil.copyfile(best / "projector.pt", out / "projector.pt")
        np.save(out / "item_vectors.npy", vectors)
    (out / "item_ids.json").write_text(json.dumps([it.id for it in data.items]))
    (out / "manifest.part").write_text(json.dumps(manifest, indent=1))
    (out / "manifest.part").replace(out / "manifest.json")
