"""Exact inner-product top-k: ``llmrec.topk``. Retrieval goes through this function only.

Dispatch: CUDA items -> the fused Triton kernel (``llmrec_kernels.topk_triton``); CPU items -> the
exact chunked CPU path (``llmrec.retrieval.topk.cpu``: a oneDNN or OpenBLAS GEMM per chunk, then a
threshold filter); other devices (or CUDA without triton) -> the chunked torch path
(``llmrec.retrieval.topk.chunked``). ``backend="triton"`` forces
the kernel, which on CPU tensors needs ``TRITON_INTERPRET=1`` (tests only).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from llmrec.retrieval.errors import NonFiniteScores, TopKError
from llmrec.retrieval.topk.chunked import topk_chunked
from llmrec.retrieval.topk.cpu import topk_cpu
from llmrec.retrieval.topk.exclusion import normalize_exclude

MAX_K = 128
BACKENDS = ("auto", "torch", "triton")
USE_CPU_PATH = True  # CPU items take topk_cpu (tests set False to run the torch path on the CPU)


def _to_torch(x, name: str) -> torch.Tensor:
    """A torch tensor viewing (or, where torch cannot view it, copying) ``x``: numpy arrays with
    negative strides or non-native byte order are copied; read-only arrays are viewed (never
    written). Raises TopKError for what torch cannot hold (e.g. longdouble, object, str)."""
    if isinstance(x, torch.Tensor):
        return x
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise TopKError(f"{name} cannot be read as an array ({type(x).__name__}): {e}") from None
    try:
        if not a.dtype.isnative or any(st < 0 for st in a.strides):
            a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
        with warnings.catch_warnings():  # read-only arrays: torch warns about writes we never do
            warnings.simplefilter("ignore", UserWarning)
            return torch.as_tensor(a)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TopKError(f"{name} cannot be converted to a tensor (numpy dtype {a.dtype}): {e}") from None


def _as_tensor(x, name: str) -> torch.Tensor:
    t = _to_torch(x, name)
    if t.layout != torch.strided:
        raise TopKError(f"{name} must be a dense tensor, got layout {t.layout}")
    if t.dim() != 2:
        raise TopKError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        raise TopKError(f"{name} must be floating point, got {t.dtype}")
    return t


def _first_bad_row(x: torch.Tensor, start: int = 0) -> int | None:
    bad = (~torch.isfinite(x[start:])).any(1).nonzero()
    return None if bad.numel() == 0 else start + int(bad[0])


def _nonfinite_error(x: torch.Tensor, start: int) -> TopKError:
    row = _first_bad_row(x, start)
    if row is not None:
        return TopKError(f"items row {row} contains NaN or inf")
    return TopKError("scores overflow float32 (queries or items too large)")


def topk(queries, items, k: int, exclude=None, *, backend: str = "auto", chunk: int | None = None):
    """Exact top-k by inner product (cosine when both sides are L2-normalised).

    Args:
        queries: float [B, D] (torch tensor or numpy array; used in fp32).
        items: float [N, D]: fp32, fp16 or bf16 (scores are accumulated in fp32).
        k: 1 <= k <= 128 and k <= N - |exclude[b]| for every query b.
        exclude: None; a sequence of B collections of item indices never returned for that query
            (e.g. the user's history); or a bool mask [B, N] (True = never return).
        backend: "auto" (Triton on CUDA, chunked GEMM otherwise), "torch" (the chunked GEMM path
            on the items' device: oneDNN/numpy on the CPU, torch elsewhere) or "triton" (the fused
            kernel; on CPU tensors only under ``TRITON_INTERPRET=1``).
        chunk: items per step of the chunked path (default: ``topk_cpu.cpu_chunk`` on the CPU,
            2**17 scores per chunk; ``chunked.default_chunk`` elsewhere); its memory is
            O(B * (k + chunk) + chunk * D) for fp16/bf16 items, O(B * (k + chunk)) for fp32,
            independent of N.
    Returns:
        (scores float32 [B, k], indices int64 [B, k]) on the items' device, best first; equal
        scores are ordered by the lower item index.
    Raises:
        TopKError: wrong ranks, layouts or dtypes, mismatched D, B = 0, N = 0 or D = 0, NaN/inf in
            the inputs (or scores that overflow fp32, excluded items included), a bad ``exclude``,
            k out of range, a bad ``chunk``, unknown backend.
    """
    if backend not in BACKENDS:
        raise TopKError(f"backend must be one of {BACKENDS}, got {backend!r}")
    x = _as_tensor(items, "items")
    q = _as_tensor(queries, "queries")
    B, D = q.shape
    N = x.shape[0]
    if N == 0:
        raise TopKError("items is empty (N = 0)")
    if B == 0:
        raise TopKError("queries is empty (B = 0)")
    if x.shape[1] != D:
        raise TopKError(f"queries have D={D} but items have D={x.shape[1]}")
    if D == 0:
        raise TopKError("queries and items have D = 0 (no dimensions to score)")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
        raise TopKError(f"chunk must be None or an integer >= 1, got {chunk!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise TopKError(f"k must be an integer in [1, {MAX_K}], got {k!r}")
    k = int(k)
    q = q.to(device=x.device, dtype=torch.float32)
    finite = np.isfinite(q.detach().numpy()).all() if q.device.type == "cpu" else torch.isfinite(q).all()
    if not bool(finite):
        row = _first_bad_row(q)
        raise TopKError(f"queries row {row} contains NaN or inf")
    excl = normalize_exclude(exclude, B, N)
    worst = int(excl.counts.max()) if excl.counts.numel() else 0
    if k > N - worst:
        b = int(excl.counts.argmax())
        raise TopKError(f"k={k} > N - |excluded| = {N} - {worst} = {N - worst} for query {b}")
    use_triton = backend == "triton" or (backend == "auto" and x.is_cuda)
    if backend == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise TopKError("backend='triton' on CPU tensors needs TRITON_INTERPRET=1 (set before importing triton)")
    if use_triton:
        try:
            from llmrec_kernels.topk_triton import NonFiniteScoresError, triton_topk
        except ImportError:
            if backend == "triton":
                raise
            use_triton = False  # no triton: the chunked torch path runs on the GPU too
    if use_triton:
        try:
            return triton_topk(q, x, k, bits=None if excl.empty else excl.bitset(N, x.device))
        except NonFiniteScoresError:
            raise _nonfinite_error(x, 0) from None
    chunked = topk_cpu if x.device.type == "cpu" and USE_CPU_PATH else topk_chunked
    try:
        return chunked(q, x, k, excl.to(x.device), chunk=None if chunk is None else int(chunk))
    except NonFiniteScores as e:
        raise _nonfinite_error(x, e.start) from None
