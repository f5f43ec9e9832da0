"""Reports of ``llmrec eval``: ``metrics.json``, ``report.md`` and plots (matplotlib).

``metrics.json``::

    {"dataset": {"name", "users", "items", "interactions"},
     "protocol": {...},                      # the exact protocol, in words and numbers
     "results": {SYSTEM: {"Recall@10": ..., "NDCG@10": ..., "MRR@10": ..., ...}},
     "intervals": {SYSTEM: {"Recall@10": [lo, hi], ...}},   # 95% bootstrap over users
     "sampled": {SYSTEM: {"HR@1": ..., "HR@1_ci": [lo, hi], "valid_ratio": ...}},
     "details": {SYSTEM: {timings, selected hyper-parameters, seeds}}}
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from llmrec.config import Config
from llmrec.data.splits import Split
from llmrec.metrics import KS, bootstrap_ci, ndcg_at_k, paired_diff_ci, per_user, recall_at_k

HEADLINE = ("Recall@10", "NDCG@10", "MRR@10", "Recall@20", "NDCG@20", "Recall@5", "NDCG@5", "Recall@1")
PUBLISHED = {  # LlamaRec paper, Table 2, its "ML-100k" = ml-latest-small (test, full ranking)
    "ml-latest-small": {"LRURec (LlamaRec's retriever)": {"NDCG@10": 0.0705, "Recall@10": 0.1426},
                        "LlamaRec (Llama-2-7B ranker)": {"NDCG@10": 0.0759, "Recall@10": 0.1524},
                        "SASRec (as reported by LlamaRec)": {"NDCG@10": 0.0522, "Recall@10": 0.0993}},
}


# long: one metrics.json section per protocol, in report order
def build_metrics(cfg: Config, split: Split, results: dict, config_name: str = "") -> dict:
    """Aggregate per-user ranks into means and 95% bootstrap intervals (``cfg.eval.bootstrap`` resamples,
    seed ``cfg.seed``; the same resampled users for every system)."""
    m: dict = {
        "config": config_name,
        "dataset": {"name": split.name, **split.stats(), "fingerprint": split.fingerprint()},
        "protocol": {
            "full": {
                "name": "full ranking, leave-one-out (LlamaRec)",
                "filter": "all ratings kept; iterative 5-core on users and items",
                "order": "history ordered by (timestamp, item id)",
                "targets": f"{cfg.eval.stage} (last item = test, second last = validation)",
                "masking": "the user's input history is masked; ties with the target count against it",
                "ranker": {"candidates": cfg.candidates, "history_max": cfg.history_max,
                           "miss": "users whose target is not in the candidates keep the retriever's order"},
                "ks": list(KS),
            },
            "sampled": {"name": "sampled candidates (LLaRA)", "candidates": cfg.eval.negatives + 1,
                        "negatives": "uniform over items the user never interacted with, fixed seed",
                        "seed": cfg.seed, "metrics": "HR@1 (invalid answer = miss) and valid-answer ratio"},
            "bootstrap": {"resamples": cfg.eval.bootstrap, "level": 0.95, "over": "users", "seed": cfg.seed},
        },
        "results": {}, "intervals": {}, "sampled": {}, "details": {},
    }
    for name, res in results.items():
        det = {k: v for k, v in res.items() if k not in ("full", "sampled") and not k.startswith("_")}
        if "full" in res:
            r = np.asarray(res["full"]["ranks"])
            pu = per_user(r)
            m["results"][name] = {k: float(v.mean()) for k, v in pu.items()}
            m["intervals"][name] = {k: list(bootstrap_ci(v, cfg.eval.bootstrap, cfg.seed)) for k, v in pu.items()}
            m["results"][name]["users"] = int(len(r))
            det["full_eval_seconds"] = res["full"].get("seconds")
            for k in ("called", "valid"):
                if k in res["full"]:
                    det[f"ranker_{k}"] = res["full"][k]
        if "sampled" in res:
            r = np.asarray(res["sampled"]["ranks"])
            hit = (r == 0).astype(float)
            n_valid = res["sampled"]["valid"]
            m["sampled"][name] = {"HR@1": float(hit.mean()),
                                  "HR@1_valid_only": float(hit.sum() / n_valid) if n_valid else None,
                                  "HR@1_ci": list(bootstrap_ci(hit, cfg.eval.bootstrap, cfg.seed)),
                                  "NDCG@5": float(per_user(r, (5,))["NDCG@5"].mean()),
                                  "valid_ratio": res["sampled"]["valid"] / max(len(r), 1), "users": int(len(r))}
        m["details"][name] = det
    seeds = [n for n in results if n.startswith("sasrec[seed=")]
    if len(seeds) > 1 and all(n in m["results"] for n in seeds):
        m["sasrec_seeds"] = {
            k: {"mean": float(np.mean([m["results"][n][k] for n in seeds])),
                "std": float(np.std([m["results"][n][k] for n in seeds], ddof=1))}
            for k in ("NDCG@10", "Recall@10", "NDCG@20", "Recall@20")}
    ref = cfg.eval.reference
    if ref in results and "full" in results[ref]:
        base = per_user(np.asarray(results[ref]["full"]["ranks"]))
        m["vs_reference"] = {"reference": ref, "systems": {}}
        for name, res in results.items():
            if name != ref and "full" in res and len(res["full"]["ranks"]) == len(results[ref]["full"]["ranks"]):
                pu = per_user(np.asarray(res["full"]["ranks"]))
                m["vs_reference"]["systems"][name] = {
                    k: list(paired_diff_ci(pu[k], base[k], cfg.eval.bootstrap, cfg.seed)) for k in PAIRED}
    base_name = cfg.eval.ranker_retriever
    llm_systems = [n for n in results if n.startswith(f"{base_name}+")]
    if llm_systems and base_name in results and "full" in results[base_name]:
        base = per_user(np.asarray(results[base_name]["full"]["ranks"]))
        m["vs_retriever"] = {"retriever": base_name, "systems": {}}
        for name in llm_systems:
            if "full" in results[name]:
                pu = per_user(np.asarray(results[name]["full"]["ranks"]))
                m["vs_retriever"]["systems"][name] = {
                    k: list(paired_diff_ci(pu[k], base[k], cfg.eval.bootstrap, cfg.seed)) for k in PAIRED}
        sampled_d = paired_sampled(results, base_name, llm_systems, cfg.eval.bootstrap, cfg.seed)
        if sampled_d:
            m["vs_retriever"]["sampled"] = sampled_d
    if split.name in PUBLISHED and not cfg.eval.max_users:
        m["published"] = PUBLISHED[split.name]
    return m


PAIRED = ("NDCG@10", "Recall@10", "Recall@20")
"""Metrics whose paired difference against ``eval_reference`` is reported."""

PAIRED_SAMPLED = ("HR@1", "NDCG@5")
"""Metrics of the sampled protocol whose paired difference against the retriever alone is reported."""


def paired_sampled(results: dict, base: str, systems: list[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """Paired differences on the sampled protocol (LLaRA): each of ``systems`` minus ``base``, HR@1 and
    NDCG@5 per user over the same users and the same sampled candidates (both come from
    :func:`llmrec.eval.protocols.sample_candidates` with one seed), resampled together.

    Args:
        results: {system: {"sampled": {"ranks": [B] 0-based ranks among the candidates}}}.
    Returns:
        {system: {"HR@1": [mean diff, lo, hi], "NDCG@5": [...]}} (95% percentile bootstrap,
        ``n_boot`` resamples); {} when ``base`` has no sampled ranks. Systems without sampled ranks,
        or over other users (a different count), are left out."""
    if "sampled" not in results.get(base, {}):
        return {}
    def per_metric(ranks) -> dict[str, np.ndarray]:
        r = np.asarray(ranks)
        return {"HR@1": recall_at_k(r, 1), "NDCG@5": ndcg_at_k(r, 5)}

    base_m = per_metric(results[base]["sampled"]["ranks"])
    out = {}
    for name in systems:
        ranks = results[name].get("sampled", {}).get("ranks")
        if ranks is not None and len(ranks) == len(base_m["HR@1"]):
            out[name] = {k: list(paired_diff_ci(v, base_m[k], n_boot, seed)) for k, v in per_metric(ranks).items()}
    return out


def _fmt(v: float, ci) -> str:
    return f"{v:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"


def _paired_table(title: str, systems: dict, keys: tuple[str, ...]) -> list[str]:
    """Markdown lines: ``title`` and a table of ``systems`` {name: {metric: [diff, lo, hi]}} over ``keys``."""
    lines = [f"{title} (same users resampled together; 95% bootstrap interval):", "",
             "| system | " + " | ".join(f"Δ {k}" for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, d in systems.items():
        lines.append(f"| {name} | " + " | ".join(f"{d[k][0]:+.4f} [{d[k][1]:+.4f}, {d[k][2]:+.4f}]" for k in keys) + " |")
    return lines + [""]


# long: the report's sections in reading order
def markdown(metrics: dict) -> str:
    d = metrics["dataset"]
    lines = [f"# llmrec eval: {d['name']}", "",
             f"{d['users']:,} users, {d['items']:,} items, {d['interactions']:,} interactions "
             f"(5-core, leave-one-out; split fingerprint `{d['fingerprint']}`).", "",
             "## Full ranking (LlamaRec protocol), test targets", "",
             "Mean over users, with the 95% bootstrap interval over users in brackets. "
             "History masked; score ties count against the target.", ""]
    cols = [c for c in HEADLINE if any(c in r for r in metrics["results"].values())]
    if metrics["results"]:
        lines += ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, r in metrics["results"].items():
            ci = metrics["intervals"][name]
            lines.append(f"| {name} | " + " | ".join(_fmt(r[c], ci[c]) for c in cols) + " |")
        lines.append("")
    if "sasrec_seeds" in metrics:
        s = metrics["sasrec_seeds"]
        lines += ["SASRec over seeds (mean ± std): " + ", ".join(
            f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in s.items()) +
            ". `sasrec` is the seed with the best VALIDATION NDCG@10.", ""]
    if metrics.get("vs_reference", {}).get("systems"):
        v = metrics["vs_reference"]
        lines += _paired_table(f"Paired difference against `{v['reference']}`", v["systems"], PAIRED)
    if metrics.get("vs_retriever", {}).get("systems"):
        v = metrics["vs_retriever"]
        lines += _paired_table(f"LLM systems: paired difference against the retriever alone, "
                               f"`{v['retriever']}`", v["systems"], PAIRED)
    bias = {n: d["position_bias"] for n, d in metrics["details"].items() if (d.get("position_bias") or {}).get("users")}
    if bias:
        lines += ["LLM position bias (the same test users' candidates shown in the retriever's order, reversed and "
                  "shuffled): Kendall's tau between the item rankings, and the share of users whose top pick is "
                  "label A (uniform: 1/candidates):", "",
                  "| ranker | users | tau (vs shuffled) | tau (vs reversed) | top = A: retriever order | reversed "
                  "| shuffled |", "|---|---|---|---|---|---|---|"]
        for name, b in bias.items():
            for label, x in ((name, b), (f"{name}, calibrated", b.get("calibrated"))):
                if x and x["users"]:
                    a = x["top_is_A"]
                    lines.append(f"| {label} | {x['users']} | {x['kendall_tau_shuffled']:.3f} | "
                                 f"{x['kendall_tau_reversed']:.3f} | {a['retriever']:.3f} | {a['reversed']:.3f} | "
                                 f"{a['shuffled']:.3f} |")
        lines += ["", "Calibrated: each label position's mean log-probability over the validation users subtracted "
                  "first; what is left is the LLM's preference among the items, so a tau near 0 there means the "
                  "LLM's order carries no item preference beyond the position prior.", ""]
    if metrics.get("published"):
        lines += ["Published (LlamaRec, Table 2, its \"ML-100k\" is ml-latest-small): " + "; ".join(
            f"{k}: NDCG@10 {v['NDCG@10']}, Recall@10 {v['Recall@10']}" for k, v in metrics["published"].items()), ""]
    if metrics["sampled"]:
        lines += ["## Sampled candidates (LLaRA protocol)", "",
                  f"{metrics['protocol']['sampled']['candidates']} candidates per user (target + negatives, "
                  "fixed seed). HR@1 counts an invalid answer as a miss; LLaRA's HR@1 divides by valid answers "
                  "only (both shown).", "", "| system | HR@1 | HR@1 (valid answers only) | NDCG@5 | valid ratio |",
                  "|---|---|---|---|---|"]
        for name, r in metrics["sampled"].items():
            vo = r.get("HR@1_valid_only")
            lines.append(f"| {name} | {_fmt(r['HR@1'], r['HR@1_ci'])} | {'n/a' if vo is None else f'{vo:.4f}'} "
                         f"| {r['NDCG@5']:.4f} | {r['valid_ratio']:.3f} |")
        lines.append("")
        ps = metrics.get("vs_retriever", {}).get("sampled")
        if ps:
            lines += _paired_table("LLM systems on these candidates: paired difference against the "
                                   f"retriever alone, `{metrics['vs_retriever']['retriever']}`", ps,
                                   PAIRED_SAMPLED)
    if metrics.get("modalities"):
        from llmrec.eval.modal_systems import report_lines

        m = metrics["modalities"]
        lines += report_lines({**m["setup"], "systems": m["systems"]}, m["summary"])
    if metrics.get("cold_items"):
        from llmrec.eval.cold_protocol import report_lines as cold_lines

        lines += cold_lines(metrics["cold_items"]) + [""]
    lines += ["## Details", "", "| system | details |", "|---|---|"]
    for name, det in metrics["details"].items():
        lines.append(f"| {name} | " + ", ".join(f"{k}={v}" for k, v in det.items()
                                                 if k not in ("grid", "position_bias")) + " |")
    lines += ["", "Plots: `metrics_at10.png` (bars with 95% intervals), `recall_vs_k.png`.", ""]
    return "\n".join(lines)


def plots(metrics: dict, results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    names = list(metrics["results"])
    if not names:
        return made
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) + 3), 4))
    w = 0.38
    for j, met in enumerate(("Recall@10", "NDCG@10")):
        vals = [metrics["results"][n][met] for n in names]
        lo = [v - metrics["intervals"][n][met][0] for n, v in zip(names, vals, strict=True)]
        hi = [metrics["intervals"][n][met][1] - v for n, v in zip(names, vals, strict=True)]
        ax.bar(np.arange(len(names)) + (j - 0.5) * w, vals, w, yerr=[lo, hi], capsize=3, label=met)
    ax.set_xticks(np.arange(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("mean over users (95% bootstrap CI)")
    ax.set_title(f"{metrics['dataset']['name']}: full ranking, leave-one-out")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "metrics_at10.png", dpi=120)
    plt.close(fig)
    made.append(out / "metrics_at10.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    ks = np.arange(1, 21)
    for n in names:
        r = np.asarray(results[n]["full"]["ranks"])
        ax.plot(ks, [(r < k).mean() for k in ks], marker=".", label=n)
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.set_xticks([1, 5, 10, 15, 20])
    ax.set_title(f"{metrics['dataset']['name']}: Recall@K")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "recall_vs_k.png", dpi=120)
    plt.close(fig)
    made.append(out / "recall_vs_k.png")
    return made


def write_all(metrics: dict, results: dict, out: str | Path, cfg: Config | None = None) -> None:
    """Write ``metrics.json``, ``report.md`` and the plots into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "report.md").write_text(markdown(metrics))
    plots(metrics, results, out)
