"""``llmrec train-retriever``: train a store's sequential retriever, and load it back.

Trains SASRec (``llmrec.retrieval.sasrec``, the harness's code) on an ingested store's
interactions: each user with >= 3 items holds out the last one for validation (early stopping and
the choice below), shorter histories train whole. One model per seed in ``sasrec_seeds``; with
several seeds, the seed ensemble (sum of scores) competes with the single seeds and the best
VALIDATION NDCG@10 becomes the SASRec. With ``retriever_fusion`` (default), item-kNN and, for
catalogs of at most ``ease_max_items`` items, EASE (Steck 2019) are fitted beside it and their
standardised scores fused with weights chosen on validation (``llmrec.retrieval.fusion``); the
fusion is the retriever when its validation NDCG@10 is higher.

The folder (``cfg.retriever_path()``, default ``{data_dir}/retriever``) holds ``seed{N}/`` (weights
+ their manifest) and ``manifest.json``: kind, members, training-data fingerprint (hash of the
interactions it saw), item ids, hyper-parameters, validation metrics, why each seed stopped, wall
time. A seed whose manifest matches the data and hyper-parameters is reused, not retrained.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from llmrec.config import Config
from llmrec.errors import DataError, ModelError
from llmrec.retrieval import sasrec as sasrec_mod
from llmrec.retrieval.store_data import StoreSequences, store_sequences

MANIFEST = "manifest.json"


def sasrec_params(cfg: Config) -> sasrec_mod.SASRecParams:
    """``SASRecParams`` from the config's ``sasrec_<name>`` keys (fields without a key keep their default)."""
    from dataclasses import fields

    names = [f.name for f in fields(sasrec_mod.SASRecParams) if hasattr(cfg, f"sasrec_{f.name}")]
    return sasrec_mod.SASRecParams(**{n: getattr(cfg, f"sasrec_{n}") for n in names})


def _ndcg10(scores: np.ndarray, histories: list[list[int]], targets: list[int]) -> float:
    from llmrec.eval.metrics import ndcg_at_k, ranks_from_scores

    return float(ndcg_at_k(ranks_from_scores(scores, np.asarray(targets), histories), 10).mean())


def load_store(cfg: Config) -> tuple[list[str], list, Path]:
    """(store item ids, stored interactions, store folder) of ``cfg.store_dir()``.

    Raises:
        StoreError: no store there, or it holds no items, or its interactions are unreadable."""
    from llmrec.errors import StoreError
    from llmrec.ingest import INTERACTIONS_FILE, read_interactions
    from llmrec.store import ItemStore

    path = cfg.store_dir()
    if cfg.chroma_host is None and not (path / "chroma.sqlite3").is_file():
        raise StoreError(f"no store at {path}: run `llmrec ingest` first")
    ids = ItemStore(path, "text", cfg.chroma_host, cfg.chroma_port).ids()
    if not ids:
        raise StoreError(f"the store at {path} holds no items: run `llmrec ingest` first")
    return ids, read_interactions(path / INTERACTIONS_FILE), path


