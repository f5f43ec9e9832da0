"""Exact chunked top-k on the CPU: a GEMM per chunk of items, then a threshold filter.

Per chunk of items: scores [c, B] = one GEMM (oneDNN's fp32 inner product for B >= 8 and large
calls, numpy's OpenBLAS otherwise; see :class:`_OneDNNScores`), a finiteness check, exclusions set
to -inf. Once every query holds k results, only the scores above its k-th best value can enter
its top-k (an equal score loses: it has a higher index), so the chunk costs one comparison pass;
the few scores above the thresholds are merged in batches with stable sorts. The first chunk's
candidates are the scores at or above a one-pass lower bound (:func:`_group_bound`); a chunk
where many scores pass (e.g. scores that grow with the item index) takes an exact selection
(``argpartition``) instead. Memory is O(B * (k + chunk)) (+ chunk * D for fp16/bf16 items
converted to fp32), whatever N is: the [B, N] score matrix is never built.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from llmrec.retrieval.errors import NonFiniteScores
from llmrec.retrieval.topk.chunked import ITEM_BUDGET
from llmrec.retrieval.topk.exclusion import Exclusion

# Items per chunk (measured on 2 Zen 5 cores, N = 1M, D = 384, k = 20): one query is a GEMV that
# runs fastest over long chunks; for B >= 2 chunks of about 2**17 scores (512 KiB, in L2) made the
# filter passes cheapest without slowing the GEMM (B = 16: 8192 items, B = 256: 2048).
SCORE_BUDGET = 2**17
MIN_CHUNK, MAX_CHUNK = 2048, 2**18
# A chunk whose scores above the thresholds number more than this per query (on average) takes
# the full selection instead of the filter.
FILTER_MAX_PER_QUERY = 64
# The first chunk's bound comes from this many groups per result (see _group_bound).
GROUPS_PER_K = 4
# Calls with at most this many multiply-adds (N * D * B; one user over the shipped catalogs: 1.7k-10k
# items, D <= 384) keep numpy's BLAS on the calling thread. That is slower back to back on an
# idle machine (10k x 384, B = 1: 0.17 -> 0.29 ms a call) but skips waking BLAS's worker threads,
# which waits for the cores whenever another thread pool (torch's, faiss's) has just run on them:
# calls alternating with torch and faiss took 2.7 ms with two threads, 0.46-1.0 ms with one.
SINGLE_THREAD_MACS = 2**22
# Larger calls with at least this many queries score with oneDNN (see _OneDNNScores).
ONEDNN_MIN_B = 8
USE_ONEDNN = True  # tests set False to run numpy's GEMM at every size


_single = threading.Lock()
_single_state = {"users": 0, "limiter": None}


@functools.cache
def _numpy_blas():
    """threadpoolctl's handle on the BLAS libraries loaded when first asked (numpy's OpenBLAS)."""
    return ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def _blas_threads(macs: int):
    """Context: one BLAS thread for small calls (see SINGLE_THREAD_MACS), unchanged otherwise.

    The thread count is process-wide, so concurrent small calls share one limit: the first sets
    it, the last restores the count from before the first.
    """
    if macs > SINGLE_THREAD_MACS:
        yield
        return
    with _single:
        if _single_state["users"] == 0:
            _single_state["limiter"] = _numpy_blas().limit(limits=1)
        _single_state["users"] += 1
    try:
        yield
    finally:
        with _single:
            _single_state["users"] -= 1
            if _single_state["users"] == 0:
                _single_state["limiter"].restore_original_limits()
                _single_state["limiter"] = None


class _NumpyScores:
    """Scores of an item chunk by numpy's BLAS (OpenBLAS) into one reused [chunk, B] buffer."""

    def __init__(self, q: torch.Tensor, chunk: int):
        self.qt = np.ascontiguousarray(q.detach().numpy().T)  # [D, B]
        self.buf = np.empty((chunk, q.shape[0]), dtype=np.float32)

    def __call__(self, xc: torch.Tensor) -> np.ndarray:
        xn = xc.detach().numpy()
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite scores raise in the caller
            return np.matmul(xn, self.qt, out=self.buf[:xn.shape[0]])


