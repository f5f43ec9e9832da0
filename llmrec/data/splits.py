"""k-core filtering and the leave-one-out split, exactly as LlamaRec (Yue et al., 2023).

Protocol (LlamaRec ``datasets/base.py``; SASRec, Kang & McAuley 2018, before it):

1. keep every rating as an interaction (no rating threshold);
2. iteratively drop items with fewer than ``min_item`` and users with fewer than ``min_user``
   interactions until both hold (the maximal k-core, unique whatever the order);
3. order each user's history by (timestamp, item id);
4. last item = test target, second last = validation target, the rest = training.

For validation the model sees the training items; for test it sees training + validation.
The items already in the user's input history are masked at ranking time.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from llmrec.data.types import Dataset, Interaction, Item, histories
from llmrec.errors import DataError

# The published size of each data set after 5-core filtering (LlamaRec's numbers).
EXPECTED_5CORE = {
    "ml-latest-small": {"users": 610, "items": 3_650, "interactions": 90_274},
}


def kcore(interactions: list[Interaction], min_user: int = 5, min_item: int = 5) -> list[Interaction]:
    """The maximal sub-list where every user has >= ``min_user`` and every item >= ``min_item`` rows.

    Items are filtered first, then users, repeated until nothing changes (LlamaRec's order; the
    fixed point does not depend on it). Input order is kept.
    """
    rows = list(interactions)
    while True:
        ic = Counter(r.item for r in rows)
        rows2 = [r for r in rows if ic[r.item] >= min_item]
        uc = Counter(r.user for r in rows2)
        rows2 = [r for r in rows2 if uc[r.user] >= min_user]
        if len(rows2) == len(rows):
            return rows2
        rows = rows2


def _user_key(u: str):
    return (0, int(u), "") if u.isdigit() else (1, 0, u)


@dataclass
class Split:
    """A leave-one-out split over a k-core filtered catalog.

    Attributes:
        name: data set name.
        item_ids: the kept item ids in index order (numeric ids ascending); index ``i`` of every
            score matrix is ``item_ids[i]``.
        items: the :class:`Item` of each kept id, same order.
        users: user ids, ascending.
        train: user -> training item indices (chronological).
        valid: user -> validation target index.
        test: user -> test target index.
        n_interactions: interactions after filtering.
    """

    name: str
    item_ids: list[str]
    items: list[Item]
    users: list[str]
    train: dict[str, list[int]]
    valid: dict[str, int]
    test: dict[str, int]
    n_interactions: int

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def stats(self) -> dict[str, int]:
        return {"users": len(self.users), "items": self.n_items, "interactions": self.n_interactions}

    def history(self, user: str, stage: str) -> list[int]:
        """The input history of ``user`` for ``stage``: ``valid`` -> training items; ``test`` ->
        training + validation items. Never contains the stage's own target."""
        if stage == "valid":
            return list(self.train[user])
        if stage == "test":
            return list(self.train[user]) + [self.valid[user]]
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def target(self, user: str, stage: str) -> int:
        if stage == "valid":
            return self.valid[user]
        if stage == "test":
            return self.test[user]
        raise ValueError(f"stage must be 'valid' or 'test', got {stage!r}")

    def fingerprint(self) -> str:
        """A short hash of the split (item order + every user's sequence): checkpoints record it."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.item_ids).encode())
        for u in self.users:
            h.update(f"|{u}:{','.join(map(str, self.train[u]))};{self.valid[u]};{self.test[u]}".encode())
        return h.hexdigest()[:16]


def leave_one_out(ds: Dataset, min_user: int = 5, min_item: int = 5, max_users: int = 0,
                  check: bool = True) -> Split:
    """Filter ``ds`` to its (``min_user``, ``min_item``)-core and split it leave-one-out.

    Args:
        ds: the loaded catalog and interactions.
        max_users: if > 0, keep only the first ``max_users`` users (ascending id) BEFORE filtering
            (small real configurations for CI).
        check: for a data set in :data:`EXPECTED_5CORE` (full, 5-core), assert the published size.
    Raises:
        DataError: fewer than 3 interactions for some user (cannot hold out two), no item left,
            or the size differs from the published one.
    """
    inter = ds.interactions
    if max_users > 0:
        keep = set(sorted({r.user for r in inter}, key=_user_key)[:max_users])
        inter = [r for r in inter if r.user in keep]
    rows = kcore(inter, min_user, min_item)
    if not rows:
        raise DataError(f"{ds.name}: nothing left after {min_user}/{min_item}-core filtering")
    by_id = {it.id: it for it in ds.items}
    missing = sorted({r.item for r in rows} - set(by_id))
    if missing:
        raise DataError(f"{ds.name}: interactions name items not in the catalog: {missing[:5]}")
    item_ids = sorted({r.item for r in rows}, key=_user_key)
    index = {i: n for n, i in enumerate(item_ids)}
    hist = histories(rows)
    users = sorted(hist, key=_user_key)
    train, valid, test = {}, {}, {}
    for u in users:
        seq = [index[i] for i in hist[u]]
        if len(seq) < 3:
            raise DataError(f"{ds.name}: user {u!r} has {len(seq)} interactions; leave-one-out needs >= 3")
        train[u], valid[u], test[u] = seq[:-2], seq[-2], seq[-1]
    split = Split(ds.name, item_ids, [by_id[i] for i in item_ids], users, train, valid, test, len(rows))
    expected = EXPECTED_5CORE.get(ds.name)
    if check and expected and max_users == 0 and (min_user, min_item) == (5, 5) and split.stats() != expected:
        raise DataError(f"{ds.name}: 5-core leave-one-out gives {split.stats()}, expected {expected}")
    return split
