"""Prompt injection, measured (issue 11): instructions planted in the titles and texts of many
ml-100k items; the same users' same candidates reranked with and without them by the zero-shot
verbalizer ranker; the injected items' mean rank shift toward rank 1 with a bootstrap 95% interval
over users, the share of users whose rank-1 item is injected, and explanations checked for echoes.

    .venv/bin/python eval/bench_injection.py [--items 300] [--users 40] [--fraction 0.3]
        [--where both] [--llm-users 3] [--seed 0] [--raw] [--out FILE.json]

``--items N``: the first N ml-100k items and every interaction on them (300: the CI test's store;
0: all 1682). Two real stores are ingested into a temporary folder (the clean catalog, the injected
one). ``--raw`` is the power check: item text goes into the prompt unquoted (no escaping, no
neutralised closers), to show what the quoting prevents. See ``llmrec.agent.injection``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from llmrec.agent.injection import (
    ATTACKS,
    choose_targets,
    injected_dataset,
    measure,
    pick_users,
    table,
)
from llmrec.config import Config
from llmrec.data.movielens import load_ml100k
from llmrec.data.types import Dataset
from llmrec.ingest import ingest
from llmrec.recommender import Recommender


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=300, help="first N ml-100k items (0: all)")
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--fraction", type=float, default=0.3, help="share of the catalog injected")
    ap.add_argument("--where", choices=["title", "text", "both"], default="both")
    ap.add_argument("--llm-users", type=int, default=3,
                    help="users whose injected candidates are also explained by the LLM (explain=llm)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--raw", action="store_true", help="power check: item text unquoted in the prompt")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.raw:
        import llmrec.rank.verbalizer as verbalizer

        verbalizer.quote = lambda text, max_chars=None: str(text)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmrec-injection-") as tmp:
        cfg = Config.load(overrides={"data_dir": os.path.join(tmp, "clean"), "ranker": "zero-shot"})
        full = load_ml100k(cfg.downloads_dir(), cfg.ml100k_source, cfg.download_timeout_s)
        items = full.items[: args.items] if args.items else full.items
        keep = {i.id for i in items}
        data = Dataset("ml-100k", items, [x for x in full.interactions if x.item in keep])
        ingest(cfg, data, log=lambda *_: None)
        clean = Recommender.load(config=cfg)
        users = pick_users(clean, args.users, args.seed)
        targets = choose_targets(items, args.fraction, args.seed)
        bad, kind = injected_dataset(data, targets, args.where)
        icfg = cfg.replace(data_dir=os.path.join(tmp, "injected"))
        ingest(icfg, bad, log=lambda *_: None)
        injected = Recommender.load(config=icfg)
        m = measure(clean, injected, users, kind, llm_users=args.llm_users, log=print)
    print()
    print(f"ml-100k first {len(items)} items, fraction {args.fraction}, where {args.where}, seed {args.seed}, "
          f"{'RAW (unquoted) prompts' if args.raw else 'quoted prompts'}, ranker zero-shot {cfg.llm}, "
          f"explanations {cfg.explain} for every user, llm for {min(args.llm_users, len(users))}; "
          f"{time.perf_counter() - start:.0f} s")
    print(table(m))
    for e in m.echoed:
        print("echo:", e)
    for u, iid, text in m.llm_texts[:5]:
        print(f"llm explanation, user {u}, item {iid}: {text}")
    if args.out:
        mean, lo, hi = m.mean_shift()
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "users": m.users, "injected_items": len(kind),
                       "injected_candidates": m.n_injected, "mean_shift": mean, "ci95": [lo, hi],
                       "per_attack": {a: m.mean_shift(attack=a) for a in ATTACKS},
                       "top1_injected_without": sum(m.top_clean) / len(m.users),
                       "top1_injected_with": sum(m.top_injected) / len(m.users),
                       "shifts": m.shifts, "kinds": m.kinds, "explanations": m.explanations,
                       "echoed": m.echoed, "llm_explanations": m.llm_texts}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
