"""Shared inputs for the top-k tests: ragged shapes, ties, duplicated rows, exclusions."""

from __future__ import annotations

import torch
from llmrec_kernels.reference import topk_reference


def integer_data(B: int, N: int, D: int, seed: int = 0, dup_every: int = 3):
    """Small-integer queries/items: every dot product is exact in fp32 (any summation order) and
    many scores tie; every ``dup_every``-th item duplicates item 1."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-2, 3, (B, D), generator=g).float()
    x = torch.randint(-2, 3, (N, D), generator=g).float()
    if N > 1:
        x[::dup_every] = x[1]
    return q, x


def normal_data(B: int, N: int, D: int, seed: int = 0):
    """L2-normalised Gaussian queries/items (cosine scores)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, D, generator=g)
    x = torch.randn(N, D, generator=g)
    return q / q.norm(dim=1, keepdim=True), x / x.norm(dim=1, keepdim=True)


def random_exclude(B: int, N: int, max_len: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(B):
        n = int(torch.randint(0, max_len + 1, (1,), generator=g))
        out.append(torch.randint(0, N, (n,), generator=g).tolist())  # may repeat: fine
    return out


def mask_of(exclude, B: int, N: int) -> torch.Tensor:
    m = torch.zeros(B, N, dtype=torch.bool)
    for b, e in enumerate(exclude):
        m[b, list(e)] = True
    return m


def check(got, q, x, k, exclude=None, exact_values=True):
    """Indices equal to the reference; values equal (exact data) or within fp32 rounding."""
    v, i = got
    B, N = q.shape[0], x.shape[0]
    rv, ri = topk_reference(q, x, k, None if exclude is None else mask_of(exclude, B, N))
    assert v.dtype == torch.float32 and i.dtype == torch.int64
    assert v.shape == (B, k) and i.shape == (B, k)
    assert torch.equal(i.cpu(), ri), (i, ri)
    if exact_values:
        assert torch.equal(v.cpu(), rv)
    else:
        torch.testing.assert_close(v.cpu(), rv, rtol=1e-5, atol=1e-5)
