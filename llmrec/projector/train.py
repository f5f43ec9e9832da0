"""``llmrec train-projector``: LLaVA stage-1 alignment of one modality's item vectors to the LLM.

Liu et al., "Visual Instruction Tuning" (NeurIPS 2023), stage 1: the encoder and the LLM frozen, only
the projector (:class:`llmrec.llm.projector.Projector`, vector -> ``k`` soft tokens) is trained, by
the LLM's cross-entropy on the item's own text (``Title. Description``: for posters the title and
genres) given the prompt ``prompts/describe.*`` whose only view of the item is its soft tokens.

Items are split once (seeded): ``holdout`` of them are never trained on. They choose the epoch kept
(held-out cross-entropy, early stopping) and measure the projector's quality: given only an item's
soft tokens, is its title the one the LLM ranks first among ``candidates`` titles (its own and
``candidates - 1`` other held-out titles drawn at random)? (Measured on at most ``eval_items`` of the
held-out items: each costs ``candidates`` sequences.) Titles are scored by mean per-token
log-probability; chance is ``1 / candidates``. The untrained projector is measured the same way as a
control. Budgeted by epochs; ``max_minutes`` is a safety cap, and a run it stops says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from llmrec.config import Config
from llmrec.errors import ConfigError
from llmrec.llm.projector import Projector, ProjectorSpec, embedding_rms
from llmrec.projector.prompt import Splicer, target_text


@dataclass(frozen=True)
class ProjectorParams:
    """Training hyper-parameters (config group ``projector``); defaults from there."""

    k: int = Config.default("projector.k")
    hidden: int = Config.default("projector.hidden")
    epochs: int = Config.default("projector.epochs")
    batch_size: int = Config.default("projector.batch_size")
    lr: float = Config.default("projector.lr")
    holdout: float = Config.default("projector.holdout")
    candidates: int = Config.default("projector.candidates")
    eval_items: int = Config.default("projector.eval_items")
    patience: int = Config.default("projector.patience")
    max_minutes: float = Config.default("projector.max_minutes")
    seed: int = 0


def params_from(cfg) -> ProjectorParams:
    """The ``projector_*`` keys of ``cfg`` (and ``seed``), range-checked. Raises ConfigError naming the key."""
    p = ProjectorParams(k=cfg.projector.k, hidden=cfg.projector.hidden, epochs=cfg.projector.epochs,
                        batch_size=cfg.projector.batch_size, lr=cfg.projector.lr, holdout=cfg.projector.holdout,
                        candidates=cfg.projector.candidates, eval_items=cfg.projector.eval_items,
                        patience=cfg.projector.patience,
                        max_minutes=cfg.projector.max_minutes, seed=cfg.seed)
    for key in ("k", "hidden", "epochs", "batch_size", "eval_items", "patience"):
        if getattr(p, key) < 1:
            raise ConfigError(f"config key 'projector_{key}' must be >= 1, got {getattr(p, key)}")
    if p.candidates < 2:
        raise ConfigError(f"config key 'projector_candidates' must be >= 2, got {p.candidates}")
    if not 0 < p.holdout < 1:
        raise ConfigError(f"config key 'projector_holdout' must be between 0 and 1, got {p.holdout}")
    if not (p.lr > 0 and math.isfinite(p.lr)):
        raise ConfigError(f"config key 'projector_lr' must be a positive number, got {p.lr}")
    if not p.max_minutes > 0:
        raise ConfigError(f"config key 'projector_max_minutes' must be > 0, got {p.max_minutes}")
    return p


def split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, held_out)`` of ``n`` items, ``round(holdout * n)`` (at least 2) held out."""
    m = max(2, int(round(holdout * n)))
    if n - m < 1:
        raise ConfigError(f"too few items to train a projector: {n} (with {m} held out)")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[m:]), np.sort(perm[:m])


