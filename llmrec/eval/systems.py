"""The harness's systems: the split it evaluates on, the retrievers and baselines by name (trained or
reused from ``retriever_dir``), and a fusion member by name. Shared by the runner and the ranker's training
(:mod:`llmrec.eval.ranker`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from llmrec.config import Config
from llmrec.data import load_ml100k, load_ml_latest_small
from llmrec.data.splits import Split, leave_one_out
from llmrec.errors import ConfigError
from llmrec.eval.baselines import ItemKNN, MostPopular, TextEmbedding
from llmrec.retrieval import sasrec as sasrec_mod
from llmrec.retrieval.ease import EASE
from llmrec.retrieval.train import sasrec_params

FUSION_STEP = 0.05
"""Grid step of the fusion weights (simplex)."""


SYSTEMS = ("most-popular", "item-knn", "text-embedding", "ease", "sasrec", "sasrec-ensemble", "fusion")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_split(cfg: Config) -> Split:
    """The configured data set, 5-core filtered and split leave-one-out (sizes asserted)."""
    if cfg.dataset == "ml-latest-small":
        ds = load_ml_latest_small(cfg.ml_latest_small_dir)
    elif cfg.dataset == "ml-100k":
        ds = load_ml100k(cfg.downloads_dir(), cfg.ml100k_source, cfg.download_timeout_s)
    else:
        raise ConfigError(f"llmrec eval supports dataset ml-latest-small or ml-100k, got {cfg.dataset!r}")
    return leave_one_out(ds, max_users=cfg.eval_max_users)


def retriever_dir(cfg: Config) -> Path:
    """Where the harness keeps its trained models: ``{home}/retrievers/{dataset}`` (``-u{N}``
    appended for user-capped runs, so a CI run never replaces the full run's). Not the store's
    retriever (``cfg.retriever_path()``, made by ``llmrec train-retriever``): the harness trains on
    its own split."""
    name = cfg.dataset if not cfg.eval_max_users else f"{cfg.dataset}-u{cfg.eval_max_users}"
    return sasrec_mod.default_dir(cfg.home, name)


def train_or_load_sasrec(cfg: Config, split: Split, seed: int) -> tuple[sasrec_mod.SASRecRetriever, dict]:
    """The SASRec of ``seed`` from ``{retriever_dir}/seed{seed}/`` if its manifest matches this split and
    these hyper-parameters, else trained now (training split only; early stopping on validation)."""
    p = sasrec_params(cfg)
    folder = retriever_dir(cfg) / f"seed{seed}"
    man_path = folder / "manifest.json"
    if man_path.exists():
        man = json.loads(man_path.read_text())
        if man.get("fingerprint") == split.fingerprint() and sasrec_mod.same_training(man, p):
            log(f"[sasrec] seed {seed}: reusing {folder}")
            return sasrec_mod.load_retriever(folder), man["train"]
    train = [split.train[u] for u in split.users]
    model, info = sasrec_mod.train_sasrec(train, train, [split.valid[u] for u in split.users], split.n_items, p,
                                          seed=seed, log=log)
    manifest = {"dataset": split.name, "fingerprint": split.fingerprint(), "stats": split.stats(),
                "seed": seed, "train": info, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    sasrec_mod.save(model, split.item_ids, folder, manifest)
    return sasrec_mod.load_retriever(folder), info


def build_system(name: str, cfg: Config, split: Split, extra: dict):
    if name == "most-popular":
        return MostPopular().fit(split)
    if name == "item-knn":
        s = ItemKNN(cfg.knn_neighbors).fit(split)
        extra["selected_on_validation"] = s.valid_selection
        return s
    if name == "ease":
        s = EASE().fit(split)
        extra["selected_on_validation"] = s.valid_selection
        return s
    if name == "text-embedding":
        s = TextEmbedding(Path(cfg.home) / "cache", cfg=cfg).fit(split)
        extra["selected_on_validation"] = s.valid_selection
        return s
    raise ConfigError(f"unknown eval system {name!r}; known: {', '.join(SYSTEMS)}")


def member(name: str, cfg: Config, split: Split):
    """A fusion member's scorer: a baseline, or the trained SASRec seeds (their ensemble)."""
    if name == "sasrec-ensemble":
        members = [train_or_load_sasrec(cfg, split, s)[0] for s in cfg.sasrec_seeds]
        return sasrec_mod.IndexScorer(sasrec_mod.EnsembleRetriever(members), name)
    if name.startswith("sasrec[seed="):
        return sasrec_mod.IndexScorer(train_or_load_sasrec(cfg, split, int(name[len("sasrec[seed="):-1]))[0], name)
    return build_system(name, cfg, split, {})
