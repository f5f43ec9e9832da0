"""What a store's collaborative retrievers learn from: per-user item sequences and their fingerprint.

The store's interactions (``interactions.csv``, written by ``llmrec ingest``) become, per user, the
chronological sequence of 0-based indices into ``item_ids`` (the store's items that have at least
one interaction, in the store's order). Items without interactions are not in ``item_ids``:
collaborative retrievers cannot score them, content vectors do.

The fingerprint is a hash of every interaction (user, item, timestamp) in a canonical order, so a
retriever's manifest can tell whether the store still holds what it was trained on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from llmrec.data.types import Interaction, histories


def interactions_fingerprint(interactions: list[Interaction]) -> str:
    """sha256 (first 16 hex digits) of the sorted (user, item, timestamp) triples; order-free."""
    h = hashlib.sha256()
    for u, i, t in sorted((x.user, x.item, x.timestamp) for x in interactions):
        h.update(f"{u}\x1f{i}\x1f{t!r}\x1e".encode())
    return h.hexdigest()[:16]


@dataclass
class StoreSequences:
    """Attributes:
        item_ids: the store's item ids that have an interaction, in the store's order.
        users: user ids with at least one interaction on a stored item.
        seqs: per user (same order), item indices ordered by (timestamp, item id).
        fingerprint: :func:`interactions_fingerprint` of the interactions used.
        n_interactions: how many interactions the sequences hold.
    """

    item_ids: list[str]
    users: list[str]
    seqs: list[list[int]]
    fingerprint: str
    n_interactions: int

    def holdout(self) -> tuple[list[list[int]], list[int], list[int]]:
        """Training sequences and a validation split: each user with >= 3 items holds out the last
        one (the validation target, the rest its history); shorter sequences train whole.

        Returns (train [one per user], valid_users [positions in ``users``], valid_targets)."""
        train, vu, vt = [], [], []
        for n, s in enumerate(self.seqs):
            if len(s) >= 3:
                train.append(s[:-1])
                vu.append(n)
                vt.append(s[-1])
            else:
                train.append(list(s))
        return train, vu, vt


def store_sequences(interactions: list[Interaction], store_ids: list[str]) -> StoreSequences:
    """The sequences of the interactions whose item is in ``store_ids`` (others are ignored)."""
    known = set(store_ids)
    rows = [x for x in interactions if x.item in known]
    seen = {x.item for x in rows}
    item_ids = [i for i in store_ids if i in seen]
    index = {i: n for n, i in enumerate(item_ids)}
    hist = histories(rows)
    users = list(hist)
    return StoreSequences(item_ids, users, [[index[i] for i in hist[u]] for u in users],
                          interactions_fingerprint(rows), len(rows))
