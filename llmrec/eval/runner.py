"""``llmrec eval``: run every configured system under every configured protocol, write the report.

Resumable: each finished (system, protocol) result is written to ``OUT/parts/<system>.json``
(per-user ranks, timings) as soon as it is done; a rerun with the same ``OUT`` skips what is
there (``fresh=True`` starts over). A trained SASRec is reused from ``retriever_dir`` when its
manifest matches the split fingerprint and hyper-parameters, so an interrupted run never trains
the same seed twice.
"""

from __future__ import annotations

import importlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from llmrec.config import Config
from llmrec.data.splits import Split
from llmrec.errors import ConfigError
from llmrec.eval import report
from llmrec.eval.protocols import full_ranking, rerank, sampled
from llmrec.eval.systems import (
    FUSION_STEP,
    SYSTEMS,
    build,
    build_system,
    load_split,
    log,
    retriever_dir,
    train_or_load_sasrec,
)
from llmrec.retrieval import sasrec_retriever
from llmrec.retrieval.base import RETRIEVERS
from llmrec.retrieval.topk import topk

PROTOCOLS = ("full", "sampled", "cold-items")
"""``full`` and ``sampled`` apply to every system; ``cold-items`` is its own run (``llmrec.eval.cold``)."""












def _evaluate(scorer, cfg: Config, split: Split, users: list[str], name: str) -> dict:
    out: dict = {}
    if "full" in cfg.eval.protocols:
        r = full_ranking(scorer, split, cfg.eval.stage, users, cfg.candidates, log=log, label=f"full {name}")
        out["full"] = {"ranks": r["ranks"].tolist(), "seconds": round(r["seconds"], 2)}
        out["_top"] = r["top"]
    if "sampled" in cfg.eval.protocols:
        r = sampled(scorer, split, cfg.eval.stage, users, cfg.eval.negatives, cfg.seed, cfg.history_max, log=log)
        out["sampled"] = {"ranks": r["ranks"].tolist(), "valid": r["valid"], "seconds": round(r["seconds"], 2)}
    return out


def _chosen_ok(parts: Path, cfg: Config) -> bool:
    """The saved ``sasrec`` choice exists and was made among exactly the configured seeds."""
    p = parts / "sasrec.json"
    return p.exists() and json.loads(p.read_text()).get("among") == list(cfg.sasrec.seeds)


def _save_part(parts: Path, name: str, res: dict) -> None:
    res = {k: v for k, v in res.items() if not k.startswith("_")}
    tmp = parts / f"{name}.json.part"
    tmp.write_text(json.dumps(res))
    tmp.replace(parts / f"{name}.json")


