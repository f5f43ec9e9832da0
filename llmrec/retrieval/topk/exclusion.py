"""Per-query exclusion sets (a user's history) in one canonical form: sorted (row, col) pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from llmrec_kernels.reference import exclusion_bitset

from llmrec.retrieval.errors import TopKError


@dataclass(frozen=True)
class Exclusion:
    """Excluded (query, item) pairs, unique and sorted by item index then query index.

    Attributes:
        rows: int64 [E] query index of each pair.
        cols: int64 [E] item index of each pair (non-decreasing).
        counts: int64 [B] number of excluded items per query.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    counts: torch.Tensor

    @property
    def empty(self) -> bool:
        return self.rows.numel() == 0

    def to(self, device) -> Exclusion:
        return Exclusion(self.rows.to(device), self.cols.to(device), self.counts.to(device))

    def bitset(self, n_items: int, device=None) -> torch.Tensor:
        """The exclusion as the kernel's int32 bitset [B, ceil(N / 32)] (see ``exclusion_bitset``)."""
        return exclusion_bitset(self.rows, self.cols, self.counts.numel(), n_items, device)


def normalize_exclude(exclude, n_queries: int, n_items: int, error=TopKError) -> Exclusion:
    """Turn ``exclude`` into an :class:`Exclusion`.

    Args:
        exclude: None; a bool tensor/array [B, N] (True = never return); or a sequence of B
            collections of item indices (duplicates are fine).
        n_queries: B. n_items: N.
        error: the exception class to raise.
    Raises:
        error: not one of those forms (e.g. a non-bool [B, N] array, a uint8 mask, scalars or None
            in place of a collection), wrong length or shape, or an index outside [0, N).
    """
    B, N = n_queries, n_items
    if exclude is None:
        e = torch.zeros(0, dtype=torch.int64)
        return Exclusion(e, e, torch.zeros(B, dtype=torch.int64))
    forms = "None, a bool mask [B, N] or a sequence of B collections of item indices"
    if isinstance(exclude, (torch.Tensor, np.ndarray)):
        is_tensor = isinstance(exclude, torch.Tensor)
        dtype = exclude.dtype
        if dtype == (torch.bool if is_tensor else np.bool_):
            mask = exclude if is_tensor else torch.from_numpy(np.ascontiguousarray(exclude))
            if tuple(mask.shape) != (B, N):
                raise error(f"exclude mask must have shape ({B}, {N}), got {tuple(mask.shape)}")
            rows, cols = mask.cpu().nonzero(as_tuple=True)
            return _sorted(rows, cols, B)
        ragged = not is_tensor and dtype.kind == "O"  # an object array of index collections
        if is_tensor:
            integer, uint8 = not dtype.is_floating_point and not dtype.is_complex, dtype == torch.uint8
        else:
            integer, uint8 = dtype.kind in "iuO", dtype == np.uint8
        if uint8 and tuple(exclude.shape) == (B, N):
            raise error(f"exclude looks like a mask [B, N] but has dtype {dtype}: masks must be bool")
        if not integer or exclude.ndim != (1 if ragged else 2):
            raise error(f"exclude must be {forms}; got an array of dtype {dtype}, shape {tuple(exclude.shape)}")
    try:
        n = len(exclude)
    except TypeError:
        raise error(f"exclude must be {forms}; got {type(exclude).__name__}") from None
    if n != B:
        raise error(f"exclude has {n} entries for {B} queries")
    rows_l, cols_l = [], []
    for b, e in enumerate(exclude):
        try:
            arr = e.detach().cpu().numpy() if isinstance(e, torch.Tensor) else np.asarray(
                e if isinstance(e, np.ndarray) else list(e))
        except TypeError:
            raise error(f"exclude[{b}] must be a collection of item indices, got {type(e).__name__}") from None
        if arr.size and arr.dtype.kind not in "iu":
            raise error(f"exclude[{b}] must hold integer item indices, got dtype {arr.dtype}")
        c = torch.as_tensor(arr.astype(np.int64)).reshape(-1)
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= N):
            raise error(f"exclude[{b}] holds an index outside [0, {N})")
        c = torch.unique(c)
        rows_l.append(torch.full_like(c, b))
        cols_l.append(c)
    if not rows_l:
        rows_l, cols_l = [torch.zeros(0, dtype=torch.int64)], [torch.zeros(0, dtype=torch.int64)]
    return _sorted(torch.cat(rows_l), torch.cat(cols_l), B)


def _sorted(rows: torch.Tensor, cols: torch.Tensor, n_queries: int) -> Exclusion:
    rows, cols = rows.to(torch.int64), cols.to(torch.int64)
    order = torch.argsort(cols * n_queries + rows)
    rows, cols = rows[order], cols[order]
    return Exclusion(rows, cols, torch.bincount(rows, minlength=n_queries))
