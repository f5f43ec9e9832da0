"""SASRec: self-attentive sequential recommendation, the trained retriever.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018, trained as in
Klenitskiy & Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?"
(RecSys 2023): full-softmax cross-entropy over ALL items, every prefix of a training sequence a
target (next-item prediction at every position), no negative sampling.

The whole model is in this file (nanoGPT style): item + position embeddings, ``blocks`` pre-LN
causal transformer blocks, a final LayerNorm; the score of item ``i`` for a user is the dot
product of the last hidden state with item ``i``'s input embedding (tied weights). So
retrieval is ``llmrec.topk(user_vectors, item_vectors, k, exclude=history)``.

Checkpoints: :func:`train_sasrec` -> :func:`save` writes ``DIR/sasrec.pt`` (weights and
hyper-parameters) and ``DIR/manifest.json`` (data set, split fingerprint, item id order,
hyper-parameters, seed, best epoch, validation metrics, training time). The documented place is
:func:`default_dir`: ``{home}/retrievers/{dataset}/`` (never in git). :func:`load_retriever`
reads it back.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmrec.config import Config


@dataclass
class SASRecParams:
    """Hyper-parameters of SASRec and its training; defaults (measured on ml-latest-small) from the config
    group ``sasrec`` (:class:`llmrec.config.training.SasrecConfig`), written once there."""

    max_len: int = Config.default("sasrec.max_len")
    """Window: the most recent items the model reads (and the training window length)."""
    dim: int = Config.default("sasrec.dim")
    """Hidden size = item embedding size (the user/item vector dimension d)."""
    blocks: int = Config.default("sasrec.blocks")
    """Transformer blocks."""
    heads: int = Config.default("sasrec.heads")
    """Attention heads per block."""
    dropout: float = Config.default("sasrec.dropout")
    """Dropout on embeddings, attention and MLP."""
    lr: float = Config.default("sasrec.lr")
    """Adam learning rate."""
    weight_decay: float = Config.default("sasrec.weight_decay")
    """AdamW weight decay (0: plain Adam)."""
    batch_size: int = Config.default("sasrec.batch_size")
    """Training windows per step."""
    max_epochs: int = Config.default("sasrec.max_epochs")
    """Upper bound on epochs."""
    patience: int = Config.default("sasrec.patience")
    """Stop after this many epochs without a better validation NDCG@10."""
    max_minutes: float = Config.default("sasrec.max_minutes")
    """Safety cap on training wall time, NOT the budget: training is budgeted by epochs
    (``max_epochs``, ``patience``) so that the result does not depend on the machine's speed. When
    the cap stops a run, the info's ``stopped`` says so (and the log warns)."""
    bf16: bool = Config.default("sasrec.bf16")
    """Train under bfloat16 autocast (weights, loss and evaluation stay float32). Off by default: on
    a CPU without native bf16 (AVX2 only) an epoch took 10x longer (166 s vs 17 s on ml-latest-small),
    and bf16 changes the trained model, so published numbers are float32."""


# ---------------------------------------------------------------------------------- model
class Block(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d, d))
        self.heads, self.dropout = heads, dropout
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, L, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, L, D)))
        return x + self.drop(self.mlp(self.ln2(x)))