class Standardise(torch.nn.Module):
    """Per-dimension standardisation with the training items' mean and std (kept in the checkpoint)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(np.maximum(std, 1e-6), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class AlignedProjector(torch.nn.Module):
    """Standardisation then the projector: float [..., d_mod] -> [..., k, d_llm]."""

    def __init__(self, norm: Standardise, projector: Projector):
        super().__init__()
        self.norm, self.projector = norm, projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.norm(x))


def _loss(splicer: Splicer, model: AlignedProjector, V: torch.Tensor, answers: list[torch.Tensor]) -> torch.Tensor:
    X, M, Y = splicer.batch(model(V), answers)
    logits = splicer.logits(X, M)[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), Y[:, 1:].reshape(-1),
                                             ignore_index=-100)


@torch.no_grad()
def heldout_loss(splicer: Splicer, model: AlignedProjector, V: torch.Tensor, answers: list[torch.Tensor],
                 batch_size: int) -> float:
    """Mean per-token cross-entropy (nats) of the held-out items' answers."""
    tot = cnt = 0.0
    for s in range(0, len(answers), batch_size):
        lp, n = splicer.answer_logprobs(model(V[s:s + batch_size]), answers[s:s + batch_size])
        tot -= float(lp.sum())
        cnt += float(n.sum())
    return tot / max(cnt, 1.0)


@torch.no_grad()
def title_top1(splicer: Splicer, model: AlignedProjector, V: torch.Tensor, titles: list[str], candidates: int,
               seed: int) -> dict:
    """Projector quality: for each item, its title among ``candidates`` titles (its own and others drawn
    from ``titles``, seeded), scored by mean per-token log-probability given the item's soft tokens.

    Returns ``{"top1", "chance", "items", "candidates", "mean_rank"}`` (``top1``: share of items whose
    own title scores highest; ties count against it; ``mean_rank``: 1 = first)."""
    n = len(titles)
    c = min(candidates, n)
    rng = np.random.default_rng(seed)
    ids = [splicer.answer_ids(t, end=False) for t in titles]
    ranks = []
    for i in range(n):
        others = rng.choice(np.delete(np.arange(n), i), size=c - 1, replace=False)
        cand = [i, *others.tolist()]
        soft = model(V[i:i + 1]).expand(c, -1, -1)
        lp, cnt = splicer.answer_logprobs(soft, [ids[j] for j in cand])
        score = (lp / cnt).double().cpu().numpy()
        ranks.append(1 + int((score[1:] >= score[0]).sum()))
    ranks = np.array(ranks)
    return {"top1": float((ranks == 1).mean()), "chance": 1.0 / c, "items": n, "candidates": c,
            "mean_rank": float(ranks.mean())}


