"""CPU benchmark of exact top-k: llmrec.topk vs torch.topk(Q @ X.T) vs faiss IndexFlatIP vs Chroma.

All methods run side by side in one process on the same data (L2-normalised Gaussian fp32
vectors, cosine = inner product). Prints a table and writes JSON.

    .venv/bin/python eval/bench_topk.py --out runs/bench_topk_cpu.json           # full grid
    .venv/bin/python eval/bench_topk.py --n 10000 --d 384 --b 1 16 --no-chroma   # quick
    # this CPU's own OpenBLAS kernels (the machine image pins Haswell ones; see kernels/README.md):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python eval/bench_topk.py \
        --faiss-openblas-core SkylakeX --out runs/bench_topk_cpu_native.json

Per row: queries/s (median call time; see :func:`time_side_by_side` for how the methods take
turns), the peak extra resident
memory during the call (sampled /proc/self/statm every ms, above the RSS before the call), and
recall@k against llmrec.topk's exact answer (faiss is exact too, up to fp32 rounding; Chroma is
HNSW, approximate). Chroma is measured only where its ingest (HNSW build) fits the time cap;
skipped rows say why. The GPU benchmark is ``kernels/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

import llmrec

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Context manager: peak RSS above the value at entry, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.001):
        self.interval, self.peak = interval, 0

    def __enter__(self):
        self.base = rss_bytes()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes() - self.base)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes() - self.base)


def time_side_by_side(fns: dict, rounds: int, burst: float, per_call: bool = False) -> dict:
    """Time several methods side by side: one warm-up call each (memory sampled), then ``rounds``
    rounds in which every method runs once, in an order rotated each round.

    Burst mode (default): in its turn a method runs for ``burst`` seconds (at least 2 calls) and
    the first call of each burst is not timed. That first call pays for handing the cores over
    from the previous library's thread pool: faiss (OpenMP), torch (OpenMP) and numpy (OpenBLAS
    pthreads) each keep their worker threads spinning for a while after a call, and on 2 cores
    whichever library runs next waits for them. ``per_call=True`` instead alternates single calls
    (``rounds`` x 10 of them) and times all of them: every method then pays that hand-over.

    Returns {name: (median seconds, peak extra MB, result of the warm-up call)}.
    """
    first, ts = {}, {name: [] for name in fns}
    for name, fn in fns.items():
        with PeakRSS() as mem:
            out = fn()
        first[name] = (mem.peak / 2**20, out)
    names = list(fns)
    for r in range(rounds * (10 if per_call else 1)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, calls, t0 = fns[name], 0, time.perf_counter()
            while True:
                t = time.perf_counter()
                fn()
                if per_call or calls:
                    ts[name].append(time.perf_counter() - t)
                calls += 1
                if per_call or (calls >= 2 and time.perf_counter() - t0 >= burst):
                    break
    return {name: (float(np.median(ts[name])), *first[name]) for name in fns}


def blas_info() -> list[dict]:
    """The BLAS libraries loaded in this process and the kernels they picked (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    return [{k: i.get(k) for k in ("prefix", "version", "architecture", "num_threads", "threading_layer")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def recall(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact, strict=True)]))


