"""A trained SASRec as a retriever: over item ids (:class:`SASRecRetriever`, :func:`load_retriever`), over
0-based indices (:class:`IndexScorer`), several seeds as one (:class:`EnsembleRetriever`), and its item
vectors written into an item store. The model and its training: :mod:`llmrec.retrieval.sasrec`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from llmrec.errors import ModelError
from llmrec.retrieval.sasrec import SASRec, SASRecParams, user_hidden


class SASRecRetriever:
    """A trained SASRec as a retriever over item ids.

    ``scores = user_vectors(histories) @ item_vectors().T``; retrieve with
    ``llmrec.topk(user_vecs, item_vecs, k, exclude=[indices of each history])``.
    Attributes: ``item_ids`` (list[str], the row order of :meth:`item_vectors`), ``manifest``.
    """

    kind = "sasrec"
    dense_scores = False

    def __init__(self, model: SASRec, item_ids: list[str], manifest: dict | None = None):
        self.model, self.item_ids, self.manifest = model.eval(), list(item_ids), manifest or {}
        self.index = {i: n for n, i in enumerate(self.item_ids)}

    @property
    def dim(self) -> int:
        return self.model.p.dim

    def item_vectors(self) -> np.ndarray:
        """float32 [N, d], rows in ``item_ids`` order."""
        return self.model.item_matrix().detach().numpy().astype(np.float32)

    def user_vectors_idx(self, histories: list[list[int]]) -> np.ndarray:
        """float32 [B, d] for histories of 0-based item indices (chronological)."""
        return user_hidden(self.model, histories).numpy().astype(np.float32)

    def user_vectors(self, histories: list[list[str]]) -> np.ndarray:
        """float32 [B, d] for histories of item ids (chronological; unknown ids are skipped)."""
        return self.user_vectors_idx([[self.index[i] for i in h if i in self.index] for h in histories])

    def exclude(self, histories: list[list[str]]) -> list[list[int]]:
        """Per history, the indices to mask in ``llmrec.topk``."""
        return [[self.index[i] for i in h if i in self.index] for h in histories]

    def soft_token_vectors(self) -> np.ndarray:
        """float32 [N, d]: the trained ranker's soft-token inputs (:meth:`item_vectors`)."""
        return self.item_vectors()


class IndexScorer:
    """A retriever as a scorer over 0-based item indices (the harness's and fusion's interface):
    ``user_vectors(histories of indices)``, ``item_vectors()``; ``kind`` is the retriever's."""

    dense_scores = False

    def __init__(self, retriever, name: str = "sasrec"):
        self.r, self.name, self.kind = retriever, name, retriever.kind

    def user_vectors(self, histories: list[list[int]]) -> np.ndarray:
        return self.r.user_vectors_idx(histories)

    def item_vectors(self) -> np.ndarray:
        return self.r.item_vectors()


def load_retriever(path: str | Path) -> SASRecRetriever:
    """Load a retriever saved by :func:`save`; ``path`` is the folder or its ``sasrec.pt``.

    Raises:
        ModelError: missing or unreadable files.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        ck = torch.load(folder / manifest.get("weights", "sasrec.pt"), map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"cannot load the retriever in {folder}: {e}") from e
    model = SASRec(ck["n_items"], SASRecParams(**ck["params"]))
    model.load_state_dict(ck["state_dict"])
    return SASRecRetriever(model, manifest["item_ids"], manifest)


def store_item_vectors(retriever: SASRecRetriever, store, items=None) -> int:
    """Upsert the retriever's item vectors into an item store (``llmrec.store.ItemStore``, e.g.
    ``ItemStore(path, kind="sasrec")``): ids = item ids, vectors float32 [N, d], metadata = each
    item's title when ``items`` (a list of :class:`Item` in ``item_ids`` order) is given.
    Returns how many were written. Search them with ``llmrec.topk`` over ``store.matrix()``."""
    metas = [{"title": it.title} for it in items] if items is not None else None
    return store.upsert(retriever.item_ids, retriever.item_vectors(), metas)


class EnsembleRetriever:
    """Several trained SASRecs (e.g. one per seed) as one retriever: the user vector is the
    concatenation of the members' user vectors and the item vector the concatenation of their item
    vectors, so the score is the SUM of the members' scores and retrieval is still one
    ``llmrec.topk`` call (d = sum of the members' d). Same interface as :class:`SASRecRetriever`."""

    kind = "sasrec-ensemble"
    dense_scores = False

    def __init__(self, members: list[SASRecRetriever]):
        if not members:
            raise ModelError("an ensemble needs at least one retriever")
        if any(m.item_ids != members[0].item_ids for m in members):
            raise ModelError("ensemble members must share the same item id order")
        self.members, self.item_ids, self.index = members, members[0].item_ids, members[0].index

    @property
    def dim(self) -> int:
        return sum(m.dim for m in self.members)

    def item_vectors(self) -> np.ndarray:
        return np.concatenate([m.item_vectors() for m in self.members], axis=1)

    def user_vectors_idx(self, histories: list[list[int]]) -> np.ndarray:
        return np.concatenate([m.user_vectors_idx(histories) for m in self.members], axis=1)

    def user_vectors(self, histories: list[list[str]]) -> np.ndarray:
        return self.user_vectors_idx([[self.index[i] for i in h if i in self.index] for h in histories])

    def exclude(self, histories: list[list[str]]) -> list[list[int]]:
        return self.members[0].exclude(histories)

    def soft_token_vectors(self) -> np.ndarray:
        return self.item_vectors()


def load_ensemble(folder: str | Path) -> EnsembleRetriever:
    """Load ``folder/ensemble.json`` (written by ``llmrec eval`` with ``sasrec-ensemble``): the
    member folders (relative to ``folder``) of an :class:`EnsembleRetriever`.

    Raises:
        ModelError: missing or unreadable files.
    """
    folder = Path(folder)
    try:
        spec = json.loads((folder / "ensemble.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read the ensemble in {folder}: {e}") from e
    return EnsembleRetriever([load_retriever(folder / m) for m in spec["members"]])

