"""The ``llmrec eval`` subcommand: ``llmrec eval CONFIG.yaml [--out DIR] [--fresh]``.

``add_arguments(parser)`` gives its arguments to the main ``llmrec`` parser; ``run(args)`` executes it.
``python -m llmrec.eval CONFIG.yaml`` does the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from llmrec.config import Config


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``llmrec eval`` (the main CLI's table, :data:`llmrec.cli.COMMANDS`, adds the command)."""
    p.add_argument("config", help="evaluation config YAML (keys as in llmrec.config.Config), e.g. eval/ml-latest-small.yaml")
    p.add_argument("--out", help="output folder (default: eval_out, else {home}/eval/{config stem})")
    p.add_argument("--home", help="root of llmrec's files (models, downloads, trained retrievers)")
    p.add_argument("--max-users", type=int, help="keep only the first N users (overrides eval_max_users)")
    p.add_argument("--fresh", action="store_true", help="discard earlier partial results in --out (default: resume)")


def run(args) -> int:
    from llmrec.eval import runner

    cfg = Config.load(args.config, overrides={"home": args.home, "eval_max_users": args.max_users})
    out = Path(args.out or cfg.eval.out or Path(cfg.home) / "eval" / Path(args.config).stem)
    metrics = runner.run(cfg, out, fresh=args.fresh, config_name=str(args.config))
    for name, r in metrics["results"].items():
        ci = metrics["intervals"][name]
        print(f"{name:24s} NDCG@10 {r['NDCG@10']:.4f} [{ci['NDCG@10'][0]:.4f}, {ci['NDCG@10'][1]:.4f}]  "
              f"Recall@10 {r['Recall@10']:.4f} [{ci['Recall@10'][0]:.4f}, {ci['Recall@10'][1]:.4f}]")
    print(f"report: {out / 'report.md'}")
    return 0