def make_items(N: int, D: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(N, D)
    for s in range(0, N, 65536):
        c = torch.randn(min(65536, N - s), D, generator=g)
        x[s:s + c.shape[0]] = c / c.norm(dim=1, keepdim=True)
    return x


def torch_full_topk(q, x, k):
    return torch.topk(q @ x.T, k, dim=1)


class ChromaIndex:
    """A Chroma collection (HNSW, inner product) with our own embeddings, built in batches."""

    def __init__(self, x: np.ndarray, timeout_s: float):
        import chromadb
        from chromadb.config import Settings

        self.dir = tempfile.TemporaryDirectory(prefix="bench_chroma_")
        self.client = chromadb.PersistentClient(path=self.dir.name, settings=Settings(anonymized_telemetry=False))
        self.col = self.client.create_collection(
            "bench_topk", embedding_function=None, configuration={"hnsw": {"space": "ip"}})
        bs = self.client.get_max_batch_size()
        t0 = time.perf_counter()
        self.complete = True
        for s in range(0, len(x), bs):
            e = min(len(x), s + bs)
            self.col.add(ids=[str(i) for i in range(s, e)], embeddings=x[s:e])
            if time.perf_counter() - t0 > timeout_s and e < len(x):
                self.complete = False
                break
        self.ingest_s = time.perf_counter() - t0

    def search(self, q: np.ndarray, k: int) -> np.ndarray:
        r = self.col.query(query_embeddings=q, n_results=k, include=[])
        return np.array([[int(i) for i in ids] for ids in r["ids"]])

    def close(self):
        try:
            self.client.delete_collection("bench_topk")
        finally:
            self.dir.cleanup()


def bench_shape(N, D, Bs, k, args, rows):
    x = make_items(N, D, seed=N + D)
    xn = x.numpy()
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    t = time.perf_counter()
    with PeakRSS() as m:
        index = faiss.IndexFlatIP(D)
        index.add(xn)
    faiss_build = dict(build_s=time.perf_counter() - t, index_mb=m.peak / 2**20)
    chroma, chroma_note = None, None
    if args.no_chroma:
        chroma_note = "skipped: --no-chroma"
    elif N > args.chroma_max_n:
        chroma_note = f"skipped: N > --chroma-max-n={args.chroma_max_n} (HNSW ingest too slow on 2 cores)"
    else:
        print(f"  chroma ingest N={N} D={D} ...", flush=True)
        chroma = ChromaIndex(xn, args.chroma_timeout)
        if not chroma.complete:
            chroma_note = (f"skipped: ingest passed --chroma-timeout={args.chroma_timeout:.0f}s "
                           f"({chroma.col.count()}/{N} items)")
            chroma.close()
            chroma = None
    for B in Bs:
        g = torch.Generator().manual_seed(B)
        q = torch.randn(B, D, generator=g)
        q = q / q.norm(dim=1, keepdim=True)
        qn = q.numpy()
        base = dict(device="cpu", N=N, D=D, B=B, k=k, dtype="float32", threads=torch.get_num_threads())
        fns = {"llmrec.topk": lambda q=q: llmrec.topk(q, x, k)}
        if not args.no_torch:
            fns["torch.topk(Q@X.T)"] = lambda q=q: torch_full_topk(q, x, k)
        fns["faiss IndexFlatIP"] = lambda qn=qn: index.search(qn, k)
        if chroma is not None:
            fns["chroma HNSW"] = lambda qn=qn: chroma.search(qn, k)
        res = time_side_by_side(fns, args.rounds, args.burst, per_call=args.per_call)
        exact = res["llmrec.topk"][2][1].numpy()
        for name, (t, mem, out) in res.items():
            got = {"llmrec.topk": exact, "torch.topk(Q@X.T)": lambda o: o[1].numpy(),
                   "faiss IndexFlatIP": lambda o: o[1], "chroma HNSW": lambda o: o}[name]
            got = got if name == "llmrec.topk" else got(out)
            extra = dict(faiss_build) if name == "faiss IndexFlatIP" else {}
            if name == "chroma HNSW":
                extra = dict(ingest_s=chroma.ingest_s, note="HNSW defaults (ef_search=100, M=16)")
            rows.append(base | dict(method=name, seconds=t, qps=B / t, peak_extra_mb=mem,
                                    recall=recall(got, exact), **extra))
        if chroma is None:
            rows.append(base | dict(method="chroma HNSW", skipped=chroma_note))
        print_rows([r for r in rows if (r["N"], r["D"], r["B"]) == (N, D, B)], header=False)
    if chroma is not None:
        chroma.close()


METHODS = ["llmrec.topk", "torch.topk(Q@X.T)", "faiss IndexFlatIP", "chroma HNSW"]
HEADER = (f"{'N':>8} {'D':>4} {'B':>4} | {'llmrec q/s':>10} {'torch q/s':>10} {'faiss q/s':>10} "
          f"{'chroma q/s':>10} {'chroma R@k':>10} | {'vs faiss':>8} {'vs torch':>8} | "
          f"{'llmrec MB':>9} {'torch MB':>9} {'faiss MB':>9}")


def _fmt(r, key, width, spec):
    return f"{r[key]:{width}{spec}}" if r and key in r else f"{'-':>{width}}"


def _ratio(a, b):
    return f"{a['qps'] / b['qps']:7.2f}x" if a and b and "qps" in a and "qps" in b else f"{'-':>8}"


def print_rows(rows, header=True):
    if header:
        print(HEADER)
    by = {}
    for r in rows:
        by.setdefault((r["N"], r["D"], r["B"]), {})[r["method"]] = r
    for (N, D, B), m in by.items():
        q = lambda name, m=m: _fmt(m.get(name), "qps", 10, ".1f")  # noqa: E731
        mb = lambda name, m=m: _fmt(m.get(name), "peak_extra_mb", 9, ".0f")  # noqa: E731
        ratio = lambda name, m=m: _ratio(m.get("llmrec.topk"), m.get(name))  # noqa: E731
        ch = m.get("chroma HNSW", {})
        rec = f"{ch['recall']:10.3f}" if "recall" in ch else f"{'-':>10}"
        print(f"{N:>8} {D:>4} {B:>4} | {q('llmrec.topk')} {q('torch.topk(Q@X.T)')} {q('faiss IndexFlatIP')} "
              f"{q('chroma HNSW')} {rec} | {ratio('faiss IndexFlatIP')} {ratio('torch.topk(Q@X.T)')} | "
              f"{mb('llmrec.topk')} {mb('torch.topk(Q@X.T)')} {mb('faiss IndexFlatIP')}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--d", type=int, nargs="+", default=[384, 768])
    p.add_argument("--b", type=int, nargs="+", default=[1, 16, 256])
    p.add_argument("--k", type=int, default=20, help="results per query (the ranker sees ~20 candidates)")
    p.add_argument("--rounds", type=int, default=5, help="rounds in which every method takes one turn")
    p.add_argument("--burst", type=float, default=0.3, help="seconds of calls per method per turn")
    p.add_argument("--per-call", action="store_true",
                   help="alternate single calls instead of bursts (measures thread-pool hand-over too)")
    p.add_argument("--faiss-openblas-core", default=None, metavar="NAME",
                   help="set OPENBLAS_CORETYPE=NAME after numpy has loaded its OpenBLAS and before faiss "
                        "loads its own (faiss-cpu 1.15 bundles OpenBLAS 0.3.15, which does not know Zen 5)")
    p.add_argument("--chroma-max-n", type=int, default=100_000)
    p.add_argument("--chroma-timeout", type=float, default=300.0, help="give up a Chroma ingest after this")
    p.add_argument("--no-chroma", action="store_true")
    p.add_argument("--no-torch", action="store_true", help="skip the full-matrix baseline")
    p.add_argument("--out", default="runs/bench_topk_cpu.json")
    args = p.parse_args(argv)
    if args.faiss_openblas_core:
        os.environ["OPENBLAS_CORETYPE"] = args.faiss_openblas_core  # numpy's OpenBLAS is loaded already
    import chromadb
    import faiss

    env = dict(loadavg_start=os.getloadavg(), python=sys.version.split()[0], torch=torch.__version__, faiss=faiss.__version__,
               chromadb=chromadb.__version__, threads=torch.get_num_threads(), cpu=platform.processor(),
               cpus=os.cpu_count(), command=" ".join(sys.argv), blas=blas_info(),
               timing="per call" if args.per_call else f"bursts of {args.burst} s, {args.rounds} rounds",
               openblas_env={k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")})
    print(json.dumps(env), flush=True)
    print(HEADER, flush=True)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for N in args.n:
        for D in args.d:
            bench_shape(N, D, args.b, args.k, args, rows)
    env["loadavg_end"] = os.getloadavg()
    print(f"\nall rows ({time.perf_counter() - t0:.0f} s):")
    print_rows(rows)
    skipped = sorted({(r["N"], r["D"], r["skipped"]) for r in rows if "skipped" in r})
    for N, D, why in skipped:
        print(f"chroma N={N} D={D}: {why}")
    ratios = [a["qps"] / b["qps"] for a in rows if a["method"] == "llmrec.topk"
              for b in rows if b["method"] == "faiss IndexFlatIP" and (a["N"], a["D"], a["B"]) == (b["N"], b["D"], b["B"])]
    summary = dict(min_ratio_vs_faiss=min(ratios), target_met=min(ratios) >= 1.0) if ratios else {}
    print(json.dumps(summary))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(env=env, rows=rows, summary=summary), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
