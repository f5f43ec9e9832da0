"""The modality ablation of ``llmrec eval`` (``eval_modal``): what an item's poster adds to the ranking
LLM, measured on the same users and candidates.

The LLM is the zero-shot ranker of ``llmrec recommend`` (``prompts/rank.*``, one-pass verbalizer,
``llmrec.rank.verbalizer``) over ``eval_ranker_retriever``'s top ``candidates``, with the last
``history_max`` history items; each item is shown as

- ``text``: its quoted title and text (genres) only;
- ``image``: the same, plus its poster's soft tokens (``eval_modal_store``'s image vectors through
  its trained projector, ``llmrec train-projector``) where it has a poster;
- ``caption``: the same, plus its poster's caption (``llmrec ingest --images``: OCR text and image
  labels) as quoted text where it has one.

Each variant gives ``{retriever}+llm-{variant}`` (candidates ordered by the label log-probability)
and ``{retriever}+llm-{variant}+fused`` (``w * z(LLM) + (1 - w) * z(retriever)``, ``w`` on a 0.05 grid
chosen on VALIDATION NDCG@10, as :mod:`llmrec.eval.llm_systems`). Users whose target is not among
the candidates keep the retriever's rank, and the LLM is not called for them. Log-probabilities are
cached in ``OUT/parts/modal-{variant}.json`` (resumable).

Reported (:func:`summarize`, :func:`report_lines`) over the first ``eval_modal_users`` users (all when
0), and over their sparse slice (test target with at most ``eval_sparse_max`` training
interactions): NDCG@10 and Recall@10 with 95% bootstrap intervals, and paired differences against
the retriever alone and against the ``text`` variant (the same users resampled together).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from llmrec.config import Config
from llmrec.data.splits import Split
from llmrec.errors import ConfigError, StoreError
from llmrec.eval.llm_systems import _Cache, _scores, alone_and_fused, candidates
from llmrec.eval.ranker import retriever_for
from llmrec.metrics import bootstrap_ci, ndcg_at_k, paired_diff_ci, recall_at_k

VARIANTS = ("text", "image", "caption")


def _prompt_hash() -> str:
    root = Path(__file__).resolve().parents[2] / "prompts"
    h = hashlib.sha256()
    for f in ("rank.system.txt", "rank.user.txt"):
        h.update((root / f).read_bytes())
    return h.hexdigest()[:16]


def store_path(cfg: Config) -> Path | None:
    """``eval_modal_store`` expanded and resolved, or None when unset. Raises ConfigError naming the key
    when it is not a folder holding a store (``chroma.sqlite3``)."""
    if cfg.eval.modal_store is None:
        return None
    store = Path(cfg.eval.modal_store).expanduser().resolve()
    if not store.is_dir():
        raise ConfigError(f"config key 'eval_modal_store' names {store}, which does not exist: a store with "
                          f"poster vectors (llmrec ingest --images)")
    if not (store / "chroma.sqlite3").exists():
        raise ConfigError(f"config key 'eval_modal_store' names {store}, which is not a store (no chroma.sqlite3)")
    return store


def load_content(cfg: Config, split: Split) -> tuple[dict[str, str], dict]:
    """The captions (item id -> caption) of ``eval_modal_store``'s posters and what identifies them
    (store path, encoder and captioner ids, poster and caption counts).

    Raises:
        ConfigError: ``eval_modal`` needs a store and ``eval_modal_store`` is unset or not a store folder.
        StoreError: the store holds no poster vectors, or none of this split's items.
    """
    from llmrec.store import ItemStore

    store = store_path(cfg)
    if store is None:
        raise ConfigError(f"eval_modal {cfg.eval.modal} needs config key 'eval_modal_store': a store folder with "
                          "poster vectors (llmrec ingest --images)")
    ids, _, metas = ItemStore(store, kind="image").matrix()
    if not ids:
        raise StoreError(f"eval_modal_store {store} holds no image vectors: run llmrec ingest --images "
                         f"--data-dir {store}")
    known = set(split.item_ids)
    if not known & set(ids):
        raise StoreError(f"eval_modal_store {store} holds no item of the split {split.name}")
    caps = {i: str(m.get("caption") or "") for i, m in zip(ids, metas, strict=True) if i in known}
    ident = {"store": str(store), "posters": sum(1 for i in ids if i in known),
             "captions": sum(1 for c in caps.values() if c),
             "encoder": sorted({str(m.get("encoder")) for m in metas}),
             "captioner": sorted({str(m.get("captioner")) for m in metas})}
    return {i: c for i, c in caps.items() if c}, ident


class VerbalizerScorer:
    """``score(batch) -> float64 [B, n]``: the zero-shot verbalizer's label log-probabilities for
    (history items, candidate items) pairs, the items shown as ``variant`` (module docstring).

    Args:
        backend: an LLM backend (``llmrec.llm``) with ``score_labels``.
        variant: ``text``, ``image`` or ``caption``.
        captions: item id -> caption (``caption``).
        soft: a :class:`~llmrec.projector.soft.SoftTokens` of the image modality (``image``).
    """

    def __init__(self, backend, variant: str, captions: dict[str, str] | None = None, soft=None):
        if variant not in VARIANTS:
            raise ConfigError(f"unknown eval_modal variant {variant!r}; known: {', '.join(VARIANTS)}")
        if variant == "image" and soft is None:
            raise ConfigError("the image variant needs the store's soft tokens")
        self.backend, self.variant, self.captions, self.soft = backend, variant, captions or {}, soft

    def _item(self, it):
        cap = self.captions.get(it.id, "") if self.variant == "caption" else ""
        return dataclasses.replace(it, caption=cap, transcript="")

    def score(self, batch) -> np.ndarray:
        from llmrec.rank.verbalizer import verbalizer_rank

        rows = []
        for hist, cands in batch:
            h, c = [self._item(i) for i in hist], [self._item(i) for i in cands]
            soft = self.soft.tokens(h + c) if self.variant == "image" else None
            rows.append(verbalizer_rank(self.backend, h, c, soft).logprobs)
        return np.stack(rows)


def run(cfg: Config, split: Split, users: list[str], parts: Path, results: dict, log) -> dict:
    """Score every ``cfg.eval.modal`` variant (module docstring). Returns a JSON-ready dict:
    ``{"users", "retriever", "content", "systems": {name: {"ranks": [per user of users[:cap]], ...}},
    "sparse": [bool per user], "called"}`` for :func:`summarize`.

    Raises:
        ConfigError: an unknown variant, or ``eval_ranker_retriever`` not evaluated with protocol full.
        StoreError / ModelError: the store or its projector cannot serve the variant.
    """
    from llmrec.rank import checkpoint as ckpt

    base = cfg.eval.ranker_retriever
    if base not in results or "full" not in results[base]:
        raise ConfigError(f"eval_modal needs eval_ranker_retriever {base!r} among eval_systems with protocol full")
    bad = [v for v in cfg.eval.modal if v not in VARIANTS]
    if bad:
        raise ConfigError(f"unknown eval_modal variant(s) {bad}; known: {', '.join(VARIANTS)}")
    cap = cfg.eval.modal_users or len(users)
    sub = list(users[:cap])
    captions, content = (load_content(cfg, split) if set(cfg.eval.modal) - {"text"} else ({}, {}))
    scorer, identity, _ = retriever_for(cfg, split, log, vectors=False)
    n, H = cfg.candidates, cfg.history_max
    cands, rscore, pos, called = candidates(scorer, split, sub, n)
    shown = {st: {u: split.history(u, st)[-H:] for u in sub} for st in ("valid", "test")}
    base_ranks = np.asarray(results[base]["full"]["ranks"])[:cap]
    counts = Counter(i for u in split.users for i in split.train[u])
    out = {"users": len(sub), "retriever": base, "content": content, "history": H, "candidates": n,
           "called": {st: len(called[st]) for st in called},
           "sparse": [counts[split.target(u, cfg.eval.stage)] <= cfg.eval.sparse_max for u in sub],
           "sparse_max": cfg.eval.sparse_max, "systems": {base: {"ranks": base_ranks.tolist()}}}
    holder: dict = {}

    def backend():
        if "b" not in holder:
            from llmrec.llm.hf import TransformersBackend

            holder["b"] = TransformersBackend(cfg)
        return holder["b"]

    for variant in cfg.eval.modal:
        seen = content if variant != "text" else None  # what this variant's log-probabilities depend on
        soft = None
        if variant == "image":
            from llmrec.projector.soft import SoftTokens

            store_cfg = cfg.replace(data_dir=Path(cfg.eval.modal_store))
            soft = SoftTokens(store_cfg, "image")
            folder = store_cfg.projector_path("image")
            seen = dict(content, projector=hashlib.sha256((folder / "projector.pt").read_bytes()).hexdigest()[:16],
                        projector_input=ckpt.read_manifest(folder).get("encoder"))
        key = {"variant": variant, "prompt": _prompt_hash(), "base_model": ckpt.base_identity(cfg), "history": H,
               "retriever": identity, "content": seen}
        cache = _Cache(parts / f"modal-{variant}.json", key)
        model: dict = {}

        def model_fn(variant=variant, soft=soft, model=model):
            if "m" not in model:
                model["m"] = VerbalizerScorer(backend(), variant, captions, soft)
            return model["m"]

        lp = {st: _scores(model_fn, cache, f"modal-{variant} {st}", [(u, shown[st][u], cands[st, u]) for u in called[st]],
                          split, log, 1) for st in ("valid", "test")}
        name = f"{base}+llm-{variant}"
        ranked, w, wv, _ = alone_and_fused(name, lp, rscore, pos, called, sub, base_ranks, n)
        out["systems"].update({sysname: {"ranks": ranks} for sysname, ranks in ranked.items()})
        secs, timed = cache.data.get("seconds", {}), cache.data.get("timed_users", {})
        out["systems"][name]["seconds_per_user"] = {k: round(secs[k] / timed[k], 3) for k in secs if timed.get(k)}
        out["systems"][f"{name}+fused"].update(fusion_weight=w, valid_ndcg10_called=wv)
    return out


def summarize(res: dict, n_boot: int = 1000, seed: int = 0) -> dict:
    """Means, 95% bootstrap intervals and paired differences of :func:`run`'s systems, over all its
    users and over the sparse slice: ``{slice: {"users": n, "systems": {name: {metric: [mean, lo, hi]}},
    "vs_retriever": {name: {metric: [diff, lo, hi]}}, "vs_text": {...}}}``, metrics NDCG@10 and Recall@10."""
    sparse = np.asarray(res["sparse"], dtype=bool)
    base = res["retriever"]
    out = {}
    for sl, mask in (("all", np.ones_like(sparse)), ("sparse", sparse)):
        per = {name: {"NDCG@10": ndcg_at_k(np.asarray(s["ranks"])[mask], 10),
                      "Recall@10": recall_at_k(np.asarray(s["ranks"])[mask], 10)} for name, s in res["systems"].items()}
        d: dict = {"users": int(mask.sum()), "systems": {}, "vs_retriever": {}, "vs_text": {}}
        for name, m in per.items():
            d["systems"][name] = {k: [float(v.mean()) if len(v) else float("nan"), *bootstrap_ci(v, n_boot, seed)]
                                  for k, v in m.items()}
            if name != base:
                d["vs_retriever"][name] = {k: list(paired_diff_ci(v, per[base][k], n_boot, seed)) for k, v in m.items()}
            text = f"{base}+llm-text" + ("+fused" if name.endswith("+fused") else "")
            if name.startswith(f"{base}+llm-") and name != text and text in per:
                d["vs_text"][name] = {k: list(paired_diff_ci(v, per[text][k], n_boot, seed)) for k, v in m.items()}
        out[sl] = d
    return out


def _ci(x) -> str:
    return f"{x[0]:.4f} [{x[1]:.4f}, {x[2]:.4f}]"


def _diff(x) -> str:
    return f"{x[0]:+.4f} [{x[1]:+.4f}, {x[2]:+.4f}]"


def report_lines(res: dict, summary: dict) -> list[str]:
    """The markdown section of the modality ablation."""
    c = res.get("content") or {}
    lines = ["## Modality ablation (the zero-shot ranking LLM with text, + poster soft tokens, + caption)", "",
             f"The first {res['users']} users; the LLM reorders `{res['retriever']}`'s top {res['candidates']} "
             f"(called for {res['called']['test']} test and {res['called']['valid']} validation users whose target "
             f"is among them), history of the last {res['history']} items. Content: "
             + (f"`{c.get('store')}`, {c.get('posters')} posters, {c.get('captions')} captions "
                f"(captioner {', '.join(c.get('captioner', []))})." if c else "text only.") +
             f" Sparse slice: test target with <= {res['sparse_max']} training interactions.", ""]
    for sl, d in summary.items():
        lines += [f"**{'All' if sl == 'all' else 'Sparse slice'}** ({d['users']} users)", "",
                  "| system | NDCG@10 | Recall@10 | Δ NDCG@10 vs retriever | Δ NDCG@10 vs text |",
                  "|---|---|---|---|---|"]
        for name, m in d["systems"].items():
            vr = d["vs_retriever"].get(name, {}).get("NDCG@10")
            vt = d["vs_text"].get(name, {}).get("NDCG@10")
            lines.append(f"| {name} | {_ci(m['NDCG@10'])} | {_ci(m['Recall@10'])} | {_diff(vr) if vr else ''} | "
                         f"{_diff(vt) if vt else ''} |")
        lines.append("")
    fused = {n: s for n, s in res["systems"].items() if "fusion_weight" in s}
    if fused:
        lines += ["Fusion weights of the LLM (chosen on validation): " + ", ".join(
            f"`{n}` {s['fusion_weight']}" for n, s in fused.items()) + ".", ""]
    speed = {n: s["seconds_per_user"] for n, s in res["systems"].items() if s.get("seconds_per_user")}
    if speed:
        lines += ["Seconds per user (this run): " + "; ".join(
            f"`{n}` " + ", ".join(f"{k} {v}" for k, v in sp.items()) for n, sp in speed.items()) + ".", ""]
    return lines
