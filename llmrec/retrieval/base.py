"""The retriever seam: the :class:`Retriever` protocol and the registry of retrievers by name.

Every retriever scores items for a user history, over 0-based item indices of one item order (a
split's ``item_ids``, or a store's items that have interactions). The harness (``llmrec eval``:
systems and fusion members, the ranker's candidate retriever) and ``llmrec train-retriever`` (the
members fused beside SASRec) find them by name in :data:`RETRIEVERS`, where each one's defaults are
set. Adding a retriever: its module under ``llmrec/retrieval/`` (a class following
:class:`Retriever`) and one :class:`RetrieverSpec` entry in :data:`RETRIEVERS` below; nothing else
names it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llmrec.errors import ConfigError
from llmrec.retrieval.scores import score

__all__ = ["FUSION_STEP", "RETRIEVERS", "SYSTEMS", "Harness", "Retriever", "RetrieverSpec", "get", "names",
           "parse", "score", "store_members"]


class Retriever(Protocol):
    """A scorer over 0-based item indices (histories chronological, oldest first).

    Attributes:
        kind: the registry name of its family (``"item-knn"``, ``"sasrec"``, ...: a key of
            :data:`RETRIEVERS`).
        name: its label in reports (``"sasrec[seed=0]"``; else usually ``kind``).
        dense_scores: how a caller scores with it. True: :meth:`scores` is the retriever's own
            score (item-kNN's sparse product, a stored fusion) and is used; its vectors, when it has
            them, are for ``llmrec.topk`` only. False: the score is ``user_vectors @ item_vectors.T``
            (no :meth:`scores` needed). Callers read this flag (or use :func:`score`), never
            ``hasattr``: :func:`score` (from :mod:`llmrec.retrieval.scores`) does.

    Methods (shapes: B histories, N items, d the vector dimension):
        fit(split) -> self: learn from a :class:`~llmrec.data.splits.Split`'s TRAINING part only,
            choices (half-life, L2 strength) on its validation targets. Trained retrievers (SASRec)
            are built by their :class:`RetrieverSpec` instead.
        user_vectors(histories) -> float32 [B, d]
        item_vectors() -> float32 [N, d], rows in item order.
        scores(histories) -> float32 [B, N]; required when ``dense_scores``.
    Saving is optional: a spec's ``save``/``load`` (None: not supported), see :class:`RetrieverSpec`.
    """

    kind: str
    name: str
    dense_scores: bool

    def user_vectors(self, histories: list[list[int]]) -> np.ndarray: ...

    def item_vectors(self) -> np.ndarray: ...


class Harness(Protocol):
    """What a spec's ``build`` gets from the harness (``llmrec.eval.systems``).

    Attributes: ``cfg`` (the Config), ``split`` (the Split it fits on), ``extra`` (a dict the build
    may record validation choices in, reported with the system's results).
    Methods: ``sasrec(seed) -> (SASRecRetriever, training info)`` (trained or reused as the harness
    does), ``member(name) -> Retriever`` (another registered retriever, for a fusion)."""

    cfg: Any
    split: Any
    extra: dict

    def sasrec(self, seed: int) -> tuple[Any, dict]: ...

    def member(self, name: str) -> Retriever: ...


@dataclass(frozen=True)
class RetrieverSpec:
    """One registered retriever.

    Attributes:
        name: its registry name (the eval system's name, a fusion member's name).
        build: ``build(harness, arg) -> Retriever`` fitted for the harness's split; ``arg`` is the
            bracketed parameter of a name such as ``sasrec[seed=3]`` (None without one).
        fits_split: built from the split alone (a plain ``fit``): an ``llmrec eval`` system of its own.
        fusion_member: may be named in ``eval_fusion`` (``sasrec`` only with ``[seed=N]``).
        feeds_ranker: may be ``eval_ranker_retriever`` (candidates for the trained ranker).
        seeds: built from the trained SASRec seeds (``sasrec_seeds``).
        pick_seed: without ``[seed=N]``, the seed with the best validation NDCG@10.
        composite: built from other registered retrievers (the ``eval_fusion`` members); its build
            records ``weights``, ``valid_ndcg10`` and ``grid`` (every weight vector tried) in ``extra``.
        soft_tokens: its item vectors are learned collaborative embeddings, the trained ranker's
            soft-token inputs.
        save / load: ``save(retriever, folder)``, ``load(folder) -> Retriever`` (same scores); None
            where not supported.
        store_fit: for ``llmrec train-retriever``'s fusion beside SASRec:
            ``store_fit(cfg, train, n, valid_histories, valid_targets) -> Retriever`` (choices made
            on validation), or None (not a store fusion member).
        store_when: ``store_when(cfg, n) -> bool``: whether it is fitted for a store of ``n`` items.
        store_refit: ``store_refit(retriever, sequences, n)``: refit on every interaction, choices kept.
        store_file: its file in the retriever folder; ``store_save(retriever, fh)`` writes it,
            ``store_entry(retriever) -> dict`` its keys in the manifest's ``fusion`` entry, and
            ``store_load(fh, entry, n) -> Retriever`` reads it back (ValueError when it does not fit n).
    """

    name: str
    build: Callable[[Harness, Any], Retriever]
    fits_split: bool = False
    fusion_member: bool = False
    feeds_ranker: bool = False
    seeds: bool = False
    pick_seed: bool = False
    composite: bool = False
    soft_tokens: bool = False
    save: Callable[[Any, Path], None] | None = None
    load: Callable[[Path], Retriever] | None = None
    store_fit: Callable | None = None
    store_when: Callable[[Any, int], bool] = lambda cfg, n: True
    store_refit: Callable | None = None
    store_file: str = ""
    store_save: Callable | None = None
    store_entry: Callable[[Any], dict] = lambda r: {}
    store_load: Callable | None = None


# ------------------------------------------------------------------------------- the builds
def _most_popular(h: Harness, arg=None):
    from llmrec.retrieval.popular import MostPopular

    return MostPopular().fit(h.split)


def _item_knn(h: Harness, arg=None):
    from llmrec.retrieval.knn import ItemKNN

    s = ItemKNN(h.cfg.knn_neighbors).fit(h.split)  # half-life chosen on validation
    h.extra["selected_on_validation"] = s.valid_selection
    return s


def _text_embedding(h: Harness, arg=None):
    from llmrec.retrieval.text_embedding import TextEmbedding

    s = TextEmbedding(Path(h.cfg.home) / "cache", cfg=h.cfg).fit(h.split)
    h.extra["selected_on_validation"] = s.valid_selection
    return s


def _ease(h: Harness, arg=None):
    from llmrec.retrieval.ease import EASE

    s = EASE().fit(h.split)  # L2 strength and half-life chosen on validation
    h.extra["selected_on_validation"] = s.valid_selection
    return s


def _sasrec(h: Harness, arg=None):
    from llmrec.retrieval.sasrec_retriever import IndexScorer

    if arg is None:  # the seed with the best validation NDCG@10
        loaded = [(s, h.sasrec(s)) for s in h.cfg.sasrec.seeds]
        arg, (retr, _) = max(loaded, key=lambda x: x[1][1]["valid_ndcg10"])
        return IndexScorer(retr, f"sasrec[seed={arg}]")
    return IndexScorer(h.sasrec(arg)[0], f"sasrec[seed={arg}]")


def _sasrec_ensemble(h: Harness, arg=None):
    from llmrec.retrieval.sasrec_retriever import EnsembleRetriever, IndexScorer

    return IndexScorer(EnsembleRetriever([h.sasrec(s)[0] for s in h.cfg.sasrec.seeds]), "sasrec-ensemble")


def _fusion(h: Harness, arg=None):
    from llmrec.retrieval.fusion import Fusion, choose_weights

    parts = [h.member(m) for m in h.cfg.eval.fusion]
    weights, valid, tried = choose_weights(parts, h.split, step=FUSION_STEP)
    h.extra.update(weights=weights, valid_ndcg10=valid, grid=tried)
    return Fusion(parts, weights)


FUSION_STEP = 0.05
"""Grid step of the harness's fusion weights (simplex)."""


# ------------------------------------------------------------------------------- saving
def _save_sasrec(r, folder: Path) -> None:
    from llmrec.retrieval import sasrec as sasrec_mod

    sasrec_mod.save(r.r.model, r.r.item_ids, folder, {})


def _load_sasrec(folder: Path):
    from llmrec.retrieval import sasrec_retriever

    return sasrec_retriever.IndexScorer(sasrec_retriever.load_retriever(folder), "sasrec")


def _saver(spec_name: str):
    """``save(r, folder)`` through the spec's store hooks: ``folder/<store_file>`` and ``folder/<name>.json``."""

    def save(r, folder: Path) -> None:
        spec = RETRIEVERS[spec_name]
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / spec.store_file, "wb") as fh:
            spec.store_save(r, fh)
        (folder / f"{spec_name}.json").write_text(json.dumps({**spec.store_entry(r), "n_items": r.n_items}))

    return save


def _loader(spec_name: str):
    def load(folder: Path):
        spec = RETRIEVERS[spec_name]
        entry = json.loads((Path(folder) / f"{spec_name}.json").read_text())
        with open(Path(folder) / spec.store_file, "rb") as fh:
            return spec.store_load(fh, entry, entry["n_items"])

    return load


# ------------------------------------------------------------------------------- store members
def _knn_store_fit(cfg, train, n, vhist, vt):
    from llmrec.retrieval.knn import ItemKNN

    knn = ItemKNN(cfg.knn_neighbors, half_life=0.0).fit_sequences(train, n)
    knn.select_half_life(vhist, vt)
    return knn


def _knn_store_save(r, fh) -> None:
    np.savez(fh, **r.state())


def _knn_store_load(fh, entry: dict, n: int):
    from llmrec.retrieval.knn import ItemKNN

    with np.load(fh) as st:
        knn = ItemKNN.from_state(st)
    if knn.n_items != n:
        raise ValueError(f"{knn.n_items} items, the manifest has {n}")
    return knn


def _ease_store_fit(cfg, train, n, vhist, vt):
    from llmrec.retrieval.ease import EASE

    ease = EASE(lam=10.0).fit_sequences(train, n)
    ease.select(vhist, vt)
    return ease


def _ease_store_refit(r, seqs, n) -> None:
    r.fit_sequences(seqs, n, lam=r.lam)
    del r._G


def _ease_store_load(fh, entry: dict, n: int):
    from llmrec.retrieval.ease import EASE

    ease = EASE(lam=entry["ease_lambda"], half_life=entry["ease_half_life"])
    ease.B, ease.n_items = np.load(fh), n
    if ease.B.shape != (n, n):
        raise ValueError(f"shape {ease.B.shape}, the manifest's {n} items need ({n}, {n})")
    return ease


# ------------------------------------------------------------------------------- the registry
RETRIEVERS: dict[str, RetrieverSpec] = {s.name: s for s in (
    RetrieverSpec("most-popular", _most_popular, fits_split=True, fusion_member=True),
    RetrieverSpec("item-knn", _item_knn, fits_split=True, fusion_member=True, feeds_ranker=True,
                  save=_saver("item-knn"), load=_loader("item-knn"),
                  store_fit=_knn_store_fit, store_refit=lambda r, seqs, n: r.fit_sequences(seqs, n),
                  store_file="item-knn.npz", store_save=_knn_store_save,
                  store_entry=lambda r: {"knn_half_life": r.half_life}, store_load=_knn_store_load),
    RetrieverSpec("text-embedding", _text_embedding, fits_split=True, fusion_member=True),
    RetrieverSpec("ease", _ease, fits_split=True, fusion_member=True, feeds_ranker=True,
                  save=_saver("ease"), load=_loader("ease"),
                  store_fit=_ease_store_fit, store_when=lambda cfg, n: n <= cfg.ease_max_items,
                  store_refit=_ease_store_refit, store_file="ease.npy",
                  store_save=lambda r, fh: np.save(fh, r.B),
                  store_entry=lambda r: {"ease_lambda": r.lam, "ease_half_life": r.half_life},
                  store_load=_ease_store_load),
    RetrieverSpec("sasrec", _sasrec, feeds_ranker=True, seeds=True, pick_seed=True, soft_tokens=True,
                  save=_save_sasrec, load=_load_sasrec),
    RetrieverSpec("sasrec-ensemble", _sasrec_ensemble, fusion_member=True, feeds_ranker=True, seeds=True,
                  soft_tokens=True),
    RetrieverSpec("fusion", _fusion, feeds_ranker=True, composite=True),
)}
"""Every retriever by name, in the order ``llmrec eval`` lists its systems."""

SYSTEMS = tuple(RETRIEVERS)
"""The ``llmrec eval`` systems (``eval_systems``)."""

_PARAM = re.compile(r"^(?P<name>[a-z0-9-]+)\[seed=(?P<seed>-?\d+)\]$")


def parse(name: str) -> tuple[RetrieverSpec | None, int | None]:
    """(spec, seed) of a name: ``"ease"`` -> (ease, None); ``"sasrec[seed=3]"`` -> (sasrec, 3);
    (None, None) for a name that is not registered (or a bracket on a spec without seeds)."""
    m = _PARAM.match(name) if isinstance(name, str) else None
    if m:
        spec = RETRIEVERS.get(m["name"])
        return (spec, int(m["seed"])) if spec is not None and spec.pick_seed else (None, None)
    return RETRIEVERS.get(name) if isinstance(name, str) else None, None


def get(name: str, what: str = "retriever") -> RetrieverSpec:
    """The spec of ``name``. Raises ConfigError listing the registered names when there is none."""
    spec = RETRIEVERS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(f"unknown {what} {name!r}; known: {', '.join(RETRIEVERS)}")
    return spec


def names(**flags: bool) -> list[str]:
    """Registered names whose spec has every given flag value, e.g. ``names(feeds_ranker=True)``."""
    return [n for n, s in RETRIEVERS.items() if all(getattr(s, k) == v for k, v in flags.items())]


def store_members(cfg, n: int) -> list[RetrieverSpec]:
    """The retrievers ``llmrec train-retriever`` fits beside SASRec for a store of ``n`` items."""
    return [s for s in RETRIEVERS.values() if s.store_fit is not None and s.store_when(cfg, n)]