# long: the harness's resumable sequence of systems and protocols, step by step
def run(cfg: Config, out: str | Path, fresh: bool = False, config_name: str = "") -> dict:
    """Evaluate ``cfg.eval.systems`` on ``cfg.dataset``; write ``out/metrics.json``, ``out/report.md``,
    ``out/*.png``. Returns the metrics dict. Raises ConfigError on an unknown system/protocol."""
    torch.set_num_threads(min(torch.get_num_threads(), 2) if torch.get_num_threads() > 0 else 2)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    bad = [p for p in cfg.eval.protocols if p not in PROTOCOLS]
    if bad:
        raise ConfigError(f"unknown eval protocol(s) {bad}; known: {', '.join(PROTOCOLS)}")
    bad = [s for s in cfg.eval.systems if s not in SYSTEMS]
    if bad:
        raise ConfigError(f"unknown eval system(s) {bad}; known: {', '.join(SYSTEMS)}")
    if cfg.eval.stage not in ("test", "valid"):
        raise ConfigError(f"eval_stage must be test or valid, got {cfg.eval.stage!r}")
    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    log(f"[eval] {cfg.summary()}; full config: {cfg.write(out / 'config.json')}")
    t0 = time.time()
    split = load_split(cfg)
    users = list(split.users)
    log(f"[eval] {split.name}: {split.stats()} (5-core, leave-one-out), {len(users)} {cfg.eval.stage} users")
    results: dict = {}
    for name in cfg.eval.systems:
        if not (RETRIEVERS[name].fits_split or RETRIEVERS[name].pick_seed):
            continue  # built from the seeds or from other systems: after the seeds, below
        per_seed = RETRIEVERS[name].pick_seed  # sasrec: one result per seed, then the validation-best
        names = [name] if not per_seed else [f"{name}[seed={s}]" for s in cfg.sasrec.seeds]
        if all((parts / f"{n}.json").exists() for n in names) and (not per_seed or _chosen_ok(parts, cfg)):
            for n in names + ([name] if per_seed else []):
                results[n] = json.loads((parts / f"{n}.json").read_text())
            log(f"[eval] {name}: done in an earlier run (resumed)")
            continue
        if not per_seed:
            extra: dict = {}
            t = time.time()
            scorer = build_system(name, cfg, split, extra)
            fit_s = time.time() - t
            res = _evaluate(scorer, cfg, split, users, name)
            res.update(extra, fit_seconds=round(fit_s, 2))
            _save_part(parts, name, res)
            results[name] = res
            log(f"[eval] {name}: fit {fit_s:.1f}s, eval {res.get('full', {}).get('seconds', 0)}s")
            continue
        best = None
        for seed, n in zip(cfg.sasrec.seeds, names, strict=True):
            if (parts / f"{n}.json").exists():
                res = json.loads((parts / f"{n}.json").read_text())
            else:
                retr, info = train_or_load_sasrec(cfg, split, seed)
                res = _evaluate(sasrec_retriever.IndexScorer(retr, n), cfg, split, users, n)
                res.update(train_seconds=info["train_seconds"], best_epoch=info["best_epoch"],
                           epochs=info["epochs"], valid_ndcg10=info["valid_ndcg10"], seed=seed,
                           stopped=info.get("stopped", "unknown (trained before llmrec recorded it)"),
                           cap_hit=bool(info.get("cap_hit")),
                           eval_seconds=res.get("full", {}).get("seconds"))
                _save_part(parts, n, res)
            results[n] = res
            if best is None or res["valid_ndcg10"] > results[best]["valid_ndcg10"]:
                best = n
        chosen = dict(results[best], selected=f"{best} (best validation NDCG@10)", among=list(cfg.sasrec.seeds))
        results["sasrec"] = chosen
        _save_part(parts, "sasrec", chosen)
        # The chosen seed is copied to {retriever_dir}/sasrec.pt + manifest.json (checked through Chroma below).
        src = retriever_dir(cfg) / f"seed{chosen['seed']}"
        if src.exists():
            for f in ("sasrec.pt", "manifest.json"):
                shutil.copyfile(src / f, retriever_dir(cfg) / f)
            log(f"[eval] retriever for {split.name}: {retriever_dir(cfg) / 'sasrec.pt'} (seed {chosen['seed']})")
            chosen["chroma"] = _store_and_check(cfg, split, chosen)
            _save_part(parts, "sasrec", chosen)
    if "sasrec-ensemble" in cfg.eval.systems:
        results["sasrec-ensemble"] = _ensemble(cfg, split, users, parts)
    if "fusion" in cfg.eval.systems:
        results["fusion"] = _fusion(cfg, split, users, parts)
    if cfg.eval.ranker:
        results.update(_run_ranker(cfg, split, users, parts, results))
    if cfg.eval.llm:
        from llmrec.eval import llm_systems

        results.update(llm_systems.run(cfg, split, users, parts, results, log))
    modal = None
    if cfg.eval.modal:
        from llmrec.eval import modal_systems

        modal = modal_systems.run(cfg, split, users, parts, results, log)
    metrics = report.build_metrics(cfg, split, results, config_name)
    if modal is not None:
        metrics["modalities"] = {
            "setup": {k: v for k, v in modal.items() if k not in ("systems", "sparse")},
            "systems": {n: {k: v for k, v in s.items() if k != "ranks"} for n, s in modal["systems"].items()},
            "summary": modal_systems.summarize(modal, cfg.eval.bootstrap, cfg.seed)}
        _save_part(parts, "modalities", modal)
    if "cold-items" in cfg.eval.protocols:
        from llmrec.eval import cold_protocol

        metrics["cold_items"] = cold_protocol.run(cfg, split, parts, log)
    metrics["seconds_total"] = round(time.time() - t0, 1)
    report.write_all(metrics, results, out, cfg)
    log(f"[eval] wrote {out / 'metrics.json'}, {out / 'report.md'} in {time.time() - t0:.0f}s")
    return metrics


def _ensemble(cfg: Config, split: Split, users: list[str], parts: Path) -> dict:
    """``sasrec-ensemble``: the sum of the scores of every trained seed (``sasrec_seeds``), as one
    retriever (concatenated vectors). Its validation NDCG@10 is recorded next to the seeds' own."""
    if (parts / "sasrec-ensemble.json").exists():
        res = json.loads((parts / "sasrec-ensemble.json").read_text())
        if res.get("seeds") == list(cfg.sasrec.seeds):
            log("[eval] sasrec-ensemble: done in an earlier run (resumed)")
            return res
    ens = build("sasrec-ensemble", cfg, split)
    valid = full_ranking(ens, split, "valid", users)["ranks"]
    res = _evaluate(ens, cfg, split, users, "sasrec-ensemble")
    res.update(seeds=list(cfg.sasrec.seeds), valid_ndcg10=float(np.where(valid < 10, 1 / np.log2(valid + 2.0), 0).mean()),
               eval_seconds=res.get("full", {}).get("seconds"))
    _save_part(parts, "sasrec-ensemble", res)
    spec = {"members": [f"seed{s}" for s in cfg.sasrec.seeds], "valid_ndcg10": res["valid_ndcg10"],
            "fingerprint": split.fingerprint()}
    (retriever_dir(cfg) / "ensemble.json").write_text(json.dumps(spec, indent=1))
    return res




