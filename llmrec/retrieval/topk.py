"""Exact inner-product top-k: ``llmrec.topk``. Retrieval goes through this function only."""

from __future__ import annotations

import numpy as np
import torch

from llmrec.errors import LLMRecError


class TopKError(LLMRecError, ValueError):
    """Bad input to :func:`topk` (shapes, k, non-finite values, empty items)."""


def _as_tensor(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.dim() != 2:
        raise TopKError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        raise TopKError(f"{name} must be floating point, got {t.dtype}")
    if not torch.isfinite(t).all():
        raise TopKError(f"{name} contains NaN or inf")
    return t


def topk(queries, items, k: int, exclude=None, chunk: int = 65536):
    """Exact top-k by inner product (cosine when both sides are L2-normalised).

    Args:
        queries: float [B, D] (torch tensor or numpy array).
        items: float [N, D] (fp32, fp16 or bf16; scores are accumulated in fp32).
        k: 1 <= k <= N - |exclude[b]| for every query b.
        exclude: None, or a sequence of B collections of item indices never returned for that query
            (e.g. the user's history).
        chunk: items scanned per step; memory is O(B * (k + chunk)), independent of N.
    Returns:
        (scores float32 [B, k], indices int64 [B, k]), best first; ties broken by the lower index.
    Raises:
        TopKError: wrong ranks, mismatched D, empty items, NaN/inf, or k out of range.
    """
    q = _as_tensor(queries, "queries").float()
    x = _as_tensor(items, "items")
    B, D = q.shape
    N = x.shape[0]
    if N == 0:
        raise TopKError("items is empty (N = 0)")
    if x.shape[1] != D:
        raise TopKError(f"queries have D={D} but items have D={x.shape[1]}")
    ex = [set() for _ in range(B)] if exclude is None else [set(int(i) for i in e) for e in exclude]
    if len(ex) != B:
        raise TopKError(f"exclude has {len(ex)} entries for {B} queries")
    for b, e in enumerate(ex):
        if e and (min(e) < 0 or max(e) >= N):
            raise TopKError(f"exclude[{b}] holds an index outside [0, {N})")
        if not 1 <= k <= N - len(e):
            raise TopKError(f"k={k} out of range for query {b}: N={N}, excluded={len(e)}")
    best_s = torch.full((B, 0), float("-inf"))
    best_i = torch.zeros((B, 0), dtype=torch.long)
    for start in range(0, N, chunk):
        s = q @ x[start:start + chunk].float().T  # [B, c]
        for b, e in enumerate(ex):
            hit = [i - start for i in e if start <= i < start + s.shape[1]]
            if hit:
                s[b, hit] = float("-inf")
        idx = torch.arange(start, start + s.shape[1]).expand(B, -1)
        cat_s = torch.cat([best_s, s], 1)
        cat_i = torch.cat([best_i, idx], 1)
        order = torch.sort(cat_s, dim=1, descending=True, stable=True).indices[:, :k]
        best_s, best_i = cat_s.gather(1, order), cat_i.gather(1, order)
    return best_s, best_i
