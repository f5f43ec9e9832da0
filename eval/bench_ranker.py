"""Ranker speed, side by side on the same users in one run: the one-pass verbalizer (label logits at
the answer position, batch 1 and batched) against generate-then-parse (greedy generation of a
ranked list of labels, then parsing it), with the trained ranker's model and prompt.

    .venv/bin/python eval/bench_ranker.py eval/ml-latest-small.yaml --users 20 [--batch 1,4,8]
        [--gen-tokens 40] [--out FILE.json]

Users: the split's first ``--users`` users (test stage), candidates from ``eval_ranker_retriever``.
Uses the trained checkpoint (``llmrec train-ranker CONFIG``) when present, else the base LLM with the
same prompt (the same compute: the adapter is merged). ``--gen-tokens`` 40 is the length of a
ranked list of 20 labels ("A, B, ..."); generation is forced to that length so both methods rank all
candidates. Prints seconds per user, users/s and the ratio; the extrapolation to all users of the
split is printed as such, not measured.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

import torch

from llmrec.config import Config
from llmrec.eval.ranker import rank_data, ranker_dir
from llmrec.eval.runner import load_split
from llmrec.rank import checkpoint as ckpt
from llmrec.rank.model import RankerModel
from llmrec.rank.train import retrieve
from llmrec.rank.verbalizer import LABELS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--batch", default="1,4,8")
    ap.add_argument("--gen-tokens", type=int, default=40)
    ap.add_argument("--gen-users", type=int, default=5, help="users for the (slow) generate-then-parse method")
    ap.add_argument("--out")
    args = ap.parse_args()
    cfg = Config.load(args.config)
    split = load_split(cfg)
    data = rank_data(cfg, split)
    folder = ranker_dir(cfg)
    if (folder / "manifest.json").exists():
        model, which = ckpt.load(folder, cfg, retriever=data.retriever), f"trained ({folder})"
    else:
        llm, tok = ckpt.load_base(cfg)
        model, which = RankerModel(llm, tok).eval(), "zero-shot base LLM (no checkpoint yet)"
    users = split.users[: args.users]
    top, _ = retrieve(data.scorer, [split.history(u, "test") for u in users], cfg.candidates)
    H = cfg.ranker_history
    jobs = [([split.items[i] for i in split.history(u, "test")[-H:]], [split.items[i] for i in top[b]])
            for b, u in enumerate(users)]
    tokens = statistics.median(model.embeds(*j).shape[0] for j in jobs)
    model.score(jobs[:1])  # warm-up
    result = {"model": which, "users": len(users), "candidates": cfg.candidates, "history": H,
              "prompt_tokens_median": tokens, "threads": torch.get_num_threads(), "verbalizer": {}}
    for b in [int(x) for x in args.batch.split(",")]:
        t0 = time.perf_counter()
        for s in range(0, len(jobs), b):
            model.score(jobs[s:s + b])
        dt = time.perf_counter() - t0
        result["verbalizer"][b] = {"s_per_user": dt / len(jobs), "users_per_s": len(jobs) / dt}
    gen_jobs = jobs[: args.gen_users]
    valid = 0
    t0 = time.perf_counter()
    with torch.no_grad():
        for h, c in gen_jobs:
            e = model.embeds(h, c)[None]
            out = model.llm.generate(inputs_embeds=e, attention_mask=torch.ones(e.shape[:2], dtype=torch.long),
                                     max_new_tokens=args.gen_tokens, min_new_tokens=args.gen_tokens, do_sample=False,
                                     pad_token_id=model.tokenizer.eos_token_id)
            text = model.tokenizer.decode(out[0], skip_special_tokens=True)
            labels = [x for x in re.findall(r"\b([A-Z])\b", text) if x in LABELS[: len(c)]]
            valid += bool(labels)
    dt = time.perf_counter() - t0
    result["generate"] = {"s_per_user": dt / len(gen_jobs), "users": len(gen_jobs), "tokens": args.gen_tokens,
                          "answers_with_a_label": valid}
    one = result["verbalizer"][1]["s_per_user"]
    best_b = min(result["verbalizer"], key=lambda b: result["verbalizer"][b]["s_per_user"])
    best = result["verbalizer"][best_b]["s_per_user"]
    result["ratio_generate_over_verbalizer"] = result["generate"]["s_per_user"] / one
    result["extrapolated_minutes_all_users"] = {"users": len(split.users), "verbalizer_best": best * len(split.users) / 60}
    print(f"model: {which}; {len(users)} users, {cfg.candidates} candidates, median prompt {tokens:.0f} tokens, "
          f"{torch.get_num_threads()} threads")
    print(f"{'method':<34}{'s/user':>10}{'users/s':>10}")
    for b, r in result["verbalizer"].items():
        print(f"{'verbalizer, batch ' + str(b):<34}{r['s_per_user']:>10.3f}{r['users_per_s']:>10.2f}")
    g = result["generate"]
    print(f"{'generate ' + str(args.gen_tokens) + ' tokens + parse':<34}{g['s_per_user']:>10.3f}"
          f"{1 / g['s_per_user']:>10.2f}   ({g['users']} users, {g['answers_with_a_label']} with a label)")
    print(f"generate / verbalizer (batch 1): {result['ratio_generate_over_verbalizer']:.1f}x; all {len(split.users)} "
          f"users at the best batch (extrapolated): {result['extrapolated_minutes_all_users']['verbalizer_best']:.1f} min")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
