"""The ``cold-items`` protocol of ``llmrec eval``: what content carries when collaborative vectors
cannot help (the split helpers are :mod:`llmrec.eval.cold`).

A seeded share (``eval_cold_share``, ``seed``) of the items is removed from every training
interaction; the users whose TEST target is one of them are ranked over the full catalog (input
history = training + validation minus the cold items, masked; ties count against the target; ranks
0-based as :func:`llmrec.metrics.ranks_from_scores`). Systems (each item scored for each user):

- ``item-knn``: collaborative, fitted on the warm split (a cold item scores 0: the reference that
  shows the protocol works);
- ``text``: :class:`llmrec.eval.baselines.TextEmbedding` fitted on the warm split (title and genres;
  the user the recency-weighted mean of the history's vectors, half-life chosen on validation);
- with ``eval_modal_store``: ``image``, the same mean over the store's poster vectors
  (``items_image``; an item without a poster has a zero vector; the text half-life), and
  ``text+image``, per-user standardised text and image scores summed with the image weight (0, 0.1,
  ..., 1) of the best NDCG@10 on the users whose VALIDATION target is cold.

NDCG@10 and Recall@10 with ``eval_bootstrap`` bootstrap intervals over users (seed ``seed``), paired
differences against ``text``, and the slice of users whose cold target has a poster. With
``eval_cold_llm_users`` = N: the first N cold test users on LLaRA's sampled protocol
(:func:`llmrec.eval.protocols.sample_candidates`: the target and 19 items the user never touched,
seeded, shuffled), ranked by the text scorer, the zero-shot verbalizer of the configured LLM on text,
and (with the store) the verbalizer with the store's poster soft tokens (its trained projector).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from llmrec.config import Config
from llmrec.data.splits import Split
from llmrec.errors import DataError, StoreError
from llmrec.eval import cold
from llmrec.eval.baselines import ItemKNN, TextEmbedding, recency_weights
from llmrec.eval.modal_systems import store_path
from llmrec.metrics import bootstrap_ci, ndcg_at_k, paired_diff_ci, ranks_from_scores, recall_at_k

PART = "cold-items.json"
WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
"""Image weights of ``text+image`` tried on the cold validation users (first best wins)."""
NEGATIVES = 19
LLM_TEXT, LLM_SOFT, LLM_CAPTION = "LLM, text", "LLM, text + poster soft tokens", "LLM, text + poster caption"


def run(cfg: Config, split: Split, parts: Path, log=None) -> dict:
    """The cold-items protocol on ``split`` (see the module docstring), cached in ``parts/cold-items.json``.

    Args:
        cfg: ``eval_cold_share``, ``seed``, ``eval_modal_store`` (None: text and item-kNN only),
            ``eval_cold_llm_users``, ``eval_bootstrap``, ``knn_neighbors``, ``history_max``, ``home``
            (text vectors cached in ``{home}/cache``).
        split: the harness's leave-one-out split (the full one; the warm split is derived here).
        parts: folder of the cached result (created). A result whose ``key`` (share, seed, store,
            LLM users, split fingerprint, resamples, neighbours, history length, LLM) equals this
            run's is returned as it is, without recomputing.
        log: callable(str) for progress, or None.
    Returns:
        A JSON-serialisable dict: ``key``, ``dataset``, ``share``, ``seed``, ``cold_items``, ``items``,
        ``test_users``, ``valid_users``, ``users`` (the cold test users' ids, ascending),
        ``bootstrap``, ``text_half_life``, ``knn_half_life``, ``image`` (None, or ``store``,
        ``encoder``, ``items_with_poster``, ``weight``, ``weight_valid_ndcg10``, ``valid_users``),
        ``systems`` {name: {``ranks`` [test users] 0-based, ``users``, ``ndcg10``, ``ndcg10_ci``
        [lo, hi], ``recall10``, ``recall10_ci``}}, ``paired_vs_text`` {name: {``ndcg10``,
        ``recall10``: [difference, lo, hi]}}, ``poster_slice`` (None, or ``users``, ``has_poster``
        [test users] bool, ``systems`` {name: the summary without ranks}), ``sampled`` (None, or
        ``users``, ``candidates``, ``systems`` {name: {``ranks`` 0-based among the 20, ``hr1``,
        ``hr1_ci``, ``ndcg10``, ``mean_rank`` (1 = first)}}, ``soft_minus_text`` {``hr1``,
        ``ndcg10``: [difference, lo, hi]} or None, ``caption_minus_text`` (the same, with the store's
        captions), ``seconds``), ``seconds``.
        Means over an empty user set are None.
    Raises:
        ConfigError: ``eval_modal_store`` names a folder that does not exist or is not a store.
        StoreError: that store holds no poster vectors (``items_image``) for the split's items.
        DataError: no cold item is the test target of any user (raise ``eval_cold_share``).
        ModelError: ``eval_cold_llm_users`` > 0 with the store, but the store has no trained image
            projector (raised before anything is fitted), or the LLM cannot be loaded.
    """
    log = log or (lambda _m: None)
    store = store_path(cfg)
    key = {"share": cfg.eval.cold_share, "seed": cfg.seed, "store": str(store) if store else None,
           "llm_users": cfg.eval.cold_llm_users, "fingerprint": split.fingerprint(),
           "bootstrap": cfg.eval.bootstrap, "knn_neighbors": cfg.knn_neighbors, "history_max": cfg.history_max,
           "llm": cfg.llm if cfg.eval.cold_llm_users > 0 else None, "caption_variant": True,
           "projector_text_input": cfg.projector.text_input}
    parts = Path(parts)
    path = parts / PART
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
        if old.get("key") == key:
            log("[eval] cold-items: done in an earlier run (resumed)")
            return old
    t0 = time.time()
    res = _compute(cfg, split, store, log)
    res = {"key": key, **res, "seconds": round(time.time() - t0, 1)}
    parts.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(PART + ".part")
    tmp.write_text(json.dumps(res))
    tmp.replace(path)
    return res


def image_matrix(split: Split, store: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The store's poster vectors in split order: (float32 [N, d], zero rows without a poster;
    has-poster bool [N]; encoder id). Raises StoreError (naming ``eval_modal_store``) when the
    store holds none for the split's items."""
    from llmrec.store import ItemStore, kinds

    ids, V, metas = ItemStore(store, kind="image").matrix() if "image" in kinds(store) else ([], None, [])
    pos = {i: n for n, i in enumerate(ids)}
    has = np.array([i in pos for i in split.item_ids], dtype=bool)
    if not has.any():
        raise StoreError(f"config key 'eval_modal_store': the store {store} holds no poster vectors (items_image) "
                         f"for the {split.n_items} items of {split.name} ({len(ids)} image vectors in all): "
                         f"llmrec ingest --images on the same data set")
    E = np.zeros((split.n_items, V.shape[1]), dtype=np.float32)
    E[has] = V[[pos[i] for i in np.asarray(split.item_ids)[has]]]
    return E, has, str(metas[0].get("encoder"))


def _z(S: np.ndarray) -> np.ndarray:
    return (S - S.mean(1, keepdims=True)) / np.maximum(S.std(1, keepdims=True), 1e-9)


def _mean_users(E: np.ndarray, half_life: float, hists: list[list[int]]) -> np.ndarray:
    U = np.zeros((len(hists), E.shape[1]), dtype=np.float32)
    for b, h in enumerate(hists):
        if h:
            w = recency_weights(len(h), half_life)
            U[b] = (w[:, None] * E[h]).sum(0) / w.sum()
    return U


def _summary(r: np.ndarray, n_boot: int, seed: int) -> dict:
    if not len(r):
        return {"users": 0, "ndcg10": None, "ndcg10_ci": None, "recall10": None, "recall10_ci": None}
    nd, rc = ndcg_at_k(r, 10), recall_at_k(r, 10)
    return {"users": int(len(r)), "ndcg10": float(nd.mean()), "ndcg10_ci": list(bootstrap_ci(nd, n_boot, seed)),
            "recall10": float(rc.mean()), "recall10_ci": list(bootstrap_ci(rc, n_boot, seed))}


# long: every cold-item system scored in one pass over the users, sharing their caches
def _compute(cfg: Config, split: Split, store: Path | None, log) -> dict:
    cset = cold.cold_items(split, cfg.eval.cold_share, cfg.seed)
    warm = cold.warm_split(split, cset)
    test_users, valid_users = cold.cold_users(split, cset, "test"), cold.cold_users(split, cset, "valid")
    log(f"[eval] cold-items: {len(cset)} cold items of {split.n_items}; {len(test_users)} test users, "
        f"{len(valid_users)} validation users")
    if not test_users:
        raise DataError(f"cold-items: no test target of {split.name} is among its {len(cset)} cold items "
                        f"(eval_cold_share {cfg.eval.cold_share}, seed {cfg.seed}): raise eval_cold_share")
    image = soft_src = None
    captions: dict[str, str] = {}
    if store is not None:
        E_img, has_img, encoder = image_matrix(split, store)
        if cfg.eval.cold_llm_users > 0:  # before any fitting: a missing projector fails at once
            from llmrec.eval.modal_systems import load_content
            from llmrec.projector.soft import SoftTokens

            soft_src = SoftTokens(cfg.replace(data_dir=store), "image")
            captions = load_content(cfg, split)[0]
    knn = ItemKNN(cfg.knn_neighbors).fit(warm)
    text = TextEmbedding(cache_dir=Path(cfg.home) / "cache", cfg=cfg).fit(warm)

    def scores(users, stage):
        hists = [cold.history(split, u, stage, cset) for u in users]
        S = {"item-knn": knn.user_vectors(hists) @ knn.item_vectors().T,
             "text": text.user_vectors(hists) @ text.E.T}
        if store is not None:
            S["image"] = _mean_users(E_img, text.half_life, hists) @ E_img.T
        return S, hists

    def ranks(S, users, stage, hists):
        return ranks_from_scores(S, np.array([split.target(u, stage) for u in users]), hists)

    if store is not None:
        best_w, best_v = 0.5, None  # kept (not chosen) when no validation target is cold
        if valid_users:
            V, vh = scores(valid_users, "valid")
            for w in WEIGHTS:
                v = float(ndcg_at_k(ranks((1 - w) * _z(V["text"]) + w * _z(V["image"]), valid_users, "valid", vh),
                                    10).mean())
                if best_v is None or v > best_v:
                    best_w, best_v = w, v
        log(f"[eval] cold-items: image weight {best_w} chosen on {len(valid_users)} cold validation users")
        image = {"store": str(store), "encoder": encoder, "items_with_poster": int(has_img.sum()),
                 "weight": best_w, "weight_valid_ndcg10": best_v, "valid_users": len(valid_users)}
    T, th = scores(test_users, "test")
    if store is not None:
        T["text+image"] = (1 - best_w) * _z(T["text"]) + best_w * _z(T["image"])
    R = {name: ranks(S, test_users, "test", th) for name, S in T.items()}
    nb, sd = cfg.eval.bootstrap, cfg.seed
    res = {"dataset": split.name, "share": cfg.eval.cold_share, "seed": cfg.seed, "cold_items": int(len(cset)),
           "items": split.n_items, "test_users": len(test_users), "valid_users": len(valid_users),
           "users": list(test_users), "bootstrap": nb, "text_half_life": text.half_life,
           "knn_half_life": knn.half_life, "image": image,
           "systems": {k: {"ranks": r.tolist(), **_summary(r, nb, sd)} for k, r in R.items()},
           "paired_vs_text": {k: {m: list(paired_diff_ci(f(r, 10), f(R["text"], 10), nb, sd))
                                  for m, f in (("ndcg10", ndcg_at_k), ("recall10", recall_at_k))}
                              for k, r in R.items() if k != "text"},
           "poster_slice": None, "sampled": None}
    if store is not None:
        poster = np.array([has_img[split.target(u, "test")] for u in test_users], dtype=bool)
        res["poster_slice"] = {"users": int(poster.sum()), "has_poster": poster.tolist(),
                               "systems": {k: _summary(r[poster], nb, sd) for k, r in R.items()}}
    if cfg.eval.cold_llm_users > 0:
        users = test_users[:cfg.eval.cold_llm_users]
        res["sampled"] = _llm_sampled(cfg, split, users, cset, T["text"][:len(users)], soft_src, log, captions)
    return res


def _llm_sampled(cfg: Config, split: Split, users: list[str], cset, S_text: np.ndarray, soft_src, log,
                 captions: dict[str, str] | None = None) -> dict:
    """LLaRA's sampled protocol on ``users`` (cold test users; ``S_text`` float [B, N] their text
    scores): the text scorer, the zero-shot verbalizer on text and, with ``soft_src`` (the store's
    :class:`llmrec.projector.soft.SoftTokens`), with poster soft tokens, and with ``captions`` (item id ->
    poster caption) with the captions as quoted text. Ranks 0-based among the 20."""
    import dataclasses

    from llmrec.eval.protocols import sample_candidates
    from llmrec.llm.base import make_backend
    from llmrec.rank.verbalizer import verbalizer_rank

    t0 = time.time()
    cands, pos = sample_candidates(split, "test", users, NEGATIVES, cfg.seed)
    R = {"text scorer": ranks_from_scores(np.take_along_axis(S_text, cands, 1), pos)}
    names = [LLM_TEXT] + ([LLM_SOFT] if soft_src is not None else []) + ([LLM_CAPTION] if captions else [])
    R.update({n: np.zeros(len(users), dtype=np.int64) for n in names})
    backend = make_backend(cfg)
    for b, u in enumerate(users):
        hist = cold.history(split, u, "test", cset)
        shown = [split.items[i] for i in hist[-cfg.history_max:]] if cfg.history_max > 0 else []
        items = [split.items[i] for i in cands[b]]
        R[LLM_TEXT][b] = verbalizer_rank(backend, shown, items).order.index(int(pos[b]))
        if soft_src is not None:
            soft = soft_src.tokens(shown + items)
            R[LLM_SOFT][b] = verbalizer_rank(backend, shown, items, soft).order.index(int(pos[b]))
        if captions:
            cap = [dataclasses.replace(it, caption=captions.get(it.id, "")) for it in shown + items]
            R[LLM_CAPTION][b] = verbalizer_rank(backend, cap[:len(shown)], cap[len(shown):]).order.index(int(pos[b]))
        log(f"[eval] cold-items: sampled LLM {b + 1}/{len(users)} users, {(time.time() - t0) / 60:.1f} min")
    nb, sd = cfg.eval.bootstrap, cfg.seed
    hit = {k: (r == 0).astype(float) for k, r in R.items()}
    out = {"users": len(users), "candidates": NEGATIVES + 1,
           "systems": {k: {"ranks": r.tolist(), "hr1": float(hit[k].mean()),
                           "hr1_ci": list(bootstrap_ci(hit[k], nb, sd)),
                           "ndcg10": float(ndcg_at_k(r, 10).mean()), "mean_rank": float(r.mean() + 1)}
                       for k, r in R.items()},
           "soft_minus_text": None}
    if soft_src is not None:
        out["soft_minus_text"] = {
            "hr1": list(paired_diff_ci(hit[LLM_SOFT], hit[LLM_TEXT], nb, sd)),
            "ndcg10": list(paired_diff_ci(ndcg_at_k(R[LLM_SOFT], 10), ndcg_at_k(R[LLM_TEXT], 10), nb, sd))}
    if captions:
        out["caption_minus_text"] = {
            "hr1": list(paired_diff_ci(hit[LLM_CAPTION], hit[LLM_TEXT], nb, sd)),
            "ndcg10": list(paired_diff_ci(ndcg_at_k(R[LLM_CAPTION], 10), ndcg_at_k(R[LLM_TEXT], 10), nb, sd))}
    out["seconds"] = round(time.time() - t0, 1)
    return out


TABLE = ["| system | NDCG@10 (95% CI) | Recall@10 (95% CI) | users |", "|---|---|---|---|"]


def _ci(v, ci, sign: str = "") -> str:
    if v is None:
        return "n/a"
    return f"{v:{sign}.4f} [{ci[0]:{sign}.4f}, {ci[1]:{sign}.4f}]"


def _row(name: str, s: dict) -> str:
    return f"| {name} | {_ci(s['ndcg10'], s['ndcg10_ci'])} | {_ci(s['recall10'], s['recall10_ci'])} | {s['users']} |"


def report_lines(res: dict) -> list[str]:
    """The markdown section of a :func:`run` result: heading, protocol sentence, the full-ranking
    table (system | NDCG@10 (95% CI) | Recall@10 (95% CI) | users) with paired ``X - text`` rows,
    the poster slice and the sampled LLM table when present."""
    img = res.get("image")
    lines = [f"## Item cold start ({res['dataset']}, {res['share']:.0%} of the items cold, seed {res['seed']})",
             "",
             f"A seeded share of the items ({res['share']}, seed {res['seed']}: {res['cold_items']} of "
             f"{res['items']}) is removed from every training interaction; the {res['test_users']} test users whose "
             f"test target is cold are ranked over the full catalog (history without cold items, masked; ties "
             f"count against the target); {res['valid_users']} validation users have a cold validation target"
             + (f" (the image weight of text+image chosen on them: {img['weight']})" if img else "")
             + f". 95% bootstrap intervals over users ({res['bootstrap']} resamples); paired differences "
               f"against text.", "", *TABLE]
    lines += [_row(k, s) for k, s in res["systems"].items()]
    for k, d in res["paired_vs_text"].items():
        lines.append(f"| {k} - text | {_ci(d['ndcg10'][0], d['ndcg10'][1:], '+')} | "
                     f"{_ci(d['recall10'][0], d['recall10'][1:], '+')} | |")
    if res.get("poster_slice"):
        p = res["poster_slice"]
        lines += ["", f"Users whose cold target has a poster ({p['users']} of {res['test_users']}; "
                      f"{img['items_with_poster']} of {res['items']} items have one):", "", *TABLE]
        lines += [_row(k, s) for k, s in p["systems"].items()]
    if res.get("sampled"):
        sm = res["sampled"]
        lines += ["", f"The first {sm['users']} cold test users on LLaRA's sampled protocol (the target and "
                      f"{sm['candidates'] - 1} items the user never touched, seeded, shuffled; HR@1 chance "
                      f"{1 / sm['candidates']:.2f}; mean rank 1 = first):", "",
                  f"| ranker of the {sm['candidates']} | HR@1 (95% CI) | NDCG@10 | mean rank |",
                  "|---|---|---|---|"]
        for k, s in sm["systems"].items():
            lines.append(f"| {k} | {s['hr1']:.3f} [{s['hr1_ci'][0]:.3f}, {s['hr1_ci'][1]:.3f}] | "
                         f"{s['ndcg10']:.3f} | {s['mean_rank']:.2f} |")
        for key, what in (("soft_minus_text", "Soft tokens"), ("caption_minus_text", "Caption")):
            if sm.get(key):
                h, n = sm[key]["hr1"], sm[key]["ndcg10"]
                lines += ["", f"{what} - text (paired): HR@1 {h[0]:+.3f} [{h[1]:+.3f}, {h[2]:+.3f}], "
                              f"NDCG@10 {n[0]:+.3f} [{n[1]:+.3f}, {n[2]:+.3f}]."]
    return lines
