"""Rerank latency: median seconds per user of the verbalizer rerank (one LLM forward pass over
the prompt with 20 labelled candidates), and of a whole ``recommend`` call with explanations.

    .venv/bin/python eval/bench_rerank.py --users 20 [--explain llm|grounded] [--out FILE.json]

Needs an ingested store (``llmrec ingest``). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from llmrec.config import Config
from llmrec.rank.verbalizer import verbalizer_rank
from llmrec.recommender import Recommender


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--explain", default="llm", choices=["llm", "grounded"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    cfg = Config.load(overrides={"explain": args.explain})
    print("llmrec config: " + json.dumps(cfg.as_dict(), sort_keys=True))
    rec = Recommender.load(config=cfg)
    rec.backend  # load the LLM outside the timings  # noqa: B018
    users = list(rec.histories)[: args.users]  # first users in file order: deterministic
    rerank, full = [], []
    for u in users:
        hist = rec.histories[u]
        rows, _ = rec.candidates(hist, cfg.candidates)
        shown = [rec.item(i) for i in hist[-cfg.history_max:]]
        t0 = time.perf_counter()
        verbalizer_rank(rec.backend, shown, [rec.items[r] for r in rows])
        rerank.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        rec.recommend(user_id=u, k=10)
        full.append(time.perf_counter() - t0)
    result = {
        "users": len(users), "candidates": cfg.candidates, "history_max": cfg.history_max, "explain": args.explain,
        "rerank_median_s": statistics.median(rerank), "rerank_p90_s": sorted(rerank)[int(0.9 * (len(rerank) - 1))],
        "recommend_median_s": statistics.median(full), "recommend_p90_s": sorted(full)[int(0.9 * (len(full) - 1))],
    }
    print(f"{'step':<28}{'median s':>10}{'p90 s':>10}")
    print(f"{'verbalizer rerank':<28}{result['rerank_median_s']:>10.3f}{result['rerank_p90_s']:>10.3f}")
    print(f"{'recommend (explain=' + args.explain + ')':<28}{result['recommend_median_s']:>10.3f}"
          f"{result['recommend_p90_s']:>10.3f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
