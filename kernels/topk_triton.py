"""Fused inner-product similarity + exact top-k in Triton (never builds the [B, N] scores).

Two stages, so that every SM has work even at B = 1:

1. ``_topk_partial_kernel``: grid (ceil(B / BLOCK_B), S). Program (b, s) streams the items of
   split s tile by tile (BLOCK_N items, BLOCK_D features per ``tl.dot``, fp32 accumulation),
   masks excluded items through a per-query bitset, and keeps a running top-k per query in
   registers: K live slots (+ KP - K locked slots, KP = next power of two). A tile is merged only
   if its best score beats the current worst slot, so after the first tiles most tiles cost one
   max-reduction. Merging replaces the worst slot (lowest score, then highest index) by the tile's
   best candidate (highest score, then lowest index) until nothing beats the worst slot. No
   ``tl.sort``/``tl.topk`` is used (slow in the interpreter, and not needed).
2. merge: the S * K partial candidates per query are reduced with :func:`lex_topk` in torch
   (small: S * K values per query).

Precision: fp32 items use an IEEE fp32 ``tl.dot``. For fp16/bf16 items the fp32 query is split
into 2 (fp16) or 3 (bf16) parts of the item dtype, scaled by powers of two, so the tensor-core
dots (exact products, fp32 accumulation) reproduce the fp32 query to ~2^-22 relative.

Ordering: higher score first, ties by lower item index, exactly as the torch reference.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from llmrec_kernels.reference import lex_topk

MAX_K = 128
_INT_MAX = tl.constexpr(2**31 - 1)


class NonFiniteScoresError(ValueError):
    """Some score was NaN or inf (non-finite items, or fp32 overflow)."""


@triton.jit
def _topk_partial_kernel(
    Q, X, BITS, SCALES, OUT_V, OUT_I, BAD,
    B, N, D, n_per_split, words_per_row,
    stride_qp, stride_qb, stride_xn,
    K: tl.constexpr, KP: tl.constexpr, NPARTS: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_BITS: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr,
):
    pid_b = tl.program_id(0)
    pid_s = tl.program_id(1)
    n_splits = tl.num_programs(1)
    rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    row_ok = rows < B
    slot = tl.arange(0, KP)
    dd = tl.arange(0, BLOCK_D)
    nn = tl.arange(0, BLOCK_N)
    NEG = float("-inf")

    # Running top-k: slots >= K are locked at +inf (never the worst, never replaced).
    top_v = tl.where(slot[None, :] < K, NEG, float("inf")) + tl.zeros([BLOCK_B, KP], tl.float32)
    top_i = tl.full([BLOCK_B, KP], _INT_MAX, tl.int32)
    wv = tl.min(top_v, 1)
    wi = tl.max(tl.where(top_v == wv[:, None], top_i, -1), 1)
    n_bad = tl.zeros([BLOCK_B, BLOCK_N], tl.int32)

    n_start = pid_s * n_per_split
    n_end = tl.minimum(n_start + n_per_split, N)
    for n0 in range(n_start, n_end, BLOCK_N):
        cols = n0 + nn
        col_ok = cols < n_end
        acc = tl.zeros([BLOCK_B, BLOCK_N], tl.float32)
        for d0 in range(0, D, BLOCK_D):
            d = d0 + dd
            d_ok = d < D
            x = tl.load(X + cols[None, :].to(tl.int64) * stride_xn + d[:, None],
                        mask=col_ok[None, :] & d_ok[:, None], other=0.0)  # [BLOCK_D, BLOCK_N]
            if UPCAST:
                x = x.to(tl.float32)
            for p in tl.static_range(NPARTS):
                q = tl.load(Q + p * stride_qp + rows[:, None] * stride_qb + d[None, :],
                            mask=row_ok[:, None] & d_ok[None, :], other=0.0)
                if IEEE:
                    part = tl.dot(q, x, input_precision="ieee")
                else:
                    part = tl.dot(q, x)
                if NPARTS > 1:
                    part = part * tl.load(SCALES + p)
                acc += part
        n_bad += ((acc != acc) | (tl.abs(acc) == float("inf"))).to(tl.int32)
        ok = row_ok[:, None] & col_ok[None, :]
        if HAS_BITS:
            w = tl.load(BITS + rows[:, None].to(tl.int64) * words_per_row + (cols[None, :] >> 5),
                        mask=ok, other=0)
            ok = ok & (((w >> (cols[None, :] & 31)) & 1) == 0)
        s = tl.where(ok, acc, NEG)

        # Merge the tile into the running top-k while some row's best candidate beats its worst slot.
        m = tl.max(s, 1)
        mi = tl.min(tl.where(s == m[:, None], cols[None, :], _INT_MAX), 1)
        better = (m > NEG) & ((m > wv) | ((m == wv) & (mi < wi)))
        while tl.max(better.to(tl.int32), 0) > 0:
            wslot = tl.max(tl.where((top_v == wv[:, None]) & (top_i == wi[:, None]), slot[None, :], -1), 1)
            put = better[:, None] & (slot[None, :] == wslot[:, None])
            top_v = tl.where(put, m[:, None], top_v)
            top_i = tl.where(put, mi[:, None], top_i)
            # Drop the inserted candidate; a row whose best did not get in is done with this tile.
            s = tl.where(better[:, None] & (cols[None, :] != mi[:, None]), s, NEG)
            wv = tl.min(top_v, 1)
            wi = tl.max(tl.where(top_v == wv[:, None], top_i, -1), 1)
            m = tl.max(s, 1)
            mi = tl.min(tl.where(s == m[:, None], cols[None, :], _INT_MAX), 1)
            better = (m > NEG) & ((m > wv) | ((m == wv) & (mi < wi)))

    out = (rows[:, None].to(tl.int64) * n_splits + pid_s) * K + slot[None, :]
    keep = row_ok[:, None] & (slot[None, :] < K)
    tl.store(OUT_V + out, top_v, mask=keep)
    tl.store(OUT_I + out, top_i, mask=keep)
    tl.store(BAD + pid_b * n_splits + pid_s, tl.sum(tl.sum(n_bad, 1), 0))


def _query_parts(q: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Split fp32 queries [B, D] into parts [P, B, D] of ``dtype`` and fp32 scales [P] with
    q ~= sum_p parts[p] * scales[p] (all scales powers of two, so rescaling is exact)."""
    if dtype == torch.float32:
        return q.unsqueeze(0).contiguous(), torch.ones(1, dtype=torch.float32, device=q.device)
    n_parts, mant = (2, 11) if dtype == torch.float16 else (3, 8)
    amax = float(q.abs().max())
    e = 0 if amax == 0 else math.frexp(amax)[1]  # amax < 2**e
    scale = 2.0 ** (-e)  # q * scale in (-1, 1): far from fp16 overflow
    r = q * scale
    parts, scales = [], []
    for p in range(n_parts):
        f = 2.0 ** (mant * p)  # lift the residual back to ~unit range (no fp16 subnormals)
        h = (r * f).to(dtype)
        parts.append(h)
        scales.append(1.0 / (f * scale))
        r = r - h.float() / f
    return torch.stack(parts).contiguous(), torch.tensor(scales, dtype=torch.float32, device=q.device)


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # interpreter: a few splits exercise the merge


