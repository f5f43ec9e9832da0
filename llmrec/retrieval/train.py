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
import math
import pickle
import time
import warnings
import zipfile
from pathlib import Path

from llmrec.config import Config
from llmrec.errors import ConfigError, DataError, IncompleteRetrieverWarning, ModelError, StoreError
from llmrec.metrics import ndcg10_from_scores
from llmrec.retrieval import sasrec as sasrec_mod
from llmrec.retrieval import sasrec_retriever
from llmrec.retrieval.store_data import StoreSequences, store_sequences

MANIFEST = "manifest.json"


def sasrec_params(cfg: Config) -> sasrec_mod.SASRecParams:
    """``SASRecParams`` from the config's ``sasrec_<name>`` keys (fields without a key keep their default)."""
    from dataclasses import fields

    names = [f.name for f in fields(sasrec_mod.SASRecParams) if hasattr(cfg, f"sasrec_{f.name}")]
    return sasrec_mod.SASRecParams(**{n: getattr(cfg, f"sasrec_{n}") for n in names})


def check_config(cfg: Config) -> list[int]:
    """The seeds to train (``sasrec_seeds``, each once, in order) after checking the keys training reads.

    Raises:
        ConfigError: naming the key: ``sasrec_seeds`` not a non-empty list of integers in
            [0, 2**63); ``sasrec_max_len``, ``sasrec_dim``, ``sasrec_heads``, ``sasrec_batch_size``,
            ``sasrec_max_epochs``, ``sasrec_patience`` < 1; ``sasrec_dim`` not a multiple of
            ``sasrec_heads``; ``sasrec_blocks`` or ``knn_neighbors`` < 0; ``sasrec_dropout`` not in
            [0, 1); ``sasrec_lr`` not > 0, ``sasrec_weight_decay`` < 0, ``sasrec_max_minutes`` not > 0.
    """
    seeds = cfg.sasrec.seeds
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < 2**63 for s in seeds)):
        raise ConfigError(f"config key 'sasrec_seeds' must be a non-empty list of integers in [0, 2**63), "
                          f"got {seeds!r}")
    for name in ("max_len", "dim", "heads", "batch_size", "max_epochs", "patience"):
        if getattr(cfg, f"sasrec_{name}") < 1:
            raise ConfigError(f"config key 'sasrec_{name}' must be >= 1, got {getattr(cfg, f'sasrec_{name}')}")
    if cfg.sasrec.dim % cfg.sasrec.heads:
        raise ConfigError(f"config key 'sasrec_dim' ({cfg.sasrec.dim}) must be a multiple of 'sasrec_heads' "
                          f"({cfg.sasrec.heads})")
    for name, ok, need in (("sasrec_blocks", cfg.sasrec.blocks >= 0, ">= 0"),
                           ("knn_neighbors", cfg.knn_neighbors >= 0, ">= 0 (0 = keep all)"),
                           ("sasrec_dropout", 0 <= cfg.sasrec.dropout < 1, "in [0, 1)"),
                           ("sasrec_lr", math.isfinite(cfg.sasrec.lr) and cfg.sasrec.lr > 0, "a finite number > 0"),
                           ("sasrec_weight_decay", cfg.sasrec.weight_decay >= 0, ">= 0"),
                           ("sasrec_max_minutes", cfg.sasrec.max_minutes > 0, "> 0")):
        if not ok:
            raise ConfigError(f"config key {name!r} must be {need}, got {getattr(cfg, name)}")
    return list(dict.fromkeys(seeds))


def load_store(cfg: Config) -> tuple[list[str], list, Path]:
    """(store item ids, stored interactions, store folder) of ``cfg.store_dir()`` (with ``chroma_host``:
    the server's items and interactions).

    Raises:
        StoreError: no store there, or it holds no items, or its interactions are unreadable."""
    from llmrec.store import ItemStore
    from llmrec.store.interactions import open_interactions

    path = cfg.store_dir()
    if cfg.chroma.host is None and not (path / "chroma.sqlite3").is_file():
        raise StoreError(f"no store at {path}: run `llmrec ingest` first")
    ids = ItemStore(path, "text", cfg.chroma.host, cfg.chroma.port).ids()
    if not ids:
        raise StoreError(f"the store at {path} holds no items: run `llmrec ingest` first")
    return ids, open_interactions(cfg, path).read(), path