class SASRec(nn.Module):
    """Token 0 is padding; item index ``i`` (0-based, the split's order) is token ``i + 1``."""

    def __init__(self, n_items: int, p: SASRecParams):
        super().__init__()
        self.n_items, self.p = n_items, p
        self.item_emb = nn.Embedding(n_items + 1, p.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(p.max_len, p.dim)
        self.drop = nn.Dropout(p.dropout)
        self.blocks = nn.ModuleList(Block(p.dim, p.heads, p.dropout) for _ in range(p.blocks))
        self.ln_f = nn.LayerNorm(p.dim)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens int64 [B, L] (left-padded with 0, L <= max_len) -> hidden float32 [B, L, dim]."""
        B, L = tokens.shape
        pos = torch.arange(self.p.max_len - L, self.p.max_len, device=tokens.device)  # last = max_len-1
        x = self.drop(self.item_emb(tokens) * math.sqrt(self.p.dim) + self.pos_emb(pos))
        real = tokens != 0
        causal = torch.ones(L, L, dtype=torch.bool, device=tokens.device).tril()
        eye = torch.eye(L, dtype=torch.bool, device=tokens.device)
        mask = (causal & real[:, None, :]) | eye  # [B, L, L]: attend to earlier real items and self
        mask = mask[:, None]
        for blk in self.blocks:
            x = blk(x, mask)
        return self.ln_f(x)

    def item_matrix(self) -> torch.Tensor:
        """float32 [N, dim]: the item vectors (tied input embeddings, padding row dropped)."""
        return self.item_emb.weight[1:]


# ---------------------------------------------------------------------------------- batching
def _left_pad(seqs: list[list[int]], L: int) -> torch.Tensor:
    out = torch.zeros(len(seqs), L, dtype=torch.long)
    for b, s in enumerate(seqs):
        s = s[-L:]
        if s:
            out[b, L - len(s):] = torch.tensor(s, dtype=torch.long)
    return out


def _windows(train: list[list[int]], L: int, rng: np.random.Generator) -> list[list[int]]:
    """Cut each token sequence into windows of at most L + 1 tokens (input L, targets shifted).

    Windows end at the sequence end minus a random offset in [0, L), then every L tokens back,
    so each epoch sees different boundaries and every transition is a target at least once
    (the first chunk always ends at the sequence end)."""
    out = []
    for s in train:
        n = len(s)
        if n < 2:
            continue
        if n <= L + 1:
            out.append(s)
            continue
        out.append(s[n - L - 1:])
        end = n - int(rng.integers(0, L))
        while end > 1:
            out.append(s[max(0, end - L - 1):end])
            end -= L
    return out


@torch.no_grad()
def user_hidden(model: SASRec, histories: list[list[int]], batch: int = 256) -> torch.Tensor:
    """float32 [B, dim]: the last hidden state for each history of 0-based item indices.
    An empty history gives the zero vector (every item then ties)."""
    model.eval()
    outs = []
    for s in range(0, len(histories), batch):
        chunk = [[i + 1 for i in h] for h in histories[s:s + batch]]
        L = max(1, min(model.p.max_len, max(len(h) for h in chunk)))
        h = model(_left_pad(chunk, L))[:, -1]
        empty = torch.tensor([len(c) == 0 for c in chunk])
        h[empty] = 0.0
        outs.append(h)
    return torch.cat(outs) if outs else torch.zeros(0, model.p.dim)


def _ndcg10(model: SASRec, histories: list[list[int]], targets: list[int]) -> tuple[float, float]:
    from llmrec.metrics import ranks_from_scores

    u = user_hidden(model, histories)
    scores = (u @ model.item_matrix().detach().T).numpy()
    r = ranks_from_scores(scores, np.asarray(targets), histories)
    hit = r < 10
    return float(np.mean(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0))), float(np.mean(hit))


# ---------------------------------------------------------------------------------- training
def train_sasrec(train: list[list[int]], valid_hist: list[list[int]], valid_target: list[int], n_items: int,
                 params: SASRecParams | None = None, seed: int = 0, log=print) -> tuple[SASRec, dict]:
    """Train SASRec with full-softmax cross-entropy; early stopping on validation NDCG@10.

    Args:
        train: per user, the training item indices (0-based, chronological). Only these are
            ever targets: validation/test items never reach training.
        valid_hist / valid_target: per user, the validation input (= ``train``) and target.
        n_items: N, the number of items.
    Returns:
        (model at its best validation epoch, info dict: best_epoch, epochs, valid NDCG@10 and
        Recall@10, train_seconds, ``stopped`` (why training ended), ``cap_hit`` (the wall-clock
        safety cap ended it), history of per-epoch (loss, ndcg)).
    """
    p = params or SASRecParams()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SASRec(n_items, p)
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay, betas=(0.9, 0.98))
    tokens = [[i + 1 for i in s] for s in train]
    best, best_state, best_epoch, bad = -1.0, None, 0, 0
    t0, hist = time.time(), []
    for epoch in range(1, p.max_epochs + 1):
        model.train()
        wins = _windows(tokens, p.max_len, rng)
        # Batches of similar lengths (padded to their own longest window), in random order:
        # the same windows as plain shuffling, far less padding.
        wins.sort(key=lambda w: (len(w), rng.random()))
        batches = [wins[s:s + p.batch_size] for s in range(0, len(wins), p.batch_size)]
        total, count = 0.0, 0
        for b in rng.permutation(len(batches)):
            chunk = batches[b]
            batch = _left_pad(chunk, max(len(w) for w in chunk))
            inp, tgt = batch[:, :-1], batch[:, 1:]
            keep = tgt != 0
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=p.bf16):
                h = model(inp)
                logits = h[keep] @ model.item_matrix().T
            loss = F.cross_entropy(logits.float(), tgt[keep] - 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * int(keep.sum())
            count += int(keep.sum())
        ndcg, rec = _ndcg10(model, valid_hist, valid_target)
        elapsed = time.time() - t0
        hist.append({"epoch": epoch, "loss": total / max(count, 1), "valid_ndcg10": ndcg, "valid_recall10": rec})
        improved = ndcg > best
        if improved:
            best, best_rec, best_epoch, bad = ndcg, rec, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
        per_epoch = elapsed / epoch
        # Left: at least until patience runs out (or max_epochs), at most until max_epochs.
        least = min(p.max_epochs - epoch, p.patience - bad) * per_epoch
        most = (p.max_epochs - epoch) * per_epoch
        log(f"[sasrec seed {seed}] epoch {epoch:3d} loss {total / max(count, 1):.4f} valid NDCG@10 {ndcg:.4f} "
            f"R@10 {rec:.4f}{' *' if improved else ''}  {elapsed:.0f}s elapsed, {least:.0f}-{most:.0f}s left")
        if bad >= p.patience:
            stopped = f"early stopping (no better validation NDCG@10 for {p.patience} epochs)"
            break
        if elapsed > p.max_minutes * 60 and epoch < p.max_epochs:
            stopped = f"time cap hit ({p.max_minutes:g} min) after epoch {epoch}"
            log(f"[sasrec seed {seed}] WARNING: {stopped}: the result depends on this machine's speed")
            break
    else:
        stopped = f"max_epochs ({p.max_epochs})"
    model.load_state_dict(best_state)
    model.eval()
    info = {"best_epoch": best_epoch, "epochs": epoch, "valid_ndcg10": best, "valid_recall10": best_rec,
            "train_seconds": round(time.time() - t0, 1), "stopped": stopped,
            "cap_hit": stopped.startswith("time cap"), "history": hist, "seed": seed}
    return model, info


# ---------------------------------------------------------------------------------- files
def default_dir(home: str | Path, dataset: str) -> Path:
    """Where the trained retriever of ``dataset`` lives: ``{home}/retrievers/{dataset}/``."""
    return Path(home) / "retrievers" / dataset


def save(model: SASRec, item_ids: list[str], folder: str | Path, manifest: dict) -> Path:
    """Write ``folder/sasrec.pt`` and ``folder/manifest.json`` (atomically, via temp files)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "sasrec.pt.part"
    torch.save({"state_dict": model.state_dict(), "params": asdict(model.p), "n_items": model.n_items}, tmp)
    tmp.replace(folder / "sasrec.pt")
    man = dict(manifest, kind="sasrec", params=asdict(model.p), item_ids=list(item_ids), weights="sasrec.pt")
    (folder / "manifest.json.part").write_text(json.dumps(man, indent=1))
    (folder / "manifest.json.part").replace(folder / "manifest.json")
    return folder / "sasrec.pt"


def same_training(manifest: dict, p: SASRecParams) -> bool:
    """Whether a saved manifest's model is what training with ``p`` would give: the same
    hyper-parameters (keys missing from an older manifest take their defaults); the wall-clock cap
    counts only if it stopped the saved run."""
    known = {f.name for f in fields(SASRecParams)}
    try:
        saved = SASRecParams(**{k: v for k, v in manifest.get("params", {}).items() if k in known})
    except TypeError:
        return False
    cap_hit = bool(manifest.get("train", {}).get("cap_hit"))
    a, b = asdict(saved), asdict(p)
    if not cap_hit:
        a.pop("max_minutes"), b.pop("max_minutes")
    return a == b