def _fusion(cfg: Config, split: Split, users: list[str], parts: Path) -> dict:
    """``fusion``: the ``eval_fusion`` members' standardised scores summed with simplex weights
    chosen on validation NDCG@10 (``llmrec.retrieval.fusion``)."""
    key = {"members": list(cfg.eval.fusion), "seeds": list(cfg.sasrec.seeds), "step": FUSION_STEP}
    if (parts / "fusion.json").exists():
        res = json.loads((parts / "fusion.json").read_text())
        if {k: res.get(k) for k in key} == key:
            log("[eval] fusion: done in an earlier run (resumed)")
            return res
    t = time.time()
    extra: dict = {}
    fused = build("fusion", cfg, split, extra)
    weights, valid, tried = extra["weights"], extra["valid_ndcg10"], extra["grid"]
    log(f"[eval] fusion of {cfg.eval.fusion}: weights {weights} (validation NDCG@10 {valid:.4f})")
    res = _evaluate(fused, cfg, split, users, "fusion")
    res.update(key, weights=weights, valid_ndcg10=valid, grid=tried, fit_seconds=round(time.time() - t, 1))
    _save_part(parts, "fusion", res)
    return res


def _store_and_check(cfg: Config, split: Split, chosen: dict) -> str:
    """Put the chosen retriever's item vectors in Chroma (``{retriever_dir}/chroma``, collection
    ``items_sasrec``) when the item store is available, read the matrix back and check that
    ``llmrec.topk`` over it reproduces the evaluated ranks' top-20. Returns what happened."""
    from llmrec.store import ItemStore

    retr = sasrec_retriever.load_retriever(retriever_dir(cfg))
    store = ItemStore(retriever_dir(cfg) / "chroma", kind="sasrec")
    sasrec_retriever.store_item_vectors(retr, store, split.items)
    ids, mat, _ = store.matrix()
    if ids != split.item_ids:
        return "stored, but the store's id order differs from the split's"
    hist = [split.history(u, cfg.eval.stage) for u in split.users]
    _, idx = topk(torch.from_numpy(retr.user_vectors_idx(hist)), torch.from_numpy(mat), 20, exclude=hist)
    ranks = np.asarray(chosen["full"]["ranks"]) if "full" in chosen else None
    if ranks is not None:
        tgt = np.array([split.target(u, cfg.eval.stage) for u in split.users])
        hits = (idx.numpy() == tgt[:, None]).any(1)
        if not np.array_equal(hits, ranks < 20):
            return f"stored; Recall@20 through the store differs ({hits.mean():.4f} vs {(ranks < 20).mean():.4f})"
    return f"stored {len(ids)} vectors in Chroma; topk over the store reproduces Recall@20"


def load_ranker(spec: str, cfg: Config):
    """``module:factory`` -> ``factory(cfg)`` (an object with ``name`` and ``rank``)."""
    mod, _, fn = spec.partition(":")
    if not fn:
        raise ConfigError(f"eval_ranker must be 'module:factory', got {spec!r}")
    return getattr(importlib.import_module(mod), fn)(cfg)


def _run_ranker(cfg: Config, split: Split, users: list[str], parts: Path, results: dict) -> dict:
    base = cfg.eval.ranker_retriever
    if base not in results or "full" not in results[base]:
        raise ConfigError(f"eval_ranker needs eval_ranker_retriever {base!r} among eval_systems with protocol full")
    ranker = load_ranker(cfg.eval.ranker, cfg)
    name = f"{base}+{ranker.name}"
    if (parts / f"{name}.json").exists():
        return {name: json.loads((parts / f"{name}.json").read_text())}
    # The retriever's candidates again (cheap), then the ranker on the users whose target is among them.
    if base == "sasrec":
        retr = sasrec_retriever.load_retriever(retriever_dir(cfg) / f"seed{results['sasrec']['seed']}")
        scorer = sasrec_retriever.IndexScorer(retr)
    else:
        scorer = build_system(base, cfg, split, {})
    full = full_ranking(scorer, split, cfg.eval.stage, users, cfg.candidates)
    res: dict = {}
    if "full" in cfg.eval.protocols:
        r = rerank(full, ranker, split, cfg.eval.stage, users, cfg.history_max, log=log)
        res["full"] = {"ranks": r["ranks"].tolist(), "seconds": round(r["seconds"], 2), "called": r["called"],
                       "valid": r["valid"]}
    if "sampled" in cfg.eval.protocols:
        r = sampled(ranker, split, cfg.eval.stage, users, cfg.eval.negatives, cfg.seed, cfg.history_max, log=log)
        res["sampled"] = {"ranks": r["ranks"].tolist(), "valid": r["valid"], "seconds": round(r["seconds"], 2)}
    _save_part(parts, name, res)
    return {name: res}
