"""A second llmrec process for tests/store/test_shared_state.py: a replica over the same Chroma server.

Configured by the environment (``LLMREC_*``: chroma_host/port, its own data_dir, ...). Reads one
JSON command per line on stdin, writes one JSON reply per line on stdout:

* ``{"op": "answer", "users": [...], "llm_users": [...], "n": N, "k": K}``: per user its history
  and the retriever's top ``n`` (item ids, scores); per ``llm_users`` user the full
  ``recommend(user, k).to_dict()``.
* ``{"op": "ingest", "interactions": [[user, item, timestamp, rating or null], ...]}``: an ingest
  of those interactions (no items) through this process; replies the summary.
* ``{"op": "quit"}``.
Errors are replied as ``{"error": "Type: message"}``.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def answer(rec, users, llm_users, n, k) -> dict:
    out = {"history": {}, "candidates": {}, "recommend": {}}
    for u in users:
        try:
            hist = rec.history_of(u)
        except KeyError:  # UnknownUserError
            out["history"][u] = None
            continue
        rows, scores = rec.candidates(hist, n)
        out["history"][u] = hist
        out["candidates"][u] = [[rec.ids[r], float(s)] for r, s in zip(rows.tolist(), scores.tolist(), strict=True)]
    for u in llm_users:
        out["recommend"][u] = rec.recommend(u, k=k).to_dict()
    return out


def main() -> None:
    from llmrec.config import Config
    from llmrec.data.types import Dataset, Interaction
    from llmrec.ingest import ingest
    from llmrec.recommender import Recommender

    cfg = Config.load()
    rec = Recommender.load(config=cfg)
    print(json.dumps({"ready": True, "items": len(rec.ids)}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["op"] == "quit":
                break
            if cmd["op"] == "answer":
                reply = answer(rec, cmd["users"], cmd.get("llm_users", []), cmd["n"], cmd["k"])
            elif cmd["op"] == "ingest":
                rows = [Interaction(u, i, float(t), r) for u, i, t, r in cmd["interactions"]]
                reply = ingest(cfg, Dataset("replica-2", [], rows), log=lambda *_: None)
            else:
                reply = {"error": f"unknown op {cmd['op']!r}"}
        except Exception as e:  # reported to the test, which fails on it
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply, allow_nan=False), flush=True)


if __name__ == "__main__":
    main()
