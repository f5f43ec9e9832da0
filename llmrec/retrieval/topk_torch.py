"""Exact chunked top-k in plain torch (BLAS matmul + ``torch.topk`` per chunk): the CPU path.

Memory is O(B * (k + chunk)) whatever N is: the [B, N] score matrix is never built.
"""

from __future__ import annotations

import torch

from llmrec.retrieval.exclusion import Exclusion

# Score-buffer budget in elements (fp32): 2**23 = 32 MiB; chunk = clamp(budget / B).
SCORE_BUDGET = 2**23
MIN_CHUNK, MAX_CHUNK = 4096, 65536


def default_chunk(n_queries: int) -> int:
    """Items per step: as many as fit the score budget, within [MIN_CHUNK, MAX_CHUNK]."""
    return max(MIN_CHUNK, min(MAX_CHUNK, SCORE_BUDGET // max(1, n_queries)))


class NonFiniteScores(Exception):
    """Raised with the first chunk start whose scores hold NaN or inf."""

    def __init__(self, start: int):
        super().__init__(start)
        self.start = start


def _chunk_topk(s: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (value desc, index asc) top-kk of each row of s [B, c]; indices local to the chunk."""
    v, i = torch.topk(s, kk, dim=1, sorted=True)
    t = v[:, -1:]
    # torch.topk picks an arbitrary subset of the elements equal to the k-th value; fix the rows
    # where some equal element was left out, so the lowest indices win.
    bad = (s == t).sum(1) > (v == t).sum(1)
    if bool(bad.any()):
        rows = bad.nonzero(as_tuple=True)[0]
        order = torch.sort(s[rows], dim=1, descending=True, stable=True).indices[:, :kk]
        v[rows], i[rows] = s[rows].gather(1, order), order
    return v, i


def topk_chunked(q: torch.Tensor, x: torch.Tensor, k: int, excl: Exclusion,
                 chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by inner product, streaming the items in chunks.

    Args:
        q: float32 [B, D] queries. x: float [N, D] items (cast to fp32 chunk by chunk).
        k: 1 <= k <= N - max excluded per query (checked by the caller).
        excl: excluded (query, item) pairs sorted by item index.
        chunk: items per step (default :func:`default_chunk`).
    Returns:
        (scores float32 [B, k], indices int64 [B, k]) best first, ties broken by the lower index.
    Raises:
        NonFiniteScores: a chunk's scores hold NaN or inf (non-finite items, or overflow).
    """
    B, N = q.shape[0], x.shape[0]
    chunk = chunk or default_chunk(B)
    # [c, D] @ [D, B] is the faster GEMM shape for small B; the transpose of the result is a view.
    qt = q.T.contiguous()
    tall = B <= 64
    bounds = torch.searchsorted(excl.cols, torch.arange(0, N + chunk, chunk, device=excl.cols.device))
    best_v = torch.empty((B, 0), dtype=torch.float32, device=q.device)
    best_i = torch.empty((B, 0), dtype=torch.int64, device=q.device)
    for n, start in enumerate(range(0, N, chunk)):
        xc = x[start:start + chunk]
        if xc.dtype != torch.float32:
            xc = xc.float()
        s = (xc @ qt).T if tall else q @ xc.T  # [B, c]
        if not bool(torch.isfinite(s).all()):
            raise NonFiniteScores(start)
        lo, hi = int(bounds[n]), int(bounds[n + 1])
        if hi > lo:
            s[excl.rows[lo:hi], excl.cols[lo:hi] - start] = float("-inf")
        kk = min(k, s.shape[1])
        v, i = _chunk_topk(s, kk)
        # Candidates of this chunk in index order after the running best (all lower indices): a
        # stable sort by value then keeps (value desc, index asc).
        o = torch.argsort(i, dim=1)
        v, i = v.gather(1, o), i.gather(1, o) + start
        cat_v, cat_i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
        order = torch.sort(cat_v, dim=1, descending=True, stable=True).indices[:, :k]
        best_v, best_i = cat_v.gather(1, order), cat_i.gather(1, order)
    return best_v, best_i


__all__ = ["NonFiniteScores", "default_chunk", "topk_chunked"]