# long: train-retriever's sequence: hold-out, members, fusion weights, manifest
def train_retriever(cfg: Config, log=print) -> dict:
    """Train (or reuse) the store's SASRec seeds, choose on validation, write the folder.

    Returns the written manifest.
    Raises:
        ConfigError: see :func:`check_config`.
        StoreError: see :func:`load_store`; or the retriever folder cannot be created.
        DataError: no user has 3 interactions (nothing to validate on).

    Interrupted, it leaves the folder's files whole: the seeds it finished are reused by the next
    run; until that run ends, ``recommend`` warns and uses item-kNN if a seed the old manifest
    names was retrained (:func:`load_trained`).
    """
    seeds = check_config(cfg)
    ids, interactions, path = load_store(cfg)
    data = store_sequences(interactions, ids)
    train, vu, vt = data.holdout()
    if not vt:
        raise DataError(f"the store at {path} has no user with 3 or more interactions: a trained retriever "
                        "needs a validation item per user (item-kNN and content retrieval work without one)")
    folder = cfg.retriever_path()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StoreError(f"the retriever folder {folder} is not a directory (it, or a folder above it, "
                         "is a file): remove it or set retriever_dir") from None
    except OSError as e:
        raise StoreError(f"cannot create the retriever folder {folder}: {e}") from e
    p = sasrec_params(cfg)
    vhist = [train[u] for u in vu]
    t0 = time.time()
    log(f"[train-retriever] {path}: {len(data.users)} users, {len(data.item_ids)} items with interactions, "
        f"{data.n_interactions} interactions; {len(vt)} validation users; seeds {seeds}")
    members, seeds_info, valid = [], [], {}
    for seed in seeds:
        retr, info = _train_or_reuse(data, train, vhist, vt, p, seed, folder / f"seed{seed}", log)
        members.append(retr)
        valid[f"sasrec[seed={seed}]"] = info["valid_ndcg10"]
        seeds_info.append({k: info.get(k) for k in ("seed", "best_epoch", "epochs", "stopped", "cap_hit",
                                                     "train_seconds", "valid_ndcg10", "valid_recall10")})
    best = max(range(len(members)), key=lambda n: (valid[f"sasrec[seed={seeds[n]}]"], -n))
    kind, chosen, names = "sasrec", f"sasrec[seed={seeds[best]}]", [f"seed{seeds[best]}"]
    if len(members) > 1:
        ens = sasrec_retriever.EnsembleRetriever(members)
        valid["sasrec-ensemble"] = ndcg10_from_scores(ens.user_vectors_idx(vhist) @ ens.item_vectors().T, vt, vhist)
        if valid["sasrec-ensemble"] > valid[chosen]:
            kind, chosen, names = "sasrec-ensemble", "sasrec-ensemble", [f"seed{s}" for s in seeds]
    fusion, written = None, []
    if cfg.retriever.fusion:
        sas = members[best] if kind == "sasrec" else sasrec_retriever.EnsembleRetriever(members)
        fusion, fvalid, written = _fit_fusion(cfg, data, train, vu, vt, sas, kind, folder, log)
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
    for part in written:  # the fusion's files, whole, then the manifest that names them
        part.replace(part.with_name(part.name.removesuffix(".part")))
    tmp.replace(folder / MANIFEST)
    capped = [s["seed"] for s in seeds_info if s["cap_hit"]]
    log(f"[train-retriever] chose {chosen} (validation NDCG@10 {valid[chosen]:.4f}; "
        + ", ".join(f"{k} {v:.4f}" for k, v in valid.items()) + f") -> {folder}"
        + (f"; WARNING: the time cap stopped seed(s) {capped}" if capped else ""))
    return manifest


def _fit_fusion(cfg: Config, data: StoreSequences, train, vu, vt, sas, sas_kind: str, folder: Path, log):
    """The registry's store members (:func:`llmrec.retrieval.base.store_members`: item-kNN, and EASE
    when the catalog has at most ``ease_max_items`` items) beside the chosen SASRec: each fitted on
    the training part with its choices made on validation, the fusion weights chosen on validation,
    then each refitted on every interaction and saved as its ``store_file`` + ``.part``
    (``item-knn.npz.part``, ``ease.npy.part``; the caller renames them just before the manifest).
    Returns (the manifest's ``fusion`` entry, its validation NDCG@10, the files written)."""
    from llmrec.retrieval.base import store_members
    from llmrec.retrieval.fusion import choose_weights

    n = len(data.item_ids)
    vhist = [train[u] for u in vu]
    specs = store_members(cfg, n)
    fitted = [spec.store_fit(cfg, train, n, vhist, vt) for spec in specs]
    members, scorers = [sas_kind, *(s.name for s in specs)], [sasrec_retriever.IndexScorer(sas), *fitted]
    weights, valid, _ = choose_weights(scorers, histories=vhist, targets=vt)
    log(f"[train-retriever] fusion of {members}: weights {weights}, validation NDCG@10 {valid:.4f}")
    entry, written = {"members": members, "weights": weights}, []
    for spec, r in zip(specs, fitted, strict=True):
        spec.store_refit(r, data.seqs, n)  # choices made: refit on every interaction
        written.append(folder / f"{spec.store_file}.part")
        with open(written[-1], "wb") as f:
            spec.store_save(r, f)
        entry.update(spec.store_entry(r))
    entry["used"] = True
    return entry, valid, written


