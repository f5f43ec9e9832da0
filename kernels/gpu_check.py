"""GPU correctness check and benchmark of the fused top-k kernel (needs CUDA; run via gpu_check.sh).

Stages, each written to the JSON as soon as it is done (a timeout keeps what was measured):

1. correctness on CUDA against ``topk_reference`` (torch.topk(Q @ X.T) in fp32, history masked,
   ties by lower index): ragged shapes, duplicated rows and ties (small-integer data: every score is
   exact, so indices and values must be equal), exclusions, k in {1, 7, 20, 100, 128}, fp32 / fp16 /
   bf16 items, N up to 2M; Gaussian data compared with a tolerance (fp32 summation order differs).
2. device-to-device copy bandwidth (read + write bytes / time of ``dst.copy_(src)``, 4 GiB).
3. benchmark: the kernel vs ``torch.topk(Q16 @ X16.T)`` vs FAISS GPU brute force (``knn_gpu``) if
   importable; fp16 items; queries/s and item bytes read per second as a fraction of the copy
   bandwidth.
4. (``--sweep``) other block configurations / split counts at N=10M, D=384, while time is left.

    bash kernels/gpu_check.sh                     # all stages, JSON to $OUT or runs/
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch
import triton
from llmrec_kernels.reference import exclusion_bitset, topk_reference
from llmrec_kernels.topk_triton import NonFiniteScoresError, pick_config, triton_topk, with_splits

# "cuda" normally; --dry-run uses "cpu" under TRITON_INTERPRET=1 with tiny shapes (tests the script).
DEVICE = "cuda"
DT = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Report:
    def __init__(self, path: Path, budget_s: float):
        self.path, self.t0, self.budget = path, time.perf_counter(), budget_s
        self.data: dict = dict(env={}, checks=[], bandwidth={}, rows=[], sweep=[], notes=[])

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def save(self):
        self.data["elapsed_s"] = time.perf_counter() - self.t0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1))


def make_data(kind: str, B: int, N: int, D: int, dtype: torch.dtype, seed: int):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    if kind == "int":  # exact scores in any order; many ties; duplicated rows
        q = torch.randint(-2, 3, (B, D), device=DEVICE, generator=g).float()
        x = torch.randint(-2, 3, (N, D), device=DEVICE, generator=g).to(dtype)
        x[::3] = x[1]
    elif kind == "ones":
        q, x = torch.ones(B, D, device=DEVICE), torch.ones(N, D, device=DEVICE, dtype=dtype)
    else:
        q = torch.randn(B, D, device=DEVICE, generator=g)
        q = q / q.norm(dim=1, keepdim=True)
        x = torch.empty(N, D, device=DEVICE, dtype=dtype)
        for s in range(0, N, 1 << 20):
            c = torch.randn(min(1 << 20, N - s), D, device=DEVICE, generator=g)
            x[s:s + c.shape[0]] = (c / c.norm(dim=1, keepdim=True)).to(dtype)
    return q, x


def random_mask(B: int, N: int, per_row: int, seed: int) -> torch.Tensor:
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    m = torch.zeros(B, N, dtype=torch.bool, device=DEVICE)
    m[torch.arange(B, device=DEVICE)[:, None], torch.randint(0, N, (B, per_row), device=DEVICE, generator=g)] = True
    return m


def run_kernel(q, x, k, mask=None, config=None):
    bits = None
    if mask is not None:
        rows, cols = mask.nonzero(as_tuple=True)
        bits = exclusion_bitset(rows, cols, q.shape[0], x.shape[0], x.device)
    return triton_topk(q, x, k, bits, config=config)


CHECKS = [
    # kind, B, N, D, k, dtype, excluded per row (0 = none), config override
    ("int", 3, 1000, 17, 5, "fp32", 0, None),
    ("int", 17, 20011, 100, 20, "fp16", 50, None),
    ("int", 1, 100003, 384, 128, "fp16", 0, None),
    ("int", 64, 50021, 768, 20, "bf16", 200, None),
    ("int", 4, 5000, 64, 1, "fp16", 0, None),
    ("int", 9, 4099, 33, 100, "fp32", 3000, None),
    ("ones", 2, 10000, 32, 20, "fp16", 0, None),
    ("normal", 16, 1_000_000, 384, 20, "fp16", 0, None),
    ("normal", 5, 300_007, 768, 7, "fp32", 1000, None),
    ("normal", 1, 2_000_000, 384, 20, "bf16", 0, None),
    ("normal", 256, 200_000, 384, 20, "fp16", 100, None),
    ("normal", 8, 100_000, 384, 20, "fp16", 0, {"upcast": True}),
    ("normal", 2, 100_000, 768, 128, "bf16", 0, {"upcast": True}),
]


def check_one(case) -> dict:
    kind, B, N, D, k, dt, n_ex, cfg = case
    q, x = make_data(kind, B, N, D, DT[dt], seed=B * 7 + N)
    mask = random_mask(B, N, n_ex, seed=N) if n_ex else None
    v, i = run_kernel(q, x, k, mask, cfg)
    rv, ri = topk_reference(q, x, k, mask)
    out = dict(kind=kind, B=B, N=N, D=D, k=k, dtype=dt, excluded_per_row=n_ex, config=cfg)
    out["index_equal_frac"] = float((i == ri).float().mean())
    out["max_abs_value_diff"] = float((v - rv).abs().max())
    excluded_hit = bool(mask.gather(1, i).any()) if mask is not None else False
    unique = bool((i.sort(1).values.diff(dim=1) != 0).all()) if k > 1 else True
    if kind in ("int", "ones"):
        ok = torch.equal(i, ri) and torch.equal(v, rv)
    else:
        # Exact up to fp32 rounding: every mismatch must be a near-tie (|score diff| <= tol).
        tol = 1e-4
        exact64 = (q.double()[:, None, :] * x[i].double()).sum(-1)
        ok = out["max_abs_value_diff"] <= tol and bool(((exact64 - rv.double()).abs() <= 2 * tol).all())
    if kind == "ones":
        ok = ok and i.tolist() == [list(range(k))] * B
    out["ok"] = bool(ok and not excluded_hit and unique)
    return out


def check_errors() -> dict:
    q, x = make_data("normal", 2, 1000, 64, torch.float16, 1)
    x[517, 3] = float("nan")
    try:
        run_kernel(q, x, 5)
        return dict(kind="nan-items", ok=False, why="no error")
    except NonFiniteScoresError:
        return dict(kind="nan-items", ok=True)


def cuda_time(fn, min_reps=5, min_time=0.25, max_reps=100) -> float:
    """Median seconds per call (CUDA events), after one warm-up call."""
    fn()
    if DEVICE != "cuda":
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    torch.cuda.synchronize()
    ts, t_all = [], time.perf_counter()
    while len(ts) < min_reps or (time.perf_counter() - t_all < min_time and len(ts) < max_reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b) / 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def copy_bandwidth(nbytes: int = 1 << 32) -> dict:
    src = torch.empty(nbytes, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    t = cuda_time(lambda: dst.copy_(src), min_reps=10)
    return dict(bytes=nbytes, seconds=t, bytes_per_s=2 * nbytes / t, note="(read + write bytes) / time")


def faiss_gpu():
    """FAISS GPU brute-force knn on torch tensors, or (None, reason)."""
    try:
        import faiss
        import faiss.contrib.torch_utils  # noqa: F401  (lets faiss take torch CUDA tensors)

        if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
            return None, "faiss has no GPU support here"
        res = faiss.StandardGpuResources()
        return (lambda q, x, k: faiss.knn_gpu(res, q, x, k, metric=faiss.METRIC_INNER_PRODUCT)), None
    except Exception as e:  # noqa: BLE001
        return None, f"faiss GPU unavailable: {type(e).__name__}: {e}"


def recall(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.long().cpu(), b.long().cpu()
    return float(sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b, strict=True)) / b.numel())


def bench(rep: Report, Ns, Ds, Bs, k, use_faiss: bool):
    bw = rep.data["bandwidth"]["bytes_per_s"]
    fknn, why = faiss_gpu() if use_faiss else (None, "skipped: --no-faiss")
    if why:
        rep.data["notes"].append(why)
    print(f"{'N':>9} {'D':>4} {'B':>4} | {'kernel q/s':>11} {'TB/s':>6} {'of copy':>7} | {'torch q/s':>11} "
          f"{'speedup':>7} | {'faiss q/s':>11} {'faiss R':>7}", flush=True)
    for N in Ns:
        for D in Ds:
            if rep.left() < 20:
                rep.data["notes"].append(f"stopped before N={N} D={D}: time budget")
                return
            _, x = make_data("normal", 1, N, D, torch.float16, seed=N + D)
            for B in Bs:
                bench_one(rep, x, B, k, fknn, bw)
            x = None
            torch.cuda.empty_cache()


SWEEP_N = 10_000_000


def _cell(row: dict, key: str, spec: str, w: int) -> str:
    return f"{row[key]:{w}{spec}}" if key in row else f"{'-':>{w}}"


def bench_one(rep: Report, x: torch.Tensor, B: int, k: int, fknn, bw: float):
    """One row: the kernel, torch.topk(Q16 @ X.T) and FAISS GPU on the same fp16 items x [N, D]."""
    N, D = x.shape
    q, _ = make_data("normal", B, 1, D, torch.float16, seed=B)
    q16 = q.half()
    row = dict(N=N, D=D, B=B, k=k, dtype="fp16", item_bytes=N * D * 2)
    ki = None
    try:
        t = cuda_time(lambda: triton_topk(q, x, k))
        ki = triton_topk(q, x, k)[1]
        row |= dict(kernel_s=t, kernel_qps=B / t, kernel_bytes_per_s=N * D * 2 / t,
                    kernel_frac_of_copy=N * D * 2 / t / bw, config=pick_config(B, N, D, k, x.device))
    except Exception as e:  # noqa: BLE001
        row["kernel_error"] = f"{type(e).__name__}: {e}"[:1000]
    try:
        t = cuda_time(lambda: torch.topk(q16 @ x.T, k, dim=1))
        ti = torch.topk(q16 @ x.T, k, dim=1).indices
        row |= dict(torch_s=t, torch_qps=B / t, torch_bytes_per_s=N * D * 2 / t)
        if ki is not None:
            row["torch_recall_vs_kernel"] = recall(ti, ki)
    except Exception as e:  # noqa: BLE001
        row["torch_error"] = f"{type(e).__name__}: {e}"[:1000]
    if fknn is not None:
        try:
            t = cuda_time(lambda: fknn(q16, x, k))
            fi = fknn(q16, x, k)[1]
            row |= dict(faiss_s=t, faiss_qps=B / t)
            if ki is not None:
                row["faiss_recall_vs_kernel"] = recall(fi, ki)
        except Exception as e:  # noqa: BLE001
            row["faiss_error"] = f"{type(e).__name__}: {e}"[:1000]
    if "kernel_s" in row and "torch_s" in row:
        row["speedup_vs_torch"] = row["torch_s"] / row["kernel_s"]
    rep.data["rows"].append(row)
    rep.save()
    print(f"{N:>9} {D:>4} {B:>4} | {_cell(row, 'kernel_qps', '.1f', 11)} "
          f"{row.get('kernel_bytes_per_s', math.nan) / 1e12:6.2f} {_cell(row, 'kernel_frac_of_copy', '.2f', 7)} | "
          f"{_cell(row, 'torch_qps', '.1f', 11)} {_cell(row, 'speedup_vs_torch', '.2f', 7)} | "
          f"{_cell(row, 'faiss_qps', '.1f', 11)} {_cell(row, 'faiss_recall_vs_kernel', '.3f', 7)}", flush=True)


def sweep(rep: Report, k: int):
    """Other block sizes / split counts at N=10M, D=384, fp16 (B = 1 and 64)."""
    N, D = SWEEP_N, 384
    _, x = make_data("normal", 1, N, D, torch.float16, seed=1)
    bw = rep.data["bandwidth"]["bytes_per_s"]
    sms = torch.cuda.get_device_properties(0).multi_processor_count if DEVICE == "cuda" else 4
    for B in (1, 64):
        q, _ = make_data("normal", B, 1, D, torch.float16, seed=B)
        ref = triton_topk(q, x, k)[1]
        base = pick_config(B, N, D, k, x.device)
        for bb, bn, bd, nw, ns in [(16, 64, 64, 4, 3), (16, 64, 64, 4, 4), (16, 64, 64, 4, 1), (16, 128, 64, 8, 3),
                                   (16, 128, 64, 4, 3), (16, 64, 32, 4, 3), (16, 256, 64, 8, 3), (32, 64, 64, 8, 3),
                                   (32, 64, 64, 4, 3)]:
            if bb > 16 and B <= 16:
                continue
            for per_sm in (4, 8, 16):
                if DEVICE != "cuda" and len(rep.data["sweep"]) >= 2:
                    return  # dry run: two entries show the sweep works
                if rep.left() < 15:
                    rep.data["notes"].append("sweep stopped: time budget")
                    return
                cfg = dict(base, BLOCK_B=bb, BLOCK_N=bn, BLOCK_D=bd, num_warps=nw, num_stages=ns)
                cfg = with_splits(cfg, N, splits=max(1, per_sm * sms // triton.cdiv(B, bb)))
                try:
                    t = cuda_time(lambda q=q, cfg=cfg: triton_topk(q, x, k, config=cfg), min_reps=3, min_time=0.1)
                    same = torch.equal(triton_topk(q, x, k, config=cfg)[1], ref)
                    r = dict(B=B, config=cfg, per_sm=per_sm, s=t, frac_of_copy=N * D * 2 / t / bw, same_result=same)
                except Exception as e:  # noqa: BLE001
                    r = dict(B=B, config=cfg, per_sm=per_sm, error=f"{type(e).__name__}: {e}"[:500])
                rep.data["sweep"].append(r)
                rep.save()
                print("sweep", json.dumps(r), flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/gpu_check.json")
    p.add_argument("--budget", type=float, default=270.0, help="seconds; no new stage/shape starts after it")
    p.add_argument("--n", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--d", type=int, nargs="+", default=[384, 768])
    p.add_argument("--b", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--no-faiss", action="store_true")
    p.add_argument("--skip-check", action="store_true")
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU + TRITON_INTERPRET=1, tiny shapes: checks the script itself, times mean nothing")
    args = p.parse_args(argv)
    global DEVICE, CHECKS, SWEEP_N
    if args.dry_run:
        if os.environ.get("TRITON_INTERPRET") != "1":
            print("--dry-run needs TRITON_INTERPRET=1", file=sys.stderr)
            return 2
        DEVICE, SWEEP_N = "cpu", 3000
        CHECKS = [(kind, min(B, 20), min(N, 300), min(D, 40), min(k, 30), dt, min(n_ex, 100), cfg)
                  for kind, B, N, D, k, dt, n_ex, cfg in CHECKS]
        args.n, args.d, args.b = [2000], [48], [1, 20]
        args.budget = 1e9
    elif not torch.cuda.is_available():
        print("no CUDA device: this script needs a GPU", file=sys.stderr)
        return 2
    rep = Report(Path(args.out), args.budget)
    prop = torch.cuda.get_device_properties(0) if DEVICE == "cuda" else None
    rep.data["env"] = dict(device=prop.name if prop else "cpu (dry run)", sms=prop.multi_processor_count if prop else 0,
                           mem_gb=prop.total_memory / 2**30 if prop else 0,
                           torch=torch.__version__, cuda=torch.version.cuda, triton=triton.__version__,
                           python=sys.version.split()[0], argv=sys.argv, interpret=os.environ.get("TRITON_INTERPRET"))
    print(json.dumps(rep.data["env"]), flush=True)
    n_fail = 0
    if not args.skip_check:
        for case in CHECKS:
            t = time.perf_counter()
            try:
                r = check_one(case)
            except Exception as e:  # noqa: BLE001
                r = dict(case=str(case), ok=False, error=f"{type(e).__name__}: {e}",
                         trace=traceback.format_exc()[-2000:])
            r["seconds"] = time.perf_counter() - t
            n_fail += not r["ok"]
            rep.data["checks"].append(r)
            rep.save()
            print("check", "OK  " if r["ok"] else "FAIL", json.dumps(r), flush=True)
        r = check_errors()
        n_fail += not r["ok"]
        rep.data["checks"].append(r)
        print("check", "OK  " if r["ok"] else "FAIL", json.dumps(r), flush=True)
    rep.data["bandwidth"] = copy_bandwidth(1 << 32 if DEVICE == "cuda" else 1 << 24)
    print("copy bandwidth", json.dumps(rep.data["bandwidth"]), flush=True)
    rep.save()
    bench(rep, args.n, args.d, args.b, args.k, not args.no_faiss)
    if args.sweep and rep.left() > 30:
        sweep(rep, args.k)
    rows = [r for r in rep.data["rows"] if r["N"] == max(args.n) and r["D"] == min(args.d) and "kernel_s" in r]
    rep.data["summary"] = dict(
        checks_failed=n_fail,
        frac_of_copy_b_le_64={r["B"]: r["kernel_frac_of_copy"] for r in rows if r["B"] <= 64},
        speedup_vs_torch_at_max_n_min_d={r["B"]: r.get("speedup_vs_torch") for r in rows},
        targets="frac_of_copy >= 0.8 at B <= 64; speedup_vs_torch >= 2 at N=10M, D=384, fp16")
    rep.save()
    print(json.dumps(rep.data["summary"]), flush=True)
    print(f"wrote {rep.path} ({rep.data['elapsed_s']:.0f} s)")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