class _OneDNNScores:
    """Scores of an item chunk by oneDNN's fp32 inner product (torch's mkldnn ops, as torch's
    compiler uses for CPU linear layers), the queries packed once per call. On this machine it ran
    at 490-510 GFLOP/s for B = 256 where OpenBLAS's pinned AVX2 kernels ran at 240-255, and 2-3x
    faster at B = 16; for B = 1 (a GEMV, bound by memory) they were even, so few queries use numpy.
    Values agree with numpy's to fp32 rounding (another summation order)."""

    def __init__(self, q: torch.Tensor, chunk: int):
        self.w = torch.ops.mkldnn._reorder_linear_weight(q.detach().contiguous(), chunk)

    def __call__(self, xc: torch.Tensor) -> np.ndarray:
        return torch.ops.mkldnn._linear_pointwise(xc.detach().contiguous(), self.w, None, "none", [], "").numpy()


@functools.cache
def onednn_available() -> bool:
    """True if this torch build has the oneDNN ops and they reproduce a small exact product."""
    try:
        f32 = torch.float32  # explicit: the probe must not follow torch.set_default_dtype
        q = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=f32)
        x = torch.tensor([[2.0, 0.5], [-1.0, 4.0], [0.0, 1.0]], dtype=f32)
        got = _OneDNNScores(q, 3)(x)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return bool(np.array_equal(got, (x @ q.T).numpy()))


