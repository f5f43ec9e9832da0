"""The harness's systems: the split it evaluates on, the retrievers and baselines by name (trained or
reused from ``retriever_dir``), and a fusion member by name. Shared by the runner and the ranker's training
(:mod:`llmrec.eval.ranker`)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmrec.config import Config
from llmrec.data import load_ml100k, load_ml_latest_small
from llmrec.data.splits import Split, leave_one_out
from llmrec.errors import ConfigError
from llmrec.retrieval import base, sasrec_retriever
from llmrec.retrieval import sasrec as sasrec_mod
from llmrec.retrieval.base import FUSION_STEP, SYSTEMS
from llmrec.retrieval.train import sasrec_params

__all__ = ["FUSION_STEP", "SYSTEMS", "build", "build_system", "load_split", "log", "member", "retriever_dir",
           "train_or_load_sasrec"]


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
    return leave_one_out(ds, max_users=cfg.eval.max_users)


def retriever_dir(cfg: Config) -> Path:
    """Where the harness keeps its trained models: ``{home}/retrievers/{dataset}`` (``-u{N}``
    appended for user-capped runs, so a CI run never replaces the full run's). Not the store's
    retriever (``cfg.retriever_path()``, made by ``llmrec train-retriever``): the harness trains on
    its own split."""
    name = cfg.dataset if not cfg.eval.max_users else f"{cfg.dataset}-u{cfg.eval.max_users}"
    return sasrec_mod.default_dir(cfg.home, name)


def train_or_load_sasrec(cfg: Config, split: Split, seed: int) -> tuple[sasrec_retriever.SASRecRetriever, dict]:
    """The SASRec of ``seed`` from ``{retriever_dir}/seed{seed}/`` if its manifest matches this split and
    these hyper-parameters, else trained now (training split only; early stopping on validation)."""
    p = sasrec_params(cfg)
    folder = retriever_dir(cfg) / f"seed{seed}"
    man_path = folder / "manifest.json"
    if man_path.exists():
        man = json.loads(man_path.read_text())
        if man.get("fingerprint") == split.fingerprint() and sasrec_mod.same_training(man, p):
            log(f"[sasrec] seed {seed}: reusing {folder}")
            return sasrec_retriever.load_retriever(folder), man["train"]
    train = [split.train[u] for u in split.users]
    model, info = sasrec_mod.train_sasrec(train, train, [split.valid[u] for u in split.users], split.n_items, p,
                                          seed=seed, log=log)
    manifest = {"dataset": split.name, "fingerprint": split.fingerprint(), "stats": split.stats(),
                "seed": seed, "train": info, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    sasrec_mod.save(model, split.item_ids, folder, manifest)
    return sasrec_retriever.load_retriever(folder), info


@dataclass
class _Harness:
    """What a registered retriever's ``build`` gets (:class:`llmrec.retrieval.base.Harness`)."""

    cfg: Config
    split: Split
    extra: dict = field(default_factory=dict)

    def sasrec(self, seed: int):
        return train_or_load_sasrec(self.cfg, self.split, seed)

    def member(self, name: str):
        return member(name, self.cfg, self.split)


def build(name: str, cfg: Config, split: Split, extra: dict | None = None):
    """Any registered retriever (``sasrec[seed=N]`` included) fitted on ``split``, through its
    :data:`llmrec.retrieval.base.RETRIEVERS` entry. Raises ConfigError for an unknown name."""
    spec, seed = base.parse(name)
    if spec is None:
        raise ConfigError(f"unknown eval system {name!r}; known: {', '.join(SYSTEMS)}")
    return spec.build(_Harness(cfg, split, {} if extra is None else extra), seed)


def build_system(name: str, cfg: Config, split: Split, extra: dict):
    """A system fitted on the split alone (``fits_split`` in the registry: most-popular, item-kNN,
    text-embedding, EASE); what it chose on validation goes into ``extra``. Raises ConfigError otherwise."""
    spec, seed = base.parse(name)
    if spec is None or seed is not None or not spec.fits_split:
        raise ConfigError(f"unknown eval system {name!r}; known: {', '.join(SYSTEMS)}")
    return spec.build(_Harness(cfg, split, extra), None)


def member(name: str, cfg: Config, split: Split):
    """A fusion member's scorer (``fusion_member`` in the registry, or ``sasrec[seed=N]``): a
    baseline, or the trained SASRec seeds (their ensemble)."""
    spec, seed = base.parse(name)
    if spec is None or not (spec.fusion_member or seed is not None):
        raise ConfigError(f"unknown eval system {name!r}; known: {', '.join(SYSTEMS)}")
    return spec.build(_Harness(cfg, split, {}), seed)