def train_retriever(cfg: Config, log=print) -> dict:
    """Train (or reuse) the store's SASRec seeds, choose on validation, write the folder.

    Returns the written manifest.
    Raises:
        StoreError: see :func:`load_store`.
        DataError: no user has 3 interactions (nothing to validate on).
    """
    ids, interactions, path = load_store(cfg)
    data = store_sequences(interactions, ids)
    train, vu, vt = data.holdout()
    if not vt:
        raise DataError(f"the store at {path} has no user with 3 or more interactions: a trained retriever "
                        "needs a validation item per user (item-kNN and content retrieval work without one)")
    folder = cfg.retriever_path()
    folder.mkdir(parents=True, exist_ok=True)
    p = sasrec_params(cfg)
    vhist = [train[u] for u in vu]
    t0 = time.time()
    log(f"[train-retriever] {path}: {len(data.users)} users, {len(data.item_ids)} items with interactions, "
        f"{data.n_interactions} interactions; {len(vt)} validation users; seeds {list(cfg.sasrec_seeds)}")
    members, seeds_info, valid = [], [], {}
    for seed in cfg.sasrec_seeds:
        retr, info = _train_or_reuse(data, train, vhist, vt, p, seed, folder / f"seed{seed}", log)
        members.append(retr)
        valid[f"sasrec[seed={seed}]"] = info["valid_ndcg10"]
        seeds_info.append({k: info.get(k) for k in ("seed", "best_epoch", "epochs", "stopped", "cap_hit",
                                                     "train_seconds", "valid_ndcg10", "valid_recall10")})
    best = max(range(len(members)), key=lambda n: (valid[f"sasrec[seed={cfg.sasrec_seeds[n]}]"], -n))
    kind, chosen, names = "sasrec", f"sasrec[seed={cfg.sasrec_seeds[best]}]", [f"seed{cfg.sasrec_seeds[best]}"]
    if len(members) > 1:
        ens = sasrec_mod.EnsembleRetriever(members)
        valid["sasrec-ensemble"] = _ndcg10(ens.user_vectors_idx(vhist) @ ens.item_vectors().T, vhist, vt)
        if valid["sasrec-ensemble"] > valid[chosen]:
            kind, chosen, names = "sasrec-ensemble", "sasrec-ensemble", [f"seed{s}" for s in cfg.sasrec_seeds]
    fusion = None
    if cfg.retriever_fusion:
        sas = members[best] if kind == "sasrec" else sasrec_mod.EnsembleRetriever(members)
        fusion, fvalid = _fit_fusion(cfg, data, train, vu, vt, sas, kind, folder, log)
        valid["fusion"] = fvalid
        if fvalid > valid[chosen]:
            kind, chosen = "fusion", "fusion"
        else:
            fusion = {**fusion, "used": False}
    manifest = {
        "kind": kind, "members": names, "chosen": chosen, "fusion": fusion, "fingerprint": data.fingerprint,
        "n_interactions": data.n_interactions, "n_users": len(data.users), "store": str(path),
        "dataset": cfg.dataset if cfg.data_dir is None else path.name, "item_ids": data.item_ids,
        "params": {f"sasrec_{k}": v for k, v in p.__dict__.items()}, "seeds": seeds_info,
        "valid_ndcg10": valid, "valid_users": len(vt), "train_seconds": round(time.time() - t0, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = folder / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(folder / MANIFEST)
    capped = [s["seed"] for s in seeds_info if s["cap_hit"]]
    log(f"[train-retriever] chose {chosen} (validation NDCG@10 {valid[chosen]:.4f}; "
        + ", ".join(f"{k} {v:.4f}" for k, v in valid.items()) + f") -> {folder}"
        + (f"; WARNING: the time cap stopped seed(s) {capped}" if capped else ""))
    return manifest


def _fit_fusion(cfg: Config, data: StoreSequences, train, vu, vt, sas, sas_kind: str, folder: Path, log):
    """Item-kNN (and EASE when the catalog has at most ``ease_max_items`` items) beside the chosen
    SASRec: each fitted on the training part with its choices made on validation, the fusion
    weights chosen on validation, then kNN and EASE refitted on every interaction and saved
    (``item-knn.npz``, ``ease.npy``). Returns (the manifest's ``fusion`` entry, its validation NDCG@10)."""
    from llmrec.retrieval.ease import EASE
    from llmrec.retrieval.fusion import choose_weights
    from llmrec.retrieval.knn import ItemKNN

    n = len(data.item_ids)
    vhist = [train[u] for u in vu]
    knn = ItemKNN(cfg.knn_neighbors, half_life=0.0).fit_sequences(train, n)
    knn.select_half_life(vhist, vt)
    members, scorers = [sas_kind, "item-knn"], [sasrec_mod.IndexScorer(sas), knn]
    ease = None
    if n <= cfg.ease_max_items:
        ease = EASE(lam=10.0).fit_sequences(train, n)
        ease.select(vhist, vt)
        members.append("ease")
        scorers.append(ease)
    weights, valid, _ = choose_weights(scorers, histories=vhist, targets=vt)
    log(f"[train-retriever] fusion of {members}: weights {weights}, validation NDCG@10 {valid:.4f}")
    knn.fit_sequences(data.seqs, n)  # choices made: refit on every interaction
    np.savez(folder / "item-knn.npz", **knn.state())
    entry = {"members": members, "weights": weights, "knn_half_life": knn.half_life, "used": True}
    if ease is not None:
        ease.fit_sequences(data.seqs, n, lam=ease.lam)
        del ease._G
        np.save(folder / "ease.npy", ease.B)
        entry.update(ease_lambda=ease.lam, ease_half_life=ease.half_life)
    return entry, valid


def _train_or_reuse(data: StoreSequences, train, vhist, vt, p, seed: int, folder: Path, log):
    man_path = folder / MANIFEST
    if man_path.exists():
        try:
            man = json.loads(man_path.read_text())
        except ValueError:
            man = {}
        if man.get("fingerprint") == data.fingerprint and sasrec_mod.same_training(man, p):
            log(f"[train-retriever] seed {seed}: reusing {folder} (same interactions and hyper-parameters)")
            return sasrec_mod.load_retriever(folder), man["train"]
    model, info = sasrec_mod.train_sasrec(train, vhist, vt, len(data.item_ids), p, seed=seed, log=log)
    sasrec_mod.save(model, data.item_ids, folder, {
        "fingerprint": data.fingerprint, "seed": seed, "train": info,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return sasrec_mod.load_retriever(folder), info


def _load_fusion(folder: Path, man: dict, sas):
    from llmrec.retrieval.ease import EASE
    from llmrec.retrieval.fusion import FusedRetriever
    from llmrec.retrieval.knn import ItemKNN

    f = man["fusion"]
    try:
        with np.load(folder / "item-knn.npz") as st:
            parts = {f["members"][0]: sas, "item-knn": ItemKNN.from_state(st)}
        if "ease" in f["members"]:
            ease = EASE(lam=f["ease_lambda"], half_life=f["ease_half_life"])
            ease.B, ease.n_items = np.load(folder / "ease.npy"), len(man["item_ids"])
            parts["ease"] = ease
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"cannot load the fused retriever in {folder}: {e}") from e
    return FusedRetriever(parts, f["weights"], man["item_ids"])


def load_trained(folder: str | Path):
    """(retriever, manifest) of a folder written by :func:`train_retriever` (or, for older
    folders, by ``llmrec eval``: ``ensemble.json`` or a single ``sasrec.pt``); None when the
    folder holds no retriever. The retriever has ``item_ids``, ``user_vectors(histories of ids)``,
    ``item_vectors()``; ``manifest["kind"]`` names it.

    Raises:
        ModelError: the files are there but unreadable.
    """
    folder = Path(folder)
    man_path = folder / MANIFEST
    try:
        man = json.loads(man_path.read_text()) if man_path.exists() else None
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read the retriever manifest {man_path}: {e}") from e
    if man is not None and "members" in man:
        members = [sasrec_mod.load_retriever(folder / m) for m in man["members"]]
        sas = sasrec_mod.EnsembleRetriever(members) if len(members) > 1 else members[0]
        if man.get("kind") == "fusion":
            return _load_fusion(folder, man, sas), man
        return sas, man
    if (folder / "ensemble.json").exists():  # llmrec eval's layout
        ens = sasrec_mod.load_ensemble(folder)
        spec = json.loads((folder / "ensemble.json").read_text())
        return ens, {**spec, "kind": "sasrec-ensemble", "item_ids": ens.item_ids}
    if man is not None and (folder / man.get("weights", "sasrec.pt")).exists():
        return sasrec_mod.load_retriever(folder), {**man, "kind": "sasrec"}
    return None

