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


def exclusion_bitset(rows: torch.Tensor, cols: torch.Tensor, n_queries: int, n_items: int,
                     device=None) -> torch.Tensor:
    """Excluded (query, item) pairs as an int32 bitset [B, ceil(N / 32)]: bit j % 32 of word j // 32
    of row b is set when item j is excluded for query b. Memory: B * N / 8 bytes.

    Args:
        rows, cols: int64 [E] unique (query, item) pairs.
    """
    words = (n_items + 31) // 32
    bits = torch.zeros(n_queries * words, dtype=torch.int64, device=device)
    rows, cols = rows.to(device, torch.int64), cols.to(device, torch.int64)
    # Pairs are unique, so summing distinct powers of two is a bitwise OR.
    bits.index_add_(0, rows * words + (cols >> 5), torch.ones_like(cols) << (cols & 31))
    bits = torch.where(bits >= 2**31, bits - 2**32, bits)  # reinterpret as signed int32
    return bits.view(n_queries, words).to(torch.int32)
