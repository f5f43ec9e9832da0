"""Torch reference for exact top-k and the lexicographic selection helper shared by all paths.

Ordering used everywhere: higher score first; equal scores ordered by the lower item index.
"""

from __future__ import annotations

import torch


def lex_topk(values: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Select the k best (value desc, index asc) entries of each row.

    Args:
        values: float [B, M] candidate scores (-inf marks an invalid candidate).
        indices: int [B, M] item index of each candidate (any order).
        k: 1 <= k <= M.
    Returns:
        (values [B, k], indices [B, k]) of the same dtypes, best first.
    """
    order = torch.argsort(indices, dim=1, stable=True)
    values, indices = values.gather(1, order), indices.gather(1, order)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, order), indices.gather(1, order)


def topk_reference(queries: torch.Tensor, items: torch.Tensor, k: int,
                   exclude_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk(Q @ X.T)`` with excluded items masked and ties broken by the lower index.

    Materialises the full [B, N] score matrix: for tests and benchmarks only.

    Args:
        queries: float [B, D]. items: float [N, D] (any float dtype; computed in fp32).
        k: 1 <= k <= N. exclude_mask: optional bool [B, N], True = never return.
    Returns:
        (scores float32 [B, k], indices int64 [B, k]), best first.
    """
    scores = queries.float() @ items.float().T
    if exclude_mask is not None:
        scores = scores.masked_fill(exclude_mask.to(scores.device, torch.bool), float("-inf"))
    # A stable descending sort keeps equal scores in index order.
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    return scores.gather(1, order), order