def cpu_chunk(n_queries: int, dim: int, converts: bool = False) -> int:
    """Default items per chunk for B queries of dimension D (``converts``: fp16/bf16 items, whose
    fp32 copy of a chunk is capped at ITEM_BUDGET elements)."""
    c = MAX_CHUNK if n_queries == 1 else max(MIN_CHUNK, min(MAX_CHUNK, SCORE_BUDGET // n_queries))
    if converts:
        c = min(c, max(MIN_CHUNK, ITEM_BUDGET // max(1, dim)))
    return c


def _select(s: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact (value desc, index asc) top-kk of each row of s [B, c]; indices local to the chunk.

    The kk + 1 largest are found with ``argpartition`` and put in (value desc, index asc) order:
    exact unless the kk-th and (kk+1)-th values are equal (then equal values may exist outside
    the selection): those rows are redone with a stable sort.
    """
    B, c = s.shape
    if kk >= c:
        i = np.argsort(-s, axis=1, kind="stable")
        return np.take_along_axis(s, i, axis=1), i
    part = np.argpartition(s, c - kk - 1, axis=1)[:, c - kk - 1:]  # the kk + 1 largest, unordered
    vals = np.take_along_axis(s, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    part, vals = np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)
    v, i = vals[:, :kk].copy(), part[:, :kk].copy()
    for r in np.flatnonzero(vals[:, kk - 1] == vals[:, kk]):
        o = np.argsort(-s[r], kind="stable")[:kk]
        v[r], i[r] = s[r, o], o
    return v, i


class _Running:
    """The running top-k per query, plus candidates not merged yet.

    Candidates arrive chunk by chunk as flat (query, item, value) arrays, each query's items in
    ascending order, and are merged in batches: grouped by query (a stable sort, so items stay
    ascending), padded to [B, m], put after the current best (all lower indices) and ordered by a
    stable sort on value: (value desc, index asc) as the reference.
    """

    def __init__(self, n_queries: int, k: int):
        self.B, self.k = n_queries, k
        self.v = np.empty((n_queries, 0), np.float32)  # [B, w] best first, w <= k
        self.i = np.empty((n_queries, 0), np.int64)
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.n_pending = 0

    @property
    def full(self) -> bool:
        return self.v.shape[1] == self.k

    def add(self, query: np.ndarray, item: np.ndarray, value: np.ndarray) -> None:
        self.pending.append((query, item, value))
        self.n_pending += value.size

    def add_dense(self, v: np.ndarray, i: np.ndarray) -> None:
        """Add [B, w] candidates (values, global indices), each row in index order or best first."""
        self.add(np.repeat(np.arange(self.B), v.shape[1]), i.ravel(), v.ravel())

    def merge(self) -> None:
        if not self.pending:
            return
        query, item, value = (np.concatenate(a) for a in zip(*self.pending, strict=True))
        self.pending, self.n_pending = [], 0
        order = np.argsort(query, kind="stable")
        query, item, value = query[order], item[order], value[order]
        counts = np.bincount(query, minlength=self.B)
        rank = np.arange(query.size) - (np.cumsum(counts) - counts)[query]
        m = int(counts.max())
        pv = np.full((self.B, m), -np.inf, np.float32)
        pi = np.full((self.B, m), -1, np.int64)  # padding: after every real entry of its row
        pv[query, rank], pi[query, rank] = value, item
        cat_v, cat_i = np.concatenate([self.v, pv], 1), np.concatenate([self.i, pi], 1)
        w = min(self.k, self.v.shape[1] + int(counts.min()))  # real entries in every row
        top = np.argsort(-cat_v, axis=1, kind="stable")[:, :w]
        self.v, self.i = np.take_along_axis(cat_v, top, 1), np.take_along_axis(cat_i, top, 1)


def topk_cpu(q: torch.Tensor, x: torch.Tensor, k: int, excl: Exclusion,
             chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k by inner product over CPU tensors, streaming the items in chunks: the same
    arguments, result and errors as :func:`llmrec.retrieval.topk.chunked.topk_chunked` (``excl`` on
    the CPU), with ``chunk`` defaulting to :func:`cpu_chunk`."""
    B, N = q.shape[0], x.shape[0]
    chunk = min(chunk or cpu_chunk(B, x.shape[1], x.dtype != torch.float32), N)
    run = _Running(B, k)
    macs = N * x.shape[1] * B
    if B >= ONEDNN_MIN_B and macs > SINGLE_THREAD_MACS and USE_ONEDNN and onednn_available():
        score = _OneDNNScores(q, chunk)
    else:
        score = _NumpyScores(q, chunk)
    with _blas_threads(macs):
        _scan(x, score, None if excl.empty else excl, chunk, run)
    run.merge()
    return torch.from_numpy(run.v), torch.from_numpy(run.i)


def _scan(x: torch.Tensor, score, excl: Exclusion | None, chunk: int, run: _Running) -> None:
    """The chunk loop of :func:`topk_cpu`: ``score(chunk [c, D])`` gives the scores [c, B];
    candidates go to ``run``."""
    N, B, k = x.shape[0], run.B, run.k
    mask = np.empty((chunk, B), dtype=bool)
    rows, cols = (None, None) if excl is None else (excl.rows.numpy(), excl.cols.numpy())
    for start in range(0, N, chunk):
        stop = min(N, start + chunk)
        xc = x[start:stop]
        if xc.dtype != torch.float32:
            xc = xc.float()
        t = score(xc)  # [c, B]
        c = t.shape[0]
        # NaN propagates through min; -inf is the min; +inf is caught where it would be selected.
        if not np.isfinite(t.min()):
            raise NonFiniteScores(start)
        if cols is not None:
            lo, hi = np.searchsorted(cols, [start, stop])
            cell = (cols[lo:hi] - start, rows[lo:hi])
            if not np.isfinite(t[cell]).all():  # +inf escapes the min check; excluded, never selected
                raise NonFiniteScores(start)
            t[cell] = -np.inf
        flat, first = None, not run.full
        if run.full:
            # Only scores above a query's k-th best can enter its top-k (an equal one has a higher
            # index, so it loses). The threshold may predate the pending candidates: it is a lower
            # bound, so the candidates are a superset of those that matter.
            flat = np.flatnonzero(np.greater(t, run.v[:, -1], out=mask[:c]))
        elif run.v.shape[1] == 0 and c >= GROUPS_PER_K * k:
            # First chunk: each query's k-th largest group maximum is a lower bound on its k-th
            # best (k distinct items reach it); scores >= it (ties kept) hold the chunk's top-k.
            flat = np.flatnonzero(np.greater_equal(t, _group_bound(t, k), out=mask[:c]))
        if flat is not None and flat.size > FILTER_MAX_PER_QUERY * B:
            flat = None
        if flat is None:
            v, i = _select(t.T, min(k, c))
            if v.max() == np.inf:
                raise NonFiniteScores(start)
            run.add_dense(v, i + start)
            run.merge()
        elif flat.size:
            value = t.ravel()[flat]
            if value.max() == np.inf:
                raise NonFiniteScores(start)
            item, query = np.divmod(flat, B)
            run.add(query, item + start, value)
            if first or run.n_pending > B * k:
                run.merge()


def _group_bound(t: np.ndarray, k: int) -> np.ndarray:
    """Per query (column of t [c, B]): the k-th largest of the maxima of GROUPS_PER_K * k groups
    of consecutive items, a lower bound on the k-th largest score of t. One pass over t instead
    of a selection (``argpartition`` on a strided [B, c] view cost 1.8 ms at c = 2048, B = 256)."""
    groups = GROUPS_PER_K * k
    size = t.shape[0] // groups
    maxima = t[:groups * size].reshape(groups, size, t.shape[1]).max(axis=1)  # [groups, B]
    return np.partition(maxima, groups - k, axis=0)[groups - k]


__all__ = ["cpu_chunk", "onednn_available", "topk_cpu"]
