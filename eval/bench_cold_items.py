"""Item cold-start: what content carries when collaborative vectors cannot help (issue 10).

    OMP_NUM_THREADS=1 .venv/bin/python eval/bench_cold_items.py --image-store ~/.cache/llmrec/data/ml-100k-img \\
        [--share 0.1] [--seed 0] [--llm-users 40] [--out eval/results/cold_items]

A thin command line over the harness's ``cold-items`` protocol (``llmrec.eval.cold_protocol.run``;
``llmrec eval`` runs the same one), with the config overrides
``dataset=ml-100k``, ``eval_modal_store=--image-store``, ``eval_cold_share=--share``, ``seed=--seed``,
``eval_cold_llm_users=--llm-users`` (other keys from the ``LLMREC_*`` environment and the defaults).

ml-100k, the harness's 5-core leave-one-out split (``llmrec.eval.runner.load_split``); the item
cold-start protocol of ``llmrec.eval.cold``: a random ``--share`` of the items is removed from every
training interaction; the users whose test target is one of them are evaluated by full ranking
(history masked, ties against the target, 0-based ranks). Systems (each item scored for each user):

- ``item-knn``: collaborative, fitted on the warm interactions (a cold item scores 0: the reference
  that shows the protocol works);
- ``text``: all-MiniLM-L6-v2 of each item's title and genres, the user the recency-weighted mean of
  the history's vectors (half-life chosen on validation, as the harness's text-embedding);
- ``image``: the same over the items' poster vectors (the image store's ``items_image``, e.g.
  EfficientNet-Lite0; an item without a poster has a zero vector);
- ``text+image``: per-user standardised text and image scores, summed with the image weight (0, 0.1,
  ..., 1) chosen on the validation users whose validation target is cold.

Without ``--image-store`` only ``item-knn`` and ``text`` run (and the LLM without soft tokens).

``--llm-users N``: for the first N cold test users, LLaRA's sampled protocol (the target and 19 items
the user never touched, seeded, shuffled: the harness's ``sample_candidates``) ranked by the text
scorer, the zero-shot verbalizer of the configured LLM (SmolLM2 by default) on text, and the verbalizer
with poster soft tokens (the image store's trained projector, ``llmrec train-projector``): HR@1
(chance 5%), NDCG@10, mean rank (1 = first), the paired soft-minus-text difference. (Full ranking
would hand the LLM almost no cold targets: the text retriever's Recall@20 is tiny here.)

Metrics: NDCG@10 and Recall@10 with 95% bootstrap intervals over users (``eval_bootstrap``
resamples); paired differences against ``text``. Also the slice of users whose cold target has a
poster. Writes ``OUT/cold_items.json`` (the result dict of ``cold_protocol.run``: per-user ranks and
summaries) and ``OUT/cold_items.md`` (its report section); ``OUT/parts/cold-items.json`` caches the
result, so a rerun with the same share, seed, store, LLM users and split returns it at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmrec.config import Config  # noqa: E402
from llmrec.eval import cold_protocol  # noqa: E402
from llmrec.eval.runner import load_split  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-store", help="a store with ml-100k's poster vectors (llmrec ingest --images) and a "
                                          "trained image projector; without it: item-knn and text only")
    ap.add_argument("--share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--llm-users", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "cold_items"))
    args = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    cfg = Config.load(overrides={"dataset": "ml-100k", "eval_modal_store": args.image_store,
                                 "eval_cold_share": args.share, "seed": args.seed,
                                 "eval_cold_llm_users": args.llm_users})
    out = Path(args.out)
    res = cold_protocol.run(cfg, load_split(cfg), out / "parts", log)
    lines = cold_protocol.report_lines(res)
    (out / "cold_items.json").write_text(json.dumps(res, indent=1))
    (out / "cold_items.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
