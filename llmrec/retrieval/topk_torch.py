"""Exact chunked top-k (BLAS GEMM + a top-k selection per chunk): the CPU path, and the CUDA
fallback when triton is missing.

Per chunk of items: scores [B, chunk] = one GEMM (numpy's OpenBLAS for large CPU chunks, torch
otherwise), a finiteness check, exclusions set to -inf, the chunk's top-k (numpy ``argpartition``
for small CPU blocks, ``torch.topk`` otherwise; exact tie order by index), then a merge with the
running top-k. Memory is O(B * (k + chunk)) (+ chunk * D for fp16/bf16 items converted to fp32),
whatever N is: the [B, N] score matrix is never built.
"""

from __future__ import annotations

import numpy as np
import torch

from llmrec.retrieval.exclusion import Exclusion

# Memory budgets (elements of fp32): the score buffer [B, chunk] and, for fp16/bf16 items, the fp32
# copy of the item chunk [chunk, D]. Few large chunks are faster: each BLAS call wakes its threads.
SCORE_BUDGET = 2**23  # 32 MiB
ITEM_BUDGET = 2**24  # 64 MiB
MIN_CHUNK, MAX_CHUNK = 4096, 2**20
NUMPY_MIN_MACS = 2**24  # per chunk: below this the GEMM runs in torch
NUMPY_TOPK_MAX = 2**20  # scores per chunk: up to this the selection runs in numpy (one thread)


def default_chunk(n_queries: int, dim: int = 0, converts: bool = False) -> int:
    """Items per step: as many as fit the budgets, within [MIN_CHUNK, MAX_CHUNK]."""
    c = SCORE_BUDGET // max(1, n_queries)
    if converts:
        c = min(c, ITEM_BUDGET // max(1, dim))
    return max(MIN_CHUNK, min(MAX_CHUNK, c))


class NonFiniteScores(Exception):
    """Raised with the first chunk start whose scores hold NaN or inf."""

    def __init__(self, start: int):
        super().__init__(start)
        self.start = start


def _all_finite_min(s: torch.Tensor) -> bool:
    """True if min(s) is finite (no NaN, no -inf); numpy on CPU, torch elsewhere."""
    if s.device.type == "cpu":
        return bool(np.isfinite(np.min(s.detach().numpy())))
    return bool(torch.isfinite(s.amin()))


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


def _chunk_topk_numpy(s: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as :func:`_chunk_topk` with numpy's single-threaded ``argpartition``.

    For small score blocks on the CPU: torch's row-parallel ``topk`` costs ~10 ms per call on a
    busy 2-core machine (threads wait for a core); this does not. The kk + 1 largest are selected,
    then ordered by (value desc, index asc): exact unless the kk-th and (kk+1)-th values are equal
    (then other equal elements may exist outside the selection): those rows use a stable sort.
    """
    a = s.numpy()
    B, c = a.shape
    if kk >= c:
        return _chunk_topk(s, kk)
    part = np.argpartition(a, c - kk - 1, axis=1)[:, c - kk - 1:]  # the kk + 1 largest, unordered
    vals = np.take_along_axis(a, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)  # value desc, then index asc
    part, vals = np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
    v, i = torch.from_numpy(vals[:, :kk].copy()), torch.from_numpy(part[:, :kk].astype(np.int64))
    tie = vals[:, kk - 1] == vals[:, kk]
    if tie.any():
        rows = torch.from_numpy(np.nonzero(tie)[0])
        sv, si = torch.sort(s[rows], dim=1, descending=True, stable=True)
        v[rows], i[rows] = sv[:, :kk], si[:, :kk]
    return v, i


def topk_chunked(q: torch.Tensor, x: torch.Tensor, k: int, excl: Exclusion,
                 chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by inner product, streaming the items in chunks.

    Per chunk: one GEMM, one min-reduction (finiteness), one ``torch.topk``; the rest is on
    [B, 2k] tensors. Each step's candidates are in (value desc, index asc) order and all have
    higher indices than the running best, so a stable sort of [best, candidates] by value merges
    them exactly.

    Args:
        q: float32 [B, D] queries. x: float [N, D] items (cast to fp32 chunk by chunk).
        k: 1 <= k <= N - max excluded per query (checked by the caller).
        excl: excluded (query, item) pairs sorted by item index.
        chunk: items per step (default :func:`default_chunk`: 32 MiB of scores, 64 MiB of
            converted items).
    Returns:
        (scores float32 [B, k], indices int64 [B, k]) best first, ties broken by the lower index.
    Raises:
        NonFiniteScores: a chunk's scores hold NaN or inf (non-finite items, or overflow).
    """
    B, N = q.shape[0], x.shape[0]
    chunk = min(chunk or default_chunk(B, x.shape[1], x.dtype != torch.float32), N)
    # [c, D] @ [D, B] is the faster GEMM shape for small B; the transpose of the result is a view.
    tall = B <= 64
    # Large CPU GEMMs go through numpy's BLAS (OpenBLAS in the numpy wheel: measured up to 2x faster
    # than torch's MKL on this AMD machine) into one reused buffer. Small ones stay in torch: OpenBLAS
    # pays ~10 ms to wake its threads on a busy machine (measured at 10k x 384, B = 1).
    on_cpu = x.device.type == "cpu" and chunk * x.shape[1] * B >= NUMPY_MIN_MACS
    if on_cpu:
        qn = np.ascontiguousarray(q.detach().T.numpy()) if tall else q.detach().numpy()
        buf = np.empty((chunk, B) if tall else (B, chunk), dtype=np.float32)
    else:
        qt = q.T.contiguous() if tall else None
        buf = None
    bounds = None
    if not excl.empty:
        bounds = torch.searchsorted(excl.cols, torch.arange(0, N + chunk, chunk, device=excl.cols.device))
    best_v = best_i = None
    for n, start in enumerate(range(0, N, chunk)):
        xc = x[start:start + chunk]
        if xc.dtype != torch.float32:
            xc = xc.float()
        c = xc.shape[0]
        if on_cpu:
            xn = xc.detach().numpy()
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite scores raise below
                if tall:
                    s = torch.from_numpy(np.matmul(xn, qn, out=buf[:c])).T  # [B, c] view
                else:
                    s = torch.from_numpy(np.matmul(qn, xn.T, out=buf[:, :c]))
        else:
            s = (xc @ qt).T if tall else q @ xc.T  # [B, c]
        # NaN propagates through min; -inf is the min; +inf would be the top value (checked below).
        # numpy's single-threaded min: torch's parallel reductions stall on a busy 2-core machine.
        if not _all_finite_min(s):
            raise NonFiniteScores(start)
        if bounds is not None:
            lo, hi = int(bounds[n]), int(bounds[n + 1])
            if hi > lo:
                s[excl.rows[lo:hi], excl.cols[lo:hi] - start] = float("-inf")
        small = s.device.type == "cpu" and s.numel() <= NUMPY_TOPK_MAX
        v, i = (_chunk_topk_numpy if small else _chunk_topk)(s, min(k, s.shape[1]))
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


__all__ = ["NonFiniteScores", "default_chunk", "topk_chunked"]
