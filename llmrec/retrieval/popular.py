"""Most-popular: every user gets the items with the most training interactions (the harness's floor)."""

from __future__ import annotations

import numpy as np

from llmrec.data.splits import Split


class MostPopular:
    """Ranks items by their number of training interactions (same list for every user)."""

    kind = name = "most-popular"
    dense_scores = False

    def fit(self, split: Split) -> MostPopular:
        self.counts = np.zeros(split.n_items, dtype=np.float32)
        for seq in split.train.values():
            np.add.at(self.counts, seq, 1.0)
        return self

    def user_vectors(self, histories: list[list[int]]) -> np.ndarray:
        return np.ones((len(histories), 1), dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        return self.counts[:, None].copy()
