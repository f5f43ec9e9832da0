"""The LLM systems of ``llmrec eval``: the retriever's top ``candidates`` reordered by an LLM ranker,
and the LLM fused with the retriever.

For each ranker in ``eval_llm`` (``zero-shot``: the base LLM with the trained ranker's prompt;
``trained``: the checkpoint of ``llmrec train-ranker``; ``trained-text``: the one trained without
soft tokens), systems named after the retriever (``eval_ranker_retriever``, e.g. ``fusion``):

- ``fusion+trained``: candidates ordered by the LLM's label log-probability (candidates shown in
  the retriever's order, as LlamaRec tests);
- ``fusion+trained+fused``: ``w * z(LLM log-prob) + (1 - w) * z(retriever score)``, z-scored over
  each user's candidates, ``w`` on a 0.05 grid chosen on VALIDATION NDCG@10.

Users whose target is not among the candidates keep the retriever's rank (>= ``candidates``), and
the LLM is not called for them. Also measured per ranker: position bias (the same users' candidates
shown in the retriever's order, reversed and shuffled: Kendall's tau between the item rankings, and
the share of users whose top pick is label A; also after calibration, each label position's mean
log-probability over the validation users subtracted, which leaves the LLM's preference among the
items) and LLaRA's sampled protocol (target + 19 random
negatives; the report pairs each LLM system with the retriever on the same candidates,
:func:`llmrec.eval.report.paired_sampled`). Log-probabilities are cached in ``OUT/parts/llm-{ranker}.json`` (resumable).

``llm_backend: vllm`` scores on a vLLM server (``vllm_url``, or a local one started for each ranker
and stopped after it; ``ranker_batch_size`` prompts are sent together): the same log-probabilities
within ~4e-5 (``tests/llm/test_vllm.py``), faster on this CPU (eval/RESULTS.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from llmrec.config import Config
from llmrec.data.splits import Split
from llmrec.errors import ConfigError
from llmrec.eval.protocols import sample_candidates
from llmrec.eval.ranker import ranker_dir, retriever_for, train_for_split
from llmrec.metrics import target_rank
from llmrec.rank.fuse import choose_weight, fuse
from llmrec.rank.fuse import ndcg10 as _ndcg
from llmrec.rank.train import retrieve

KINDS = ("zero-shot", "trained", "trained-text")


def _checkpoint(kind: str, cfg: Config) -> Path | None:
    """The checkpoint folder of the trained ranker ``kind`` when it holds one (its manifest), else None
    (``zero-shot``, or a trained ranker not trained yet)."""
    folder = ranker_dir(cfg, kind == "trained")
    return folder if kind != "zero-shot" and (folder / "manifest.json").exists() else None


def _model(kind: str, cfg: Config, identity: dict, log):
    """The ranker ``kind`` in-process (``llm_backend: transformers``) or on vLLM (``vllm``: the
    ``vllm_url`` servers, or a local one llmrec starts; a trained ranker's LoRA adapter is served):
    :func:`llmrec.llm.base.zero_shot_ranker` / :func:`~llmrec.llm.base.load_ranker`."""
    from llmrec.llm.base import load_ranker, zero_shot_ranker

    if kind == "zero-shot":
        return zero_shot_ranker(cfg)
    soft = kind == "trained"
    c = cfg.replace(ranker_soft_tokens=soft) if soft != cfg.rank.soft_tokens else cfg
    folder = ranker_dir(cfg, soft)
    if _checkpoint(kind, cfg) is None:
        log(f"[eval] no {kind} ranker at {folder}: training it (llmrec train-ranker)")
        train_for_split(c.replace(ranker_dir=folder), log=log)
    return load_ranker(folder, c, retriever=identity)


def _identity(kind: str, cfg: Config) -> dict:
    """What the cached log-probabilities depend on: the template, base model and backend (the two
    agree within ~4e-5, but the cache's timings are the backend's), and for a trained ranker its
    checkpoint (creation time)."""
    from llmrec.rank import checkpoint as ckpt
    from llmrec.rank.model import template_hash

    key = {"template": template_hash(), "base_model": ckpt.base_identity(cfg), "history": cfg.rank.history,
           "backend": cfg.llm_backend}
    folder = _checkpoint(kind, cfg)
    if folder is not None:
        key["checkpoint"] = ckpt.read_manifest(folder).get("created")
    return key


class _Cache:
    """``parts/llm-{kind}.json``: {section: {user: [log-probs]}}, saved every 25 users; discarded
    when ``key`` (what the log-probabilities depend on) changed."""

    def __init__(self, path: Path, key: dict):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}
        if self.data.get("key") != key:
            self.data = {"key": key}

    def save(self) -> None:
        tmp = self.path.with_suffix(".part")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)


def _scores(model_fn, cache: _Cache, section: str, jobs: list[tuple[str, list, list]], split: Split, log,
            batch: int) -> dict[str, np.ndarray]:
    """LLM label log-probabilities for ``jobs`` (user, history indices, candidate indices), cached."""
    done = cache.data.setdefault(section, {})
    todo = [j for j in jobs if j[0] not in done]
    if todo:
        model_fn()  # load (or train) the model first: that time is not this section's scoring time
    t0 = time.time()
    for s in range(0, len(todo), batch):
        part = todo[s:s + batch]
        lp = model_fn().score([([split.items[i] for i in h], [split.items[i] for i in c]) for _, h, c in part])
        for (u, _, _), row in zip(part, lp, strict=True):
            done[u] = [float(x) for x in row]
        if (s // batch) % max(1, 25 // batch) == 0 or s + batch >= len(todo):
            cache.save()
            n = s + len(part)
            el = time.time() - t0
            log(f"[eval] {section}: {n}/{len(todo)} users, {el:.0f}s, ETA {el / n * (len(todo) - n):.0f}s")
    if todo:
        cache.data.setdefault("seconds", {})[section] = round(time.time() - t0, 1)
        cache.data.setdefault("timed_users", {})[section] = len(todo)
        cache.save()
    return {u: np.asarray(done[u]) for u, _, _ in jobs}


def candidates(scorer, split: Split, users: list[str], n: int) -> tuple[dict, dict, dict, dict]:
    """The retriever's top ``n`` for the validation and test targets of ``users``, kept where the
    stage's target is among them. Returns (``cands[stage, user]``: item indices best first,
    ``rscore[stage, user]``: their retriever scores [n], ``pos[stage, user]``: the target's position,
    ``called[stage]``: those users in order)."""
    cands, rscore, pos = {}, {}, {}
    for st in ("valid", "test"):
        top, sc = retrieve(scorer, [split.history(u, st) for u in users], n)
        for b, u in enumerate(users):
            t = split.target(u, st)
            if t in top[b]:
                cands[st, u] = [int(i) for i in top[b]]
                rscore[st, u] = sc[b]
                pos[st, u] = cands[st, u].index(t)
    called = {st: [u for u in users if (st, u) in cands] for st in ("valid", "test")}
    return cands, rscore, pos, called


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def position_bias(test: dict, rev: dict, shu: dict, perms: dict, prior: np.ndarray | None = None) -> dict:
    """Position bias of one ranker over the users of ``rev`` (their candidates in the retriever's order
    -> ``test[u]``, reversed -> ``rev[u]``, shuffled by ``perms[u]`` -> ``shu[u]``; each [n] label
    log-probabilities in the order shown). ``prior``: float [n] subtracted from every label position
    first (calibration), or None.

    Returns {users, kendall_tau_shuffled, kendall_tau_reversed (mean Kendall's tau between the item
    rankings, retriever order vs the other; nan-skipping), top_is_A: {order: share of users whose top
    pick is label A}, top_is_A_uniform: 1/n}."""
    users = list(rev)
    n = len(perms[users[0]]) if users else 0
    P = np.zeros(n) if prior is None else np.asarray(prior, dtype=float)
    taus_s, taus_r, top_a = [], [], {"retriever": [], "reversed": [], "shuffled": []}
    for u in users:
        a, r, s = (np.asarray(x[u], dtype=float) - P for x in (test, rev, shu))
        s_items = np.empty(n)
        s_items[perms[u]] = s  # back to the retriever's item order
        taus_s.append(kendalltau(a, s_items).statistic)
        taus_r.append(kendalltau(a, r[::-1]).statistic)
        top_a["retriever"].append(int(np.argmax(a) == 0))
        top_a["reversed"].append(int(np.argmax(r) == 0))
        top_a["shuffled"].append(int(np.argmax(s) == 0))
    return {"users": len(users), "kendall_tau_shuffled": float(np.nanmean(taus_s)) if taus_s else None,
            "kendall_tau_reversed": float(np.nanmean(taus_r)) if taus_r else None,
            "top_is_A": {k: float(np.mean(v)) if v else None for k, v in top_a.items()},
            "top_is_A_uniform": 1 / n if n else None}


def alone_and_fused(name: str, lp: dict, rscore: dict, pos: dict, called: dict, users: list[str],
                    base_ranks: np.ndarray, n: int) -> tuple[dict[str, list[int]], float, float, float]:
    """The systems ``name`` (candidates by the LLM's log-probabilities ``lp[stage][user]`` [n]) and
    ``name+fused`` (:func:`llmrec.rank.fuse.fuse` with the retriever's ``rscore``, the weight chosen
    on the validation users). Returns ({system: 0-based test ranks over ``users``, the retriever's
    ``base_ranks`` where the LLM was not called}, weight, its validation NDCG@10, the LLM alone's
    validation NDCG@10), over the ``called`` users' candidates."""
    vl = np.array([lp["valid"][u] for u in called["valid"]]).reshape(-1, n)
    vr = np.array([rscore["valid", u] for u in called["valid"]]).reshape(-1, n)
    vp = np.array([pos["valid", u] for u in called["valid"]], dtype=int)
    w, wv = choose_weight(vl, vr, vp)
    by_system = {name: {u: lp["test"][u] for u in called["test"]},
                 f"{name}+fused": {u: fuse(lp["test"][u], rscore["test", u], w) for u in called["test"]}}
    out = {}
    for sysname, scores in by_system.items():
        ranks = np.asarray(base_ranks).copy()
        for b, u in enumerate(users):
            if u in scores:
                ranks[b] = target_rank(scores[u], pos["test", u])
        out[sysname] = ranks.tolist()
    return out, w, wv, _ndcg(vl, vp)


# long: the LLM systems' resumable sequence (candidates, cached log-probs, fusion, position bias)
def run(cfg: Config, split: Split, users: list[str], parts: Path, results: dict, log) -> dict:
    """Evaluate ``cfg.eval.llm`` rankers over ``eval_ranker_retriever``'s candidates. Returns
    {system: result} in the harness's format, plus ``{"llm": details}`` under ``_llm`` keys."""
    base = cfg.eval.ranker_retriever
    if base not in results or "full" not in results[base]:
        raise ConfigError(f"eval_llm needs eval_ranker_retriever {base!r} among eval_systems with protocol full")
    bad = [k for k in cfg.eval.llm if k not in KINDS]
    if bad:
        raise ConfigError(f"unknown eval_llm ranker(s) {bad}; known: {', '.join(KINDS)}")
    scorer, identity, _ = retriever_for(cfg, split, log)
    n, H = cfg.candidates, cfg.rank.history
    shown = {st: {u: split.history(u, st)[-H:] if H else [] for u in users} for st in ("valid", "test")}
    cands, rscore, pos, called = candidates(scorer, split, users, n)
    base_ranks = np.asarray(results[base]["full"]["ranks"])
    out: dict = {}
    for kind in cfg.eval.llm:
        holder: dict = {}

        def model_fn(kind=kind, holder=holder):
            if "m" not in holder:
                holder["m"] = _model(kind, cfg, identity, log)
            return holder["m"]

        if kind != "zero-shot" and _checkpoint(kind, cfg) is None:
            model_fn()  # train it now: the cache's key names the checkpoint, which must exist first
        cache = _Cache(parts / f"llm-{kind}.json", _identity(kind, cfg))

        bs = max(1, cfg.rank.batch_size)
        lp = {st: _scores(model_fn, cache, f"{st}", [(u, shown[st][u], cands[st, u]) for u in called[st]],
                          split, log, bs) for st in ("valid", "test")}
        sysname = f"{base}+{kind}"
        ranked, w, wv, valid_llm = alone_and_fused(sysname, lp, rscore, pos, called, users, base_ranks, n)
        for name, ranks in ranked.items():
            out[name] = {"full": {"ranks": ranks, "called": len(called["test"]), "valid": len(called["test"]),
                                  "seconds": cache.data.get("seconds", {}).get("test")}}
        out[f"{sysname}+fused"]["fusion_weight"] = w
        out[f"{sysname}+fused"]["valid_ndcg10_called"] = wv
        out[sysname]["valid_ndcg10_called"] = valid_llm
        # Position bias: the same test users, candidates in the retriever's order, reversed, shuffled.
        bias_users = called["test"][: cfg.eval.llm_bias_users]
        rng = np.random.default_rng(cfg.seed)
        perms = {u: rng.permutation(n) for u in bias_users}
        rev = _scores(model_fn, cache, "reversed", [(u, shown["test"][u], cands["test", u][::-1]) for u in bias_users],
                      split, log, bs)
        shu = _scores(model_fn, cache, "shuffled",
                      [(u, shown["test"][u], [cands["test", u][i] for i in perms[u]]) for u in bias_users], split, log, bs)
        bias = position_bias(lp["test"], rev, shu, perms)
        # The same log-probabilities with each label position's mean over the validation users
        # subtracted: what is left after the position prior is the LLM's preference among the items.
        prior = np.mean([lp["valid"][u] for u in called["valid"]], axis=0) if called["valid"] else np.zeros(n)
        bias["calibrated"] = position_bias(lp["test"], rev, shu, perms, prior)
        out[sysname]["position_bias"] = bias
        for label, b in (("", bias), ("calibrated: ", bias["calibrated"])):
            log(f"[eval] {sysname}: position bias over {len(bias_users)} users, {label}Kendall tau retriever vs "
                f"shuffled {_f(b['kendall_tau_shuffled'])}, vs reversed {_f(b['kendall_tau_reversed'])}; top = A "
                + ", ".join(f"{k} {_f(v)}" for k, v in b["top_is_A"].items()))
        # LLaRA's sampled protocol (the LLM alone, and fused with the retriever's scores at weight w).
        if "sampled" in cfg.eval.protocols:
            sc_c, sc_p = sample_candidates(split, cfg.eval.stage, users, cfg.eval.negatives, cfg.seed)
            sh = {u: split.history(u, cfg.eval.stage)[-H:] if H else [] for u in users}
            slp = _scores(model_fn, cache, "sampled", [(u, sh[u], [int(i) for i in sc_c[b]]) for b, u in enumerate(users)],
                          split, log, bs)
            V = scorer.item_vectors()
            U = scorer.user_vectors([split.history(u, cfg.eval.stage) for u in users])
            srs = np.einsum("bd,bcd->bc", U, V[sc_c])
            by_system = {sysname: [slp[u] for u in users],
                         f"{sysname}+fused": [fuse(slp[u], srs[b], w) for b, u in enumerate(users)]}
            for name, scores in by_system.items():
                ranks = np.array([target_rank(sc, int(p)) for sc, p in zip(scores, sc_p, strict=True)])
                out[name]["sampled"] = {"ranks": ranks.tolist(), "valid": len(users),
                                        "seconds": cache.data.get("seconds", {}).get("sampled")}
        secs, timed = cache.data.get("seconds", {}), cache.data.get("timed_users", {})
        out[sysname]["seconds_per_user"] = {k: round(secs[k] / timed[k], 3) for k in secs if timed.get(k)}
        if kind != "zero-shot":
            from llmrec.rank.checkpoint import read_manifest

            m = read_manifest(_checkpoint(kind, cfg))
            out[sysname]["checkpoint"] = {k: m.get(k) for k in ("created", "best", "stopped", "cap_hit",
                                                                 "train_seconds", "steps", "soft_tokens")}
        if hasattr(holder.get("m"), "close"):
            holder["m"].close()  # a local vLLM server
        holder.clear()
    return out

