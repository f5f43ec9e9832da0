"""Item cold-start protocol: a random share of the items is held out of every training
interaction, and the users whose test target is one of them are evaluated (full ranking,
leave-one-out otherwise as :mod:`llmrec.eval.protocols`). Collaborative vectors know nothing of a
cold item, so only content (text, posters, audio) can rank it.

The warm split keeps the same users, items and targets; each training sequence loses its cold
items. At test time the input history is training + validation minus cold items (a cold validation
item was never trained on either), and the stage's target may be cold: that is the point.

The evaluation itself (systems, metrics, cache, report section) is :mod:`llmrec.eval.cold_protocol`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from llmrec.data.splits import Split


def cold_items(split: Split, share: float = 0.1, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``round(share * n_items)`` items drawn with ``seed``. Raises ValueError unless
    0 < share < 1."""
    if not 0 < share < 1:
        raise ValueError(f"the cold-item share must be between 0 and 1, got {share}")
    n = max(1, int(round(share * split.n_items)))
    return np.sort(np.random.default_rng(seed).permutation(split.n_items)[:n])


def warm_split(split: Split, cold) -> Split:
    """``split`` with the ``cold`` items removed from every training sequence (targets unchanged)."""
    c = set(int(i) for i in cold)
    train = {u: [i for i in split.train[u] if i not in c] for u in split.users}
    n = sum(len(t) for t in train.values()) + 2 * len(split.users)
    return dataclasses.replace(split, name=f"{split.name}-warm", train=train, n_interactions=n)


def cold_users(split: Split, cold, stage: str = "test") -> list[str]:
    """Users whose ``stage`` target is a cold item, ascending."""
    c = set(int(i) for i in cold)
    return [u for u in split.users if split.target(u, stage) in c]


def history(split: Split, user: str, stage: str, cold) -> list[int]:
    """The input history of ``user`` for ``stage`` without the cold items."""
    c = set(int(i) for i in cold)
    return [i for i in split.history(user, stage) if i not in c]
