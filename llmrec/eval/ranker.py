"""The trained ranker for the harness's split: its retriever, its training data, its folder.

``llmrec train-ranker CONFIG`` trains on the split of ``llmrec eval CONFIG`` (training sequences
only; validation users select the checkpoint), with candidates from ``eval_ranker_retriever``
(those marked ``feeds_ranker`` in :data:`llmrec.retrieval.base.RETRIEVERS`: ``fusion``, ``sasrec`` (the
validation-best seed), ``sasrec-ensemble``, ``sasrec[seed=N]``, ``ease``, ``item-knn``) trained on that
same split, and soft-token inputs from the SASRec seeds' item vectors (concatenated).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from llmrec.config import Config
from llmrec.data.splits import Split
from llmrec.errors import ConfigError
from llmrec.rank.train import RankData, train_ranker
from llmrec.retrieval import base, sasrec_retriever

RETRIEVERS = tuple(base.names(feeds_ranker=True))
"""The retrievers that can feed a ranker (``feeds_ranker`` in the registry)."""


def ranker_dir(cfg: Config, soft_tokens: bool | None = None) -> Path:
    """``ranker_dir``, else ``{home}/rankers/{dataset}`` (``-u{N}`` for user-capped runs, ``-text``
    without soft tokens)."""
    soft = cfg.rank.soft_tokens if soft_tokens is None else soft_tokens
    if cfg.rank.dir:
        return Path(cfg.rank.dir) if soft == cfg.rank.soft_tokens else Path(f"{cfg.rank.dir}-text")
    name = cfg.dataset + (f"-u{cfg.eval.max_users}" if cfg.eval.max_users else "") + ("" if soft else "-text")
    return Path(cfg.home) / "rankers" / name


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def retriever_for(cfg: Config, split: Split, log=None, vectors: bool = True) -> tuple[object, dict, object]:
    """(scorer over item indices, identity, soft-token vectors [N, d]) of ``eval_ranker_retriever``.

    The SASRec seeds are trained (or reused) exactly as ``llmrec eval`` does; fusion weights are
    chosen on validation. ``vectors=False``: the seeds are loaded only when the retriever uses them,
    and the vectors returned are None. Raises ConfigError for a retriever not in :data:`RETRIEVERS`
    or ``sasrec[seed=N]``."""
    from llmrec.eval import systems

    name = cfg.eval.ranker_retriever
    spec, seed = base.parse(name)
    if spec is None or not spec.feeds_ranker:
        raise ConfigError(f"eval_ranker_retriever {name!r} cannot feed a ranker; use one of "
                          f"{', '.join(RETRIEVERS)} or sasrec[seed=N]")

    def seeded(m: str) -> bool:
        s = base.parse(m)[0]
        return s is not None and s.seeds

    uses = spec.seeds or (spec.composite and any(seeded(m) for m in cfg.eval.fusion))
    seeds = list(cfg.sasrec.seeds) if vectors or uses else []
    loaded = [systems.train_or_load_sasrec(cfg, split, s) for s in seeds]
    members = [m for m, _ in loaded]
    if spec.pick_seed and seed is None:  # the seed with the best validation NDCG@10, as the harness reports it
        best = max(range(len(seeds)), key=lambda n: loaded[n][1]["valid_ndcg10"])
        name = f"{spec.name}[seed={seeds[best]}]"
    item_vectors = sasrec_retriever.EnsembleRetriever(members).item_vectors() if members else None
    identity = {"kind": name, "split": split.fingerprint(), "sasrec_seeds": seeds,
                "sasrec_sha256": [_sha(systems.retriever_dir(cfg) / f"seed{s}" / "sasrec.pt") for s in seeds]}
    extra: dict = {}
    scorer = systems.build(name, cfg, split, extra)
    if spec.composite:  # a fusion: its members and the weights chosen on validation
        if log:
            log(f"[ranker] retriever: fusion of {list(cfg.eval.fusion)}, weights {extra['weights']} "
                f"(validation NDCG@10 {extra['valid_ndcg10']:.4f})")
        identity.update(members=list(cfg.eval.fusion), weights=[round(w, 4) for w in extra["weights"]])
    return scorer, identity, item_vectors


def rank_data(cfg: Config, split: Split, log=None) -> RankData:
    """The split's :class:`~llmrec.rank.train.RankData`: training sequences, (training history,
    validation target) pairs, the retriever and its identity."""
    scorer, identity, vectors = retriever_for(cfg, split, log)
    return RankData(items=split.items, train_seqs=[split.train[u] for u in split.users],
                    valid=[(split.train[u], split.valid[u]) for u in split.users], scorer=scorer,
                    vectors=vectors, retriever=identity)


def train_for_split(cfg: Config, log=print, fresh: bool = False) -> dict:
    """Train (or resume) the harness ranker of ``cfg``; returns its manifest."""
    from llmrec.eval.systems import load_split
    from llmrec.rank.train import params_from

    params_from(cfg)  # bad ranker_* keys fail before any data is loaded
    split = load_split(cfg)
    data = rank_data(cfg, split, log)
    return train_ranker(cfg, data, ranker_dir(cfg), log=log, fresh=fresh)
