"""The ``llmrec`` command: a thin map from subcommands to functions."""

from __future__ import annotations

import argparse
import sys
import time

from llmrec.config import Config
from llmrec.errors import CatalogLineError, ConfigError, LLMRecError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (keys as in llmrec.config.Config)")
    p.add_argument("--home", help="root of llmrec's files (models, downloads, stores)")
    p.add_argument("--data-dir", help="store directory of one ingested catalog")
    p.add_argument("--dataset", help="ml-100k | ml-latest-small")
    p.add_argument("--llm", help="LLM: built-in name, local folder or Hugging Face id")
    p.add_argument("--device", help="auto | cpu | cuda")


def _config(args) -> Config:
    overrides = {k: getattr(args, k, None) for k in ("home", "data_dir", "dataset", "llm", "device")}
    overrides.update(getattr(args, "extra_overrides", {}))
    return Config.load(args.config, overrides=overrides)


def _print_config(cfg: Config) -> None:
    """One line on stderr: the non-default keys and their sources (the full config: ``Config.write``)."""
    print(cfg.summary(), file=sys.stderr)


def cmd_models_prepare(args) -> int:
    from llmrec.prepare import prepare

    cfg = _config(args)
    _print_config(cfg)
    prepare(cfg, log=lambda m: print(m, file=sys.stderr))
    return 0


def cmd_ingest(args) -> int:
    from llmrec.ingest import ingest, load_dataset
    from llmrec.ingest.image import images_wanted

    if args.images is not None:
        args.extra_overrides = {"ingest_images": args.images}
    if args.audio is not None:
        args.extra_overrides = {**getattr(args, "extra_overrides", {}), "ingest_audio": args.audio}
    cfg = _config(args)
    if args.interactions and not args.catalog:
        raise ConfigError("--interactions needs --catalog (the items its rows refer to)")
    if args.catalog and cfg.data_dir is None:  # --data-dir, LLMREC_DATA_DIR or the config file win
        from pathlib import Path

        cfg = cfg.replace(data_dir=cfg.home / "data" / Path(args.catalog).stem)
    _print_config(cfg)
    t0 = time.time()
    dataset, report = load_dataset(cfg, args.catalog, args.interactions, args.skip_bad)
    for err in report.skipped:
        print(f"skipped {err}", file=sys.stderr)
    if dataset.source:
        print(f"{dataset.name}: read from {dataset.source}", file=sys.stderr)
    images = images_wanted(cfg, dataset, builtin=not args.catalog)
    with_image = sum(1 for it in dataset.items if it.image)
    if with_image and not images:
        print(f"images: off ({with_image} items name an image; --images encodes and captions them)", file=sys.stderr)
    summary = ingest(cfg, dataset, log=lambda m: print(m, file=sys.stderr, flush=True), images=images,
                     audio=cfg.ingest.audio)
    summary["skipped_lines"] = len(report.skipped)
    changed = len(dataset.items) - summary["items_unchanged"]
    print(f"read {len(dataset.items)} items ({changed} new or changed, encoded; {summary['items_unchanged']} "
          f"unchanged) and {len(dataset.interactions)} interactions in {time.time() - t0:.1f}s; "
          f"skipped {len(report.skipped)} bad line(s). The store {summary['store']} holds "
          f"{summary['items_in_store']} items and {summary['interactions_in_store']} interactions "
          f"(use it with --data-dir).")
    if images and summary.get("images"):
        print(f"images: {summary['images_encoded']} encoded and captioned, {summary['images_unchanged']} unchanged, "
              f"{summary['images_failed']} failed, in {summary['image_seconds']:.1f}s; the store holds "
              f"{summary['images_in_store']} image vectors.")
        fails = summary["image_failures"]
        for f in fails[:20]:
            print(f"  failed: item {f['item']}: {f['path']}: {f['reason']} ({f['stage']})", file=sys.stderr)
        if fails:
            more = f" ({len(fails) - 20} more)" if len(fails) > 20 else ""
            print(f"  {len(fails)} image failure(s){more} recorded in {summary['store']}/failures.jsonl", file=sys.stderr)
    if summary.get("audio"):
        print(f"audio: {summary['audio_encoded']} embedded and transcribed, {summary['audio_unchanged']} unchanged, "
              f"{summary['audio_failed']} failed, in {summary['audio_wall_seconds']:.1f}s; the store holds "
              f"{summary['audio_in_store']} audio vectors.")
        for f in summary["audio_failures"][:20]:
            print(f"  failed: item {f['item']}: {f['path']}: {f['reason']} ({f['stage']})", file=sys.stderr)
    cfg.write(cfg.store_dir() / "config.json")  # the full effective config, with its sources
    return 0


