"""Item cold-start: what content carries when collaborative vectors cannot help (issue 10).

    OMP_NUM_THREADS=1 .venv/bin/python eval/bench_cold_items.py --image-store ~/.cache/llmrec/data/ml-100k-img \\
        [--share 0.1] [--seed 0] [--llm-users 40] [--out eval/results/cold_items]

ml-100k, the harness's 5-core leave-one-out split (``llmrec.eval.runner.load_split``); the item
cold-start protocol of ``llmrec.eval.cold``: a random ``--share`` of the items is removed from every
training interaction; the users whose test target is one of them are evaluated by full ranking
(history masked). Systems (each item scored for each user):

- ``item-knn``: collaborative, fitted on the warm interactions (a cold item scores 0: the reference
  that shows the protocol works);
- ``text``: all-MiniLM-L6-v2 of each item's title and genres, the user the recency-weighted mean of
  the history's vectors (half-life chosen on validation, as the harness's text-embedding);
- ``image``: the same over the items' EfficientNet-Lite0 poster vectors (the image store's
  ``items_image``; an item without a poster has a zero vector);
- ``text+image``: per-user standardised text and image scores, summed with the image weight chosen on
  the validation users whose validation target is cold.

``--llm-users N``: for the first N cold test users, LLaRA's sampled protocol (the target and 19 items
the user never touched, seeded, shuffled) ranked by the text scorer, the zero-shot SmolLM2 verbalizer
on text, and the verbalizer with poster soft tokens (the image store's trained projector, ``llmrec
train-projector``): HR@1 (chance 5%), NDCG@10, mean rank, the paired soft-minus-text difference. (Full
ranking would hand the LLM almost no cold targets: the text retriever's Recall@20 is tiny here.)

Metrics: NDCG@10 and Recall@10 with 95% bootstrap intervals over users; paired differences against
``text``. Also the slice of users whose cold target has a poster.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmrec.config import Config  # noqa: E402
from llmrec.eval import cold  # noqa: E402
from llmrec.eval.baselines import ItemKNN, TextEmbedding, recency_weights  # noqa: E402
from llmrec.eval.metrics import bootstrap_ci, ndcg_at_k, paired_diff_ci, ranks_from_scores, recall_at_k  # noqa: E402
from llmrec.eval.runner import load_split  # noqa: E402

WEIGHTS = [round(0.1 * i, 1) for i in range(11)]


def _z(S: np.ndarray) -> np.ndarray:
    return (S - S.mean(1, keepdims=True)) / np.maximum(S.std(1, keepdims=True), 1e-9)


def _scores(U_fn, E: np.ndarray, hists: list[list[int]]) -> np.ndarray:
    return U_fn(hists) @ E.T


def mean_vectors(E: np.ndarray, half_life: float):
    def users(hists):
        U = np.zeros((len(hists), E.shape[1]), dtype=np.float32)
        for b, h in enumerate(hists):
            if h:
                w = recency_weights(len(h), half_life)
                U[b] = (w[:, None] * E[h]).sum(0) / w.sum()
        return U
    return users


def ranks(S: np.ndarray, split, users, stage, cold_set) -> np.ndarray:
    hists = [cold.history(split, u, stage, cold_set) for u in users]
    targets = np.array([split.target(u, stage) for u in users])
    return ranks_from_scores(S, targets, hists)


def summary(r: np.ndarray, n_boot: int = 1000) -> dict:
    nd, rc = ndcg_at_k(r, 10), recall_at_k(r, 10)
    return {"users": int(len(r)), "ndcg10": float(nd.mean()), "ndcg10_ci": bootstrap_ci(nd, n_boot),
            "recall10": float(rc.mean()), "recall10_ci": bootstrap_ci(rc, n_boot)}


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    return {"ndcg10": paired_diff_ci(ndcg_at_k(a, 10), ndcg_at_k(b, 10)),
            "recall10": paired_diff_ci(recall_at_k(a, 10), recall_at_k(b, 10))}


def image_matrix(split, store: Path) -> tuple[np.ndarray, np.ndarray, str]:
    from llmrec.store import ItemStore

    ids, V, metas = ItemStore(store, kind="image").matrix()
    pos = {i: n for n, i in enumerate(ids)}
    E = np.zeros((split.n_items, V.shape[1]), dtype=np.float32)
    has = np.zeros(split.n_items, dtype=bool)
    for n, i in enumerate(split.item_ids):
        if i in pos:
            E[n] = V[pos[i]]
            has[n] = True
    return E, has, str(metas[0].get("encoder"))


def llm_sampled(cfg: Config, split, users, cold_set, S_text: np.ndarray, store: Path, seed: int, log) -> dict:
    """LLaRA's sampled protocol on the cold users: the target and 19 items the user never touched
    (seeded), shuffled; ranked by the text scorer, the zero-shot LLM on text, and the LLM with poster
    soft tokens. Returns 1-based ranks [users] per system."""
    from llmrec.align.soft import SoftTokens
    from llmrec.llm.hf import TransformersBackend
    from llmrec.rank.verbalizer import verbalizer_rank

    backend = TransformersBackend(cfg)
    soft_src = SoftTokens(cfg.replace(data_dir=store), "image")
    rng = np.random.default_rng(seed)
    out = {"text scorer": [], "LLM, text": [], "LLM, text + poster soft tokens": []}
    t0 = time.time()
    for b, u in enumerate(users):
        target = split.target(u, "test")
        touched = set(split.history(u, "test")) | {target}
        pool = np.array([i for i in range(split.n_items) if i not in touched])
        cands = rng.permutation(np.concatenate([[target], rng.choice(pool, 19, replace=False)]))
        at = int(np.where(cands == target)[0][0])
        hist = cold.history(split, u, "test", cold_set)
        shown = [split.items[i] for i in hist[-cfg.history_max:]]
        items = [split.items[i] for i in cands]
        sc = S_text[b][cands]
        out["text scorer"].append(1 + int((np.delete(sc, at) >= sc[at]).sum()))
        for name, soft in (("LLM, text", None), ("LLM, text + poster soft tokens", soft_src.tokens(shown + items))):
            out[name].append(1 + verbalizer_rank(backend, shown, items, soft).order.index(at))
        log(f"  sampled LLM {b + 1}/{len(users)} users, {(time.time() - t0) / 60:.1f} min")
    return {k: np.array(v) for k, v in out.items()}


def hr1(r: np.ndarray) -> float:
    return float((r == 1).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-store", required=True, help="a store with ml-100k's poster vectors (llmrec ingest --images)")
    ap.add_argument("--share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--llm-users", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "eval" / "results" / "cold_items"))
    args = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    cfg = Config.load(overrides={"dataset": "ml-100k"})
    split = load_split(cfg)
    cset = cold.cold_items(split, args.share, args.seed)
    warm = cold.warm_split(split, cset)
    test_users, valid_users = cold.cold_users(split, cset, "test"), cold.cold_users(split, cset, "valid")
    log(f"{len(cset)} cold items of {split.n_items}; {len(test_users)} test users, {len(valid_users)} validation users")

    knn = ItemKNN(cfg.knn_neighbors).fit(warm)
    text = TextEmbedding(cache_dir=cfg.home / "cache", cfg=cfg).fit(warm)
    E_img, has_img, encoder = image_matrix(split, Path(args.image_store).expanduser())
    img_users = mean_vectors(E_img, text.half_life)

    def all_scores(users, stage):
        hists = [cold.history(split, u, stage, cset) for u in users]
        return {"item-knn": knn.user_vectors(hists) @ knn.item_vectors().T,
                "text": text.user_vectors(hists) @ text.E.T,
                "image": img_users(hists) @ E_img.T}

    V = all_scores(valid_users, "valid")
    best_w, best_v = 0.0, -1.0
    for w in WEIGHTS:
        r = ranks((1 - w) * _z(V["text"]) + w * _z(V["image"]), split, valid_users, "valid", cset)
        v = float(ndcg_at_k(r, 10).mean())
        if v > best_v:
            best_w, best_v = w, v
    log(f"image weight chosen on {len(valid_users)} cold validation users: {best_w} (NDCG@10 {best_v:.4f})")

    T = all_scores(test_users, "test")
    T["text+image"] = (1 - best_w) * _z(T["text"]) + best_w * _z(T["image"])
    R = {name: ranks(S, split, test_users, "test", cset) for name, S in T.items()}
    poster = np.array([has_img[split.target(u, "test")] for u in test_users])
    res = {"share": args.share, "seed": args.seed, "cold_items": int(len(cset)), "items": split.n_items,
           "test_users": len(test_users), "valid_users": len(valid_users), "image_weight": best_w,
           "image_encoder": encoder, "text_half_life": text.half_life,
           "all": {k: summary(r) for k, r in R.items()},
           "target_has_poster": {k: summary(r[poster]) for k, r in R.items()},
           "paired_vs_text": {k: paired(r, R["text"]) for k, r in R.items() if k != "text"}}
    if args.llm_users:
        users = test_users[:args.llm_users]
        L = llm_sampled(cfg, split, users, cset, T["text"][:len(users)], Path(args.image_store).expanduser(),
                        args.seed, log)
        res["sampled"] = {"users": len(users), "candidates": 20,
                          **{k: {"hr1": hr1(r), "hr1_ci": bootstrap_ci((r == 1).astype(float)),
                                 "ndcg10": float(ndcg_at_k(r, 10).mean()), "mean_rank": float(r.mean())}
                             for k, r in L.items()},
                          "soft_minus_text_hr1": paired_diff_ci((L["LLM, text + poster soft tokens"] == 1).astype(float),
                                                                (L["LLM, text"] == 1).astype(float)),
                          "soft_minus_text_ndcg10": paired_diff_ci(ndcg_at_k(L["LLM, text + poster soft tokens"], 10),
                                                                   ndcg_at_k(L["LLM, text"], 10))}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cold_items.json").write_text(json.dumps(res, indent=1))
    lines = ["| system | NDCG@10 (95% CI) | Recall@10 (95% CI) | users |", "|---|---|---|---|"]
    for k, s in res["all"].items():
        lines.append(f"| {k} | {s['ndcg10']:.4f} [{s['ndcg10_ci'][0]:.4f}, {s['ndcg10_ci'][1]:.4f}] | "
                     f"{s['recall10']:.4f} [{s['recall10_ci'][0]:.4f}, {s['recall10_ci'][1]:.4f}] | {s['users']} |")
    for k, d in res["paired_vs_text"].items():
        lines.append(f"| {k} - text | {d['ndcg10'][0]:+.4f} [{d['ndcg10'][1]:+.4f}, {d['ndcg10'][2]:+.4f}] | "
                     f"{d['recall10'][0]:+.4f} [{d['recall10'][1]:+.4f}, {d['recall10'][2]:+.4f}] | |")
    (out / "cold_items.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({k: v for k, v in res.items() if k not in ("all", "paired_vs_text")}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
