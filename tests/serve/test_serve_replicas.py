"""Two `llmrec serve` replicas over one REAL `chroma run` server (issue 12).

One module-scoped setup: a `chroma run` server (tests/chroma_server.py), a real ml-100k slice
ingested into it from this process (its first 300 items, users 1-60: tests/store/test_shared_state.py's
slice), then two `llmrec serve` subprocesses on free ports, each with its own empty local data
directory and the same chroma_host/chroma_port, in the serve tests' small configuration (zero-shot
ranker, 5 candidates, grounded explanations, k 3). Asked through the openai client:

- the same conversation gets identical answers (text and the ``llmrec`` items) from either replica,
  also when its turns alternate between them (the server keeps no conversation);
- an ingest by a third process (this one) of a new user is seen by both: unknown on both before,
  the same recommendations on both after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import SMALL
from openai import OpenAI

from llmrec.data.types import Dataset
from tests.support.chroma_server import QUIET, ChromaServer, free_port

pytestmark = pytest.mark.slow  # two `llmrec serve` replicas over a `chroma run` server: about 1.5 minutes (make test-all)

NEW_USER = "61"
TURNS = ["I'm user 5", "why the second one?", "show more"]
START_TIMEOUT_S = 420  # both replicas load the LLM and warm up at once, on 2 busy cores


class Serve:
    """An `llmrec serve` subprocess over the Chroma server, its own empty ``--data-dir``."""

    def __init__(self, name: str, conf: Path, tmp: Path):
        self.name, self.port, self.log_path = name, free_port(), tmp / f"serve-{name}.log"
        (tmp / f"data-{name}").mkdir()
        self.data_dir = tmp / f"data-{name}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMREC_") or k == "LLMREC_HOME"}
        log = open(self.log_path, "wb")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen([sys.executable, "-m", "llmrec.cli", "serve", "--config", str(conf),
                                      "--data-dir", str(self.data_dir), "--port", str(self.port),
                                      "--log-level", "warning"],
                                     env={**env, **QUIET}, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
        log.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = OpenAI(base_url=f"{self.url}/v1", api_key="unused", timeout=180, max_retries=0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def ready(self) -> bool:
        assert self.proc.poll() is None, f"replica {self.name} exited with {self.proc.returncode}: {self.log()}"
        try:
            return httpx.get(f"{self.url}/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def ask(self, turns: list[str], answers: list[str]) -> dict:
        """The reply to ``turns[-1]``; ``answers``: the assistant messages before it (sent, not read)."""
        msgs = []
        for i, t in enumerate(turns):
            msgs.append({"role": "user", "content": t})
            if i < len(turns) - 1:
                msgs.append({"role": "assistant", "content": answers[i]})
        r = self.client.chat.completions.create(model="llmrec", messages=msgs)
        ext = r.model_extra["llmrec"]
        return {"content": r.choices[0].message.content, "items": ext["items"], "question": ext["question"],
                "meta": ext["meta"], "replayed": ext["timing"]["replayed_turns"]}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def same(a: dict, b: dict) -> bool:
    """Equal answers: everything but how many turns were replayed (a cache detail) and how long the
    turn took (``meta.seconds``)."""
    def strip(x: dict) -> dict:
        return {**{k: v for k, v in x.items() if k != "replayed"},
                "meta": {k: v for k, v in x["meta"].items() if k != "seconds"}}
    return strip(a) == strip(b)


@pytest.fixture(scope="module")
def setup(base_cfg, ml100k, tmp_path_factory):
    from llmrec.ingest import ingest

    tmp = tmp_path_factory.mktemp("replicas")
    items = ml100k.items[:300]
    keep = {i.id for i in items}
    rows = [x for x in ml100k.interactions if x.item in keep and x.user.isdigit() and int(x.user) <= 61]
    new = sorted((x for x in rows if x.user == NEW_USER), key=lambda x: (x.timestamp, int(x.item)))[:5]
    assert len(new) == 5
    (tmp / "chroma").mkdir()
    chroma = ChromaServer(tmp / "chroma")
    chroma.start()
    replicas: list[Serve] = []
    try:
        cfg = base_cfg.replace(data_dir=tmp / "ingester", chroma_host=chroma.host, chroma_port=chroma.port,
                               threads=1)
        summary = ingest(cfg, Dataset("ml-100k-capped", items, [x for x in rows if x.user != NEW_USER]),
                         log=lambda *_: None)
        assert summary["items_in_store"] == 300
        conf = tmp / "serve.yaml"
        conf.write_text(yaml.safe_dump({**SMALL, "threads": 1, "chroma_host": chroma.host,
                                        "chroma_port": chroma.port}))
        replicas = [Serve("A", conf, tmp), Serve("B", conf, tmp)]
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = list(replicas)
        while waiting:
            waiting = [r for r in waiting if not r.ready()]
            assert time.monotonic() < deadline, f"replica(s) not up in {START_TIMEOUT_S} s: " + \
                "; ".join(f"{r.name}: {r.log()}" for r in waiting)
            time.sleep(0.5)
        yield {"a": replicas[0], "b": replicas[1], "cfg": cfg, "items": items, "new": new}
    finally:
        for r in replicas:
            r.stop()
        chroma.stop()


def converse(order: list[Serve]) -> list[dict]:
    """TURNS, turn i sent to ``order[i]``, each request carrying the conversation so far."""
    replies: list[dict] = []
    for i, replica in enumerate(order):
        replies.append(replica.ask(TURNS[: i + 1], [r["content"] for r in replies]))
    return replies


def test_replicas_answer_alike_and_turns_may_alternate_between_them(setup):
    a, b = setup["a"], setup["b"]
    aba = converse([a, b, a])  # B answers turn 2 without ever having seen turn 1
    assert aba[1]["replayed"] == 2  # B replayed the whole conversation: it holds no state of its own
    bab = converse([b, a, b])
    for turn, x, y in zip(TURNS, aba, bab, strict=True):
        assert same(x, y), f"{turn!r}: replica A and replica B answered differently:\n{x}\n{y}"
    only_a = converse([a, a, a])
    assert all(same(x, y) for x, y in zip(aba, only_a, strict=True))

    # The answers are the real ones: 3 items, the second one explained, then 3 more, none repeated.
    first, why, more = aba
    assert first["content"].startswith("Hello, user 5") and len(first["items"]) == SMALL["k"]
    assert first["question"] is None and first["meta"]["action"] == "recommend"
    second = first["items"][1]
    assert why["content"].startswith(second["title"]) and why["items"] == [second]
    assert len(more["items"]) == SMALL["k"]
    assert not {i["item_id"] for i in more["items"]} & {i["item_id"] for i in first["items"]}


def test_an_ingest_by_a_third_process_is_seen_by_both_replicas(setup):
    from llmrec.ingest import ingest

    a, b = setup["a"], setup["b"]
    hello = [f"I'm user {NEW_USER}"]
    before = [a.ask(hello, []), b.ask(hello, [])]
    for r in before:
        assert r["content"] == f"I don't know user {NEW_USER!r}: no ratings are stored for that id."
        assert r["items"] == [] and r["meta"]["action"] == "error"

    new = setup["new"]
    got = ingest(setup["cfg"], Dataset("more", [], new), log=lambda *_: None)  # this process: the third
    assert got["interactions_in_store"] > len(new)

    after_a, after_b = a.ask(hello, []), b.ask(hello, [])
    assert same(after_a, after_b), f"the replicas differ after the ingest:\n{after_a}\n{after_b}"
    assert after_a["content"].startswith(f"Hello, user {NEW_USER}: I'll start from the {len(new)} movies")
    assert len(after_a["items"]) == SMALL["k"] and after_a["meta"]["action"] == "recommend"
    assert not {i["item_id"] for i in after_a["items"]} & {x.item for x in new}  # never their own history
    # Nothing a replica answers from is local.
    assert not (a.data_dir / "interactions.csv").exists() and not (b.data_dir / "interactions.csv").exists()