def cmd_recommend(args) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars around a table or JSON
    from llmrec.recommender import Recommender

    if args.k is not None:
        args.extra_overrides = {"k": args.k}
    if args.explain:
        args.extra_overrides = {**getattr(args, "extra_overrides", {}), "explain": args.explain}
    cfg = _config(args)
    _print_config(cfg)
    rec = Recommender.load(config=cfg)
    if args.user is not None:
        result = rec.recommend(user_id=args.user.strip())
    else:
        result = rec.recommend(history=[h.strip() for h in args.history.split(",") if h.strip()])
    if args.json:
        print(result.to_json())
    else:
        print(_table(result, cfg.title_max_chars))
    return 0


def cmd_train_retriever(args) -> int:
    import torch

    from llmrec.retrieval.train import train_retriever

    if args.seeds is not None:  # an empty --seeds is an error (train.check_config), not the default
        try:
            args.extra_overrides = {"sasrec_seeds": [int(s) for s in args.seeds.split(",") if s.strip()]}
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    cfg = _config(args)
    _print_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    man = train_retriever(cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    best = man["valid_ndcg10"][man["chosen"]]
    print(f"trained {man['chosen']} on {man['n_interactions']} interactions of {man['store']} in "
          f"{man['train_seconds']:.0f}s (validation NDCG@10 {best:.4f} over {man['valid_users']} users); "
          f"`llmrec recommend` now uses it ({cfg.retriever_path()})")
    return 0


def cmd_train_projector(args) -> int:
    from llmrec.projector.run import train_projector

    cfg = _config(args)
    _print_config(cfg)
    man = train_projector(cfg, args.modality, args.out, log=lambda m: print(m, file=sys.stderr, flush=True))
    r = man["report"]
    print(f"{args.modality} projector: title top-1 {r['trained']['top1']:.3f} among {r['trained']['candidates']} "
          f"on {r['trained']['items']} held-out items (chance {r['trained']['chance']:.3f}, untrained "
          f"{r['untrained']['top1']:.3f}); held-out CE {r['heldout_ce']:.3f}; {r['seconds'] / 60:.1f} min"
          + (" (stopped by projector_max_minutes)" if r["capped"] else ""))
    return 0


def cmd_train_ranker(args) -> int:
    import torch

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.eval_config:  # the harness's split
        from llmrec.eval.ranker import ranker_dir, train_for_split

        if args.config or args.data_dir:
            raise ConfigError("give an eval config (the harness's split) or --data-dir/--dataset/--config "
                              "(a store), not both")
        cfg = Config.load(args.eval_config, overrides={"home": args.home, "eval_max_users": args.max_users,
                                                       "ranker_dir": args.out, "llm": args.llm, "device": args.device})
        _print_config(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        man, folder = train_for_split(cfg, log=log, fresh=args.fresh), ranker_dir(cfg)
    else:  # the store, for recommend
        from llmrec.rank.store import ranker_path, train_for_store
        from llmrec.rank.train import params_from
        from llmrec.recommender import Recommender

        args.extra_overrides = {"ranker_dir": args.out}
        cfg = _config(args)
        _print_config(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        params_from(cfg)  # bad ranker_* keys fail before the store is loaded
        man, folder = train_for_store(cfg, Recommender.load(config=cfg), log=log, fresh=args.fresh), ranker_path(cfg)
    b = man["best"]
    print(f"trained ranker ({'with' if man['soft_tokens'] else 'without'} soft tokens) in "
          f"{man['train_seconds'] / 60:.1f} min, {man['steps']} steps ({man['stopped']}); best at step {b['step']}: "
          f"validation NDCG@10 fused {b['fused_ndcg10']:.4f} (weight {b['fusion_weight']} on the LLM; the retriever "
          f"alone {man['fusion']['retriever_valid_ndcg10']:.4f}), LLM alone {b['ndcg10']:.4f}, HR@1 {b['hr1']:.4f}, "
          f"over {man['valid_users']} users; checkpoint {folder}")
    return 0


def cmd_serve(args) -> int:
    import torch

    from llmrec.serve import run

    args.extra_overrides = {"serve_host": args.host, "serve_port": args.port}
    cfg = _config(args)
    summary = cfg.summary()  # secret keys masked there
    print(summary, file=sys.stderr)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    print(f"llmrec serve: loading the store {cfg.store_dir()} and the models ...", file=sys.stderr, flush=True)
    run(cfg, log_level=args.log_level)
    return 0


def _table(result, title_max_chars: int) -> str:
    """The recommendations as a table: two lines per item (rank, id, score, title; the explanation).
    Ids, titles and explanations are untrusted text, shown through
    :func:`llmrec.text_safety.display_text` (one line each, no terminal control; titles cut at
    ``title_max_chars``); ``--json`` prints them raw."""
    from llmrec.text_safety import display_text

    head = (f"Recommendations for user {display_text(result.user, title_max_chars)}" if result.user
            else "Recommendations for the given history")
    lines = [head + (" (cold start: most popular)" if result.cold_start else f" (candidates from {result.retriever})"), ""]
    if not result.items:
        lines.append("(nothing left to recommend: the history covers every item in the store)")
        return "\n".join(lines)
    lines.append(f"{'rank':>4}  {'item':>7}  {'score':>8}  title")
    for r in result.items:
        item, title = display_text(r.item_id, title_max_chars), display_text(r.title, title_max_chars)
        lines.append(f"{r.rank:>4}  {item:>7}  {r.score:>8.3f}  {title}")
        lines.append(f"{'':>23}  {display_text(r.explanation)}")
    return "\n".join(lines)


def _prepare_args(p: argparse.ArgumentParser) -> None:
    _common(p)


def _ingest_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--catalog", help="items JSONL (id, title, text, image, audio)")
    p.add_argument("--interactions", help="interactions CSV (user,item,timestamp[,rating])")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed lines, report them, go on")
    p.add_argument("--audio", action=argparse.BooleanOptionalAction, default=None,
                   help="embed and transcribe the items' audio files (config ingest_audio; default: on when "
                   "items name audio)")
    p.add_argument("--images", action=argparse.BooleanOptionalAction, default=None,
                   help="encode and caption the items' images (config ingest_images; default: on for a "
                   "--catalog with images, off for the MovieLens datasets' posters)")


def _recommend_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a user id from the ingested interactions")
    who.add_argument("--history", help="comma-separated item ids, oldest first")
    p.add_argument("-k", type=int, default=None, help="how many items (default: config k)")
    p.add_argument("--explain", choices=["llm", "grounded"], help="explanation mode")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _train_retriever_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--seeds", help="comma-separated seeds (default: config sasrec_seeds); several make an ensemble")


def _train_ranker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("eval_config", nargs="?", help="evaluation config YAML (e.g. eval/ml-latest-small.yaml): train "
                   "on the harness's split; without it, train on the store (--data-dir/--dataset)")
    _common(p)
    p.add_argument("--out", help="checkpoint folder (default: ranker_dir, else {home}/rankers/{dataset} for an eval "
                   "config, {data_dir}/ranker for a store)")
    p.add_argument("--max-users", type=int, help="eval config: keep only the first N users (eval_max_users)")
    p.add_argument("--fresh", action="store_true", help="discard a resumable earlier run in the folder")


def _train_projector_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--modality", default="image", choices=["image", "audio"], help="whose vectors (default image)")
    p.add_argument("--out", help="checkpoint folder (default: {projector_dir or data_dir/projectors}/{modality})")


def _serve_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--host", help="address to listen on (config serve_host, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (config serve_port, default 8000)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (info logs every request)")


def _eval_args(p: argparse.ArgumentParser) -> None:
    from llmrec.eval.cli import add_arguments

    add_arguments(p)


def _run_eval(args) -> int:
    from llmrec.eval.cli import run

    return run(args)


# name -> (help, the arguments, the function run); ``models`` has its own sub-table.
MODELS_COMMANDS = {
    "prepare": ("locate model wheels, convert the GGUF LLM and Whisper once, check the LLM, text encoder and "
                "audio model", _prepare_args, cmd_models_prepare),
}
COMMANDS = {
    "ingest": ("encode a catalog into the store and save its interactions", _ingest_args, cmd_ingest),
    "recommend": ("recommend items for a user or a history", _recommend_args, cmd_recommend),
    "train-retriever": ("train the store's sequential retriever (SASRec) for recommend", _train_retriever_args,
                        cmd_train_retriever),
    "train-ranker": ("train the LLM ranker (LoRA + soft-token projector): on an eval config's split, or on a "
                     "store for recommend", _train_ranker_args, cmd_train_ranker),
    "train-projector": ("train a modality projector (image or audio vectors -> soft tokens in the LLM's input "
                        "space; LLaVA stage 1) on a store", _train_projector_args, cmd_train_projector),
    "serve": ("an OpenAI-compatible HTTP API (/v1/chat/completions) over the chat session", _serve_args, cmd_serve),
    "eval": ("offline evaluation: protocols, metrics, baselines, report", _eval_args, _run_eval),
}


def _add(sub, table: dict) -> None:
    for name, (help_text, arguments, run) in table.items():
        p = sub.add_parser(name, help=help_text)
        arguments(p)
        p.set_defaults(func=run)


def build_parser() -> argparse.ArgumentParser:
    """The ``llmrec`` parser, built from :data:`COMMANDS` (and ``models`` from :data:`MODELS_COMMANDS`)."""
    parser = argparse.ArgumentParser(
        prog="llmrec", description="llmrec: a multimodal recommender whose ranker is a language model. "
        "Set up with `llmrec models prepare` and `llmrec ingest`, then `recommend`, `serve` or `eval`.")
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="model set-up")
    _add(models.add_subparsers(dest="models_command", required=True), MODELS_COMMANDS)
    _add(sub, COMMANDS)
    return parser


def _warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"llmrec: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    warnings.showwarning = _warning
    try:
        return args.func(args)
    except LLMRecError as e:
        hint = " (--skip-bad skips malformed lines and ingests the rest)" if isinstance(e, CatalogLineError) else ""
        print(f"llmrec: error: {e}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmrec: interrupted (ingest is idempotent: run the same command again to finish)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