# long: one training loop (epochs, held-out loss, early stopping); its steps share the loop's state
def train(llm, tokenizer, vectors: np.ndarray, titles: list[str], texts: list[str], modality: str,
          p: ProjectorParams, log=print) -> tuple[AlignedProjector, dict]:
    """Train a projector for ``modality`` on item vectors and their texts (module docstring).

    Args:
        llm, tokenizer: the frozen base LLM and its tokenizer.
        vectors: float32 [N, d_mod], one row per item (the encoder's output).
        titles, texts: the N items' titles and descriptions (the answer is ``Title. Description``).

    Returns ``(projector in eval mode, report)``; the report holds the params, the split sizes, per-epoch
    train/held-out cross-entropy, the epoch kept, the title top-1 of the untrained and trained projector,
    seconds, and ``capped`` (True when ``max_minutes`` stopped training).

    Raises ValueError when the inputs' lengths differ; ConfigError with too few items.
    """
    V = np.asarray(vectors, dtype=np.float32)
    if V.ndim != 2 or not (len(V) == len(titles) == len(texts)):
        raise ValueError(f"vectors [N, d] and N titles and texts expected, got {V.shape}, {len(titles)}, {len(texts)}")
    t0 = time.time()
    torch.manual_seed(p.seed)
    tr, ho = split(len(V), p.holdout, p.seed)
    dev = llm.get_input_embeddings().weight.device
    llm.eval()
    for q in llm.parameters():
        q.requires_grad_(False)
    splicer = Splicer(llm, tokenizer, modality)
    spec = ProjectorSpec(in_dim=V.shape[1], d_llm=llm.get_input_embeddings().weight.shape[1], k=p.k,
                         hidden=p.hidden, modality=modality)
    model = AlignedProjector(Standardise(V[tr].mean(0), V[tr].std(0)),
                             Projector(spec, embedding_rms(llm.get_input_embeddings()))).to(dev)
    Vt = torch.as_tensor(V, device=dev)
    answers = [splicer.answer_ids(target_text(t, x)) for t, x in zip(titles, texts, strict=True)]
    qi = np.sort(np.random.default_rng(p.seed + 1).permutation(ho)[:p.eval_items])  # the quality measure's items
    q_titles = [titles[i] for i in qi]
    report: dict = {"params": asdict(p), "modality": modality, "items": len(V), "train_items": len(tr),
                    "heldout_items": len(ho), "epochs": []}
    report["untrained"] = title_top1(splicer, model.eval(), Vt[qi], q_titles, p.candidates, p.seed)
    best = heldout_loss(splicer, model, Vt[ho], [answers[i] for i in ho], p.batch_size)
    report["epochs"].append({"epoch": 0, "heldout_ce": best})
    log(f"projector ({modality}): {len(tr)} training items, {len(ho)} held out; untrained: held-out CE {best:.3f}, "
        f"title top-1 {report['untrained']['top1']:.3f} (chance {report['untrained']['chance']:.3f})")
    best_state, best_epoch, stale, capped = {k: v.clone() for k, v in model.state_dict().items()}, 0, 0, False
    opt = torch.optim.AdamW(model.projector.parameters(), lr=p.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(tr) / p.batch_size)
    total = steps_per_epoch * p.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, total // 20)) * max(0.05, 1 - s / total))
    rng = np.random.default_rng(p.seed)
    step = 0
    for epoch in range(1, p.epochs + 1):
        model.train()
        order = rng.permutation(tr)
        run = cnt = 0.0
        for s in range(0, len(order), p.batch_size):
            idx = order[s:s + p.batch_size]
            loss = _loss(splicer, model, Vt[idx], [answers[i] for i in idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.projector.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            run += float(loss.detach()) * len(idx)
            cnt += len(idx)
            el = time.time() - t0
            if step % 10 == 0 or step == total:
                log(f"  step {step}/{total} (epoch {epoch}) train CE {run / cnt:.3f}  "
                    f"{el / 60:.1f} min, ETA {el / step * (total - step) / 60:.1f} min")
            if el > p.max_minutes * 60:
                capped = True
                break
        model.eval()
        ce = heldout_loss(splicer, model, Vt[ho], [answers[i] for i in ho], p.batch_size)
        report["epochs"].append({"epoch": epoch, "train_ce": run / max(cnt, 1), "heldout_ce": ce})
        log(f"epoch {epoch}: train CE {run / max(cnt, 1):.3f}, held-out CE {ce:.3f}")
        if ce < best:
            best, best_epoch, stale = ce, epoch, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        if capped:
            log(f"stopped by the safety cap projector_max_minutes={p.max_minutes}")
            break
        if stale >= p.patience:
            log(f"early stop: {stale} epochs without a better held-out CE")
            break
    model.load_state_dict(best_state)
    model.eval()
    report["epoch_kept"] = best_epoch
    report["heldout_ce"] = best
    report["trained"] = title_top1(splicer, model, Vt[qi], q_titles, p.candidates, p.seed)
    report["capped"] = capped
    report["seconds"] = round(time.time() - t0, 1)
    log(f"kept epoch {best_epoch}: held-out CE {best:.3f}, title top-1 {report['trained']['top1']:.3f} among "
        f"{report['trained']['candidates']} (chance {report['trained']['chance']:.3f}; untrained "
        f"{report['untrained']['top1']:.3f}) in {report['seconds'] / 60:.1f} min")
    return model, report