def _train_or_reuse(data: StoreSequences, train, vhist, vt, p, seed: int, folder: Path, log):
    man_path = folder / MANIFEST
    if man_path.exists():
        try:
            man = json.loads(man_path.read_text())
        except ValueError:
            man = {}
        if man.get("fingerprint") == data.fingerprint and sasrec_mod.same_training(man, p):
            log(f"[train-retriever] seed {seed}: reusing {folder} (same interactions and hyper-parameters)")
            return sasrec_retriever.load_retriever(folder), man["train"]
    model, info = sasrec_mod.train_sasrec(train, vhist, vt, len(data.item_ids), p, seed=seed, log=log)
    sasrec_mod.save(model, data.item_ids, folder, {
        "fingerprint": data.fingerprint, "seed": seed, "train": info,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return sasrec_retriever.load_retriever(folder), info


def _load_fusion(folder: Path, man: dict, sas):
    from llmrec.retrieval.base import RETRIEVERS
    from llmrec.retrieval.fusion import FusedRetriever

    n, where = len(man["item_ids"]), folder / MANIFEST
    try:
        f = man["fusion"]
        first, rest = f["members"][0], f["members"][1:]
        parts = {first: sasrec_retriever.IndexScorer(sas, first)}
        for name in rest:  # each registered store member from its file (item-knn.npz, ease.npy)
            spec, where = RETRIEVERS.get(name) if isinstance(name, str) else None, folder / MANIFEST
            if spec is None or spec.store_load is None:
                raise ValueError(f"unknown fusion member {name!r}")
            where = folder / spec.store_file
            with open(where, "rb") as fh:
                parts[name] = spec.store_load(fh, f, n)
        where = folder / MANIFEST
        weights = [float(w) for w in f["weights"]]
        if not all(math.isfinite(w) for w in weights):
            raise ValueError(f"fusion weights must be finite, got {weights}")
        soft = next((k for k, m in parts.items() if RETRIEVERS[m.kind].soft_tokens), None)
        return FusedRetriever(parts, weights, man["item_ids"], soft)
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, zipfile.BadZipFile) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else str(e)
        raise ModelError(f"cannot load the fused retriever in {folder}: {where.name}: {what}; run `llmrec "
                         "train-retriever` again") from e


def load_trained(folder: str | Path, stacklevel: int = 3):
    """(retriever, manifest) of a folder written by :func:`train_retriever` (or, for older
    folders, by ``llmrec eval``: ``ensemble.json`` or a single ``sasrec.pt``); None when the
    folder holds no retriever. The retriever has ``item_ids``, ``user_vectors(histories of ids)``,
    ``item_vectors()``; ``manifest["kind"]`` names it.

    Warns (:class:`IncompleteRetrieverWarning`) and returns None when a member seed was trained on
    other interactions or items than the manifest says (a ``train-retriever`` run was interrupted
    after retraining it): the caller then uses item-kNN until the next run finishes. ``stacklevel``:
    the warning's, counted from this function (3: the caller's caller).

    Raises:
        ModelError: ``folder`` is a file, or the files are there but unreadable or damaged (the
            file named).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ModelError(f"the retriever folder {folder} is a file, not a folder: remove it or set retriever_dir")
    man_path = folder / MANIFEST
    try:
        man = json.loads(man_path.read_text()) if man_path.exists() else None
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read the retriever manifest {man_path}: {e}") from e
    if man is not None and not isinstance(man, dict):
        raise ModelError(f"the retriever manifest {man_path} must hold a JSON object, got {type(man).__name__}")
    if man is not None and "members" in man:
        names, ids = man["members"], man.get("item_ids")
        if not isinstance(names, list) or not names or not all(isinstance(m, str) and m for m in names):
            raise ModelError(f"the retriever manifest {man_path}: 'members' must be a non-empty list of folder "
                             f"names, got {names!r}")
        if not isinstance(ids, list):
            raise ModelError(f"the retriever manifest {man_path} has no 'item_ids' list")
        members = []
        for m in names:
            if not (folder / m).is_dir():
                raise ModelError(f"the retriever manifest {man_path} names the member {m!r}, but {folder / m} "
                                 "is not a folder: run `llmrec train-retriever` again")
            try:
                members.append(sasrec_retriever.load_retriever(folder / m))
            except ModelError:
                raise
            except (KeyError, TypeError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
                raise ModelError(f"cannot load the retriever in {folder / m}: {type(e).__name__}: {e}") from e
        stale = [m for m, r in zip(names, members, strict=True)
                 if r.item_ids != ids or r.manifest.get("fingerprint") != man.get("fingerprint")]
        if stale:
            warnings.warn(IncompleteRetrieverWarning(
                f"the trained retriever in {folder} is incomplete: member(s) {', '.join(stale)} were trained "
                f"on other interactions or items than its {MANIFEST} says (an interrupted `llmrec "
                "train-retriever`?); using item-kNN until `llmrec train-retriever` runs to the end"), stacklevel=stacklevel)
            return None
        sas = sasrec_retriever.EnsembleRetriever(members) if len(members) > 1 else members[0]
        if man.get("kind") == "fusion":
            return _load_fusion(folder, man, sas), man
        return sas, man
    if (folder / "ensemble.json").exists():  # llmrec eval's layout
        ens = sasrec_retriever.load_ensemble(folder)
        spec = json.loads((folder / "ensemble.json").read_text())
        return ens, {**spec, "kind": "sasrec-ensemble", "item_ids": ens.item_ids}
    if man is not None and (folder / man.get("weights", "sasrec.pt")).exists():
        return sasrec_retriever.load_retriever(folder), {**man, "kind": "sasrec"}
    return None