def pick_config(B: int, N: int, D: int, k: int, device: torch.device, itemsize: int = 2) -> dict:
    """Block sizes, warps, pipeline stages and number of splits.

    GPU choice (NOT yet timed on a GPU; ``kernels/gpu_check.sh --sweep`` times alternatives). From
    the offline sm_90 build (``python -m llmrec_kernels.compile_check``, with the alignment hints a
    real launch gets): fp16, B <= 16: BLOCK 16 x 64 x 64, 4 warps, 3 stages -> ~161 registers, 24 KiB
    shared, cp.async-pipelined item loads, no spills at k = 20, so ~3 programs fit per SM (more
    bytes in flight than one 8-warp 16 x 128 x 64 program: 210 registers). B > 16: 32 x 64 x 64,
    8 warps (~160 registers). BLOCK_B = 64 spills. fp32 items: BLOCK_D = 32. Splits give ~8
    programs per SM so that B = 1 still fills the GPU. In the interpreter, small blocks and a few
    splits keep tests fast and exercise the merge.
    """
    if device.type == "cuda":
        if B <= 16:
            block_b, block_n, block_d, warps = (16, 128, 32, 8) if itemsize == 4 else (16, 64, 64, 4)
        else:
            block_b, block_n, block_d, warps = (32, 64, 32, 8) if itemsize == 4 else (32, 64, 64, 8)
        per_sm, stages = 8, 3
    else:
        block_b, block_n, block_d, warps, per_sm, stages = 16, 32, 16, 4, 4, 1
    b_blocks = triton.cdiv(B, block_b)
    tiles = triton.cdiv(N, block_n)
    want = max(1, per_sm * _num_sms(device) // b_blocks)
    splits = max(1, min(tiles, want))
    n_per_split = triton.cdiv(tiles, splits) * block_n
    splits = triton.cdiv(N, n_per_split)
    return dict(BLOCK_B=block_b, BLOCK_N=block_n, BLOCK_D=block_d, splits=splits,
                n_per_split=n_per_split, num_warps=warps, num_stages=stages)


def with_splits(cfg: dict, N: int, per_program_items: int | None = None, splits: int | None = None) -> dict:
    """Return cfg with the item range re-split (by items per program or by number of splits)."""
    tiles = triton.cdiv(N, cfg["BLOCK_N"])
    if splits is not None:
        per_program_items = triton.cdiv(tiles, max(1, min(tiles, splits))) * cfg["BLOCK_N"]
    n_per = max(cfg["BLOCK_N"], triton.cdiv(per_program_items, cfg["BLOCK_N"]) * cfg["BLOCK_N"])
    return cfg | dict(n_per_split=n_per, splits=triton.cdiv(N, n_per))


def triton_topk(q: torch.Tensor, x: torch.Tensor, k: int, bits: torch.Tensor | None = None,
                config: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of q @ x.T with the fused kernel. Inputs are validated by ``llmrec.topk``.

    Args:
        q: float32 [B, D] queries. x: fp32/fp16/bf16 [N, D] items, same device as q.
        k: 1..128 (<= N - excluded per query). bits: optional int32 exclusion bitset
            [B, ceil(N / 32)] (bit j % 32 of word j // 32 set = item j excluded).
        config: override of :func:`pick_config`'s block sizes/splits; ``upcast=True`` computes
            fp16/bf16 tiles in fp32 (IEEE dot on CUDA cores) instead of split-query tensor cores.
    Returns:
        (scores float32 [B, k], indices int64 [B, k]) best first, ties by the lower index.
    Raises:
        NonFiniteScoresError: some score was NaN or inf.
    """
    B, D = q.shape
    N = x.shape[0]
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        x = x.float()
    if x.stride(1) != 1:
        x = x.contiguous()
    cfg = pick_config(B, N, D, k, x.device, x.element_size()) | (config or {})
    # The interpreter computes bf16 tl.dot on the raw bits: upcast bf16 tiles to fp32 there.
    upcast = cfg.get("upcast", x.dtype == torch.bfloat16 and x.device.type != "cuda")
    parts, scales = _query_parts(q.float(), torch.float32 if upcast else x.dtype)
    kp = triton.next_power_of_2(k)
    S = triton.cdiv(N, cfg["n_per_split"])
    out_v = torch.empty((B, S, k), dtype=torch.float32, device=x.device)
    out_i = torch.empty((B, S, k), dtype=torch.int32, device=x.device)
    grid = (triton.cdiv(B, cfg["BLOCK_B"]), S)
    bad = torch.zeros(grid, dtype=torch.int32, device=x.device)
    has_bits = bits is not None
    if not has_bits:
        bits = torch.zeros(1, dtype=torch.int32, device=x.device)
    _topk_partial_kernel[grid](
        parts, x, bits, scales, out_v, out_i, bad,
        B, N, D, cfg["n_per_split"], bits.shape[-1] if has_bits else 0,
        parts.stride(0), parts.stride(1), x.stride(0),
        K=k, KP=kp, NPARTS=parts.shape[0],
        BLOCK_B=cfg["BLOCK_B"], BLOCK_N=cfg["BLOCK_N"], BLOCK_D=cfg["BLOCK_D"],
        HAS_BITS=has_bits, IEEE=upcast or x.dtype == torch.float32, UPCAST=upcast,
        num_warps=cfg["num_warps"], num_stages=cfg.get("num_stages", 3),
    )
    if bool(bad.any()):
        raise NonFiniteScoresError("scores hold NaN or inf")
    v, i = lex_topk(out_v.view(B, S * k), out_i.view(B, S * k).long(), k)
    return v, i
