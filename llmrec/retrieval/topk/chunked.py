"""Exact chunked top-k in torch on any device (the fallback on CUDA when triton is missing; the
CPU uses :mod:`llmrec.retrieval.topk.cpu`).

Per chunk of items: scores [B, chunk] = one GEMM, a finiteness check, exclusions set to -inf, the
chunk's top-k (exact tie order by index), then a merge with the running top-k. Memory is
O(B * (k + chunk)) (+ chunk * D for fp16/bf16 items converted to fp32), whatever N is: the
[B, N] score matrix is never built.
"""

from __future__ import annotations

import torch

from llmrec.retrieval.errors import NonFiniteScores
from llmrec.retrieval.topk.exclusion import Exclusion

# Memory budgets (elements of fp32): the score buffer [B, chunk] and, for fp16/bf16 items, the fp32
# copy of the item chunk [chunk, D].
SCORE_BUDGET = 2**23  # 32 MiB
ITEM_BUDGET = 2**24  # 64 MiB
MIN_CHUNK, MAX_CHUNK = 4096, 2**20


def default_chunk(n_queries: int, dim: int = 0, converts: bool = False) -> int:
    """Items per step: as many as fit the budgets, within [MIN_CHUNK, MAX_CHUNK]."""
    c = SCORE_BUDGET // max(1, n_queries)
    if converts:
        c = min(c, ITEM_BUDGET // max(1, dim))
    return max(MIN_CHUNK, min(MAX_CHUNK, c))


def _chunk_topk(s: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (value desc, index asc) top-kk of each row of s [B, c]; indices local to the chunk.

    ``torch.topk`` orders equal values arbitrarily, so it takes kk + 1 values: a row whose values
    are all distinct (no two neighbours equal, including the (kk+1)-th) is already exact; the rare
    rows with a tie are redone with a stable sort.
    """
    c = s.shape[1]
    if kk >= c:
        v, i = torch.sort(s, dim=1, descending=True, stable=True)
        return v, i
    v, i = torch.topk(s, kk + 1, dim=1, sorted=True)
    tie = (v[:, 1:] == v[:, :-1]).any(1)
    v, i = v[:, :kk], i[:, :kk]
    if bool(tie.any()):
        rows = tie.nonzero(as_tuple=True)[0]
        sv, si = torch.sort(s[rows], dim=1, descending=True, stable=True)
        v[rows], i[rows] = sv[:, :kk], si[:, :kk]
    return v, i


def topk_chunked(q: torch.Tensor, x: torch.Tensor, k: int, excl: Exclusion,
                 chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by inner product, streaming the items in chunks (torch ops on x's device).

    Each step's candidates are in (value desc, index asc) order and all have higher indices than
    the running best, so a stable sort of [best, candidates] by value merges them exactly.

    Args:
        q: float32 [B, D] queries. x: float [N, D] items (cast to fp32 chunk by chunk).
        k: 1 <= k <= N - max excluded per query (checked by the caller).
        excl: excluded (query, item) pairs sorted by item index, on x's device.
        chunk: items per step (default :func:`default_chunk`: 32 MiB of scores, 64 MiB of
            converted items).
    Returns:
        (scores float32 [B, k], indices int64 [B, k]) best first, ties broken by the lower index.
    Raises:
        NonFiniteScores: a chunk's scores hold NaN or inf (non-finite items, or overflow).
    """
    B, N = q.shape[0], x.shape[0]
    chunk = min(chunk or default_chunk(B, x.shape[1], x.dtype != torch.float32), N)
    qt = q.T.contiguous() if B <= 64 else None  # [c, D] @ [D, B] is the faster shape for small B
    bounds = None
    if not excl.empty:
        bounds = torch.searchsorted(excl.cols, torch.arange(0, N + chunk, chunk, device=excl.cols.device))
    best_v = best_i = None
    for n, start in enumerate(range(0, N, chunk)):
        xc = x[start:start + chunk]
        if xc.dtype != torch.float32:
            xc = xc.float()
        s = (xc @ qt).T if qt is not None else q @ xc.T  # [B, c]
        # NaN propagates through min; -inf is the min; +inf would be the top value (checked below).
        if not bool(torch.isfinite(s.amin())):
            raise NonFiniteScores(start)
        if bounds is not None:
            lo, hi = int(bounds[n]), int(bounds[n + 1])
            if hi > lo:
                cell = (excl.rows[lo:hi], excl.cols[lo:hi] - start)
                if not bool(torch.isfinite(s[cell]).all()):  # +inf here would never be selected
                    raise NonFiniteScores(start)
                s[cell] = float("-inf")
        v, i = _chunk_topk(s, min(k, s.shape[1]))
        if bool((v[:, 0] == float("inf")).any()):
            raise NonFiniteScores(start)
        if start:
            i = i + start
        if best_v is None:
            best_v, best_i = v, i
            continue
        cat_v, cat_i = torch.cat([best_v, v], 1), torch.cat([best_i, i], 1)
        order = torch.sort(cat_v, dim=1, descending=True, stable=True).indices[:, :k]
        best_v, best_i = cat_v.gather(1, order), cat_i.gather(1, order)
    return best_v, best_i


__all__ = ["default_chunk", "topk_chunked"]
