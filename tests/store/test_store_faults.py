"""The store when its Chroma server stops answering or dies, and when another process writes.

Real `chroma run` servers (tests/chroma_server.py) paused with SIGSTOP or killed with SIGKILL, real
`llmrec ingest` subprocesses, the real text encoder:

* a paused server: every call raises ``StoreUnavailableError`` within ``chroma_timeout_s`` (not
  after the server resumes), ``llmrec serve`` answers 503 with ``Retry-After``, and all works again
  once the server resumes;
* an embedded store: a long-lived ``Recommender`` (what ``llmrec serve`` holds) sees another
  process's ``llmrec ingest`` (new item, new user) without being rebuilt;
* a server killed mid-ingest: exit code 2 and the rerun hint, no traceback; the rerun on the
  restarted server completes, nothing lost or duplicated.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmrec.data.types import Dataset, Interaction, Item
from llmrec.errors import StoreError, UnknownUserError
from tests.support.chroma_server import QUIET, running

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 1.5
SLACK_S = 3.0
"""How much longer than ``chroma_timeout_s`` a call may take to fail (the timeout is per HTTP call)."""


@pytest.fixture
def server(tmp_path):
    """A fresh `chroma run` server on its own folder; stopped after the test."""
    with running(tmp_path / "server") as srv:
        yield srv


def _films(n: int, start: int = 1) -> list[Item]:
    topics = ("ships", "cats", "kings", "storms", "trains")
    return [Item(str(i), f"Film {i}", f"a story about {topics[i % 5]} and number {i}") for i in range(start, start + n)]


def _write_catalog(folder: Path, items: list[Item], rows: list[Interaction]) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cat, inter = folder / "items.jsonl", folder / "interactions.csv"
    cat.write_text("".join(json.dumps({"id": it.id, "title": it.title, "text": it.text}) + "\n" for it in items))
    inter.write_text("user,item,timestamp,rating\n" + "".join(
        f"{r.user},{r.item},{r.timestamp!r},{'' if r.rating is None else r.rating}\n" for r in rows))
    return cat, inter


def _cli_ingest(cfg, cat: Path, inter: Path, data_dir: Path, cwd: Path, server=None) -> subprocess.Popen:
    """``llmrec ingest --catalog --interactions --data-dir`` in a subprocess (stdout, stderr piped)."""
    env = {**os.environ, **QUIET, "LLMREC_HOME": str(cfg.home), "PYTHONPATH": str(ROOT), "LLMREC_THREADS": "1"}
    for key in ("LLMREC_CONFIG", "LLMREC_DATA_DIR", "LLMREC_CHROMA_HOST", "LLMREC_CHROMA_PORT"):
        env.pop(key, None)
    if server is not None:
        env.update(LLMREC_CHROMA_HOST=server.host, LLMREC_CHROMA_PORT=str(server.port))
    return subprocess.Popen([sys.executable, "-m", "llmrec.cli", "ingest", "--catalog", str(cat), "--interactions",
                             str(inter), "--data-dir", str(data_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def _fails_in_time(call, what: str) -> StoreError:
    """``call()`` must raise StoreError within TIMEOUT_S + SLACK_S; returns it."""
    from llmrec.store import StoreUnavailableError

    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError) as got:
        call()
    took = time.monotonic() - t0
    print(f"\n[paused server] {what}: StoreUnavailableError after {took:.2f} s (chroma_timeout_s {TIMEOUT_S:g})")
    assert took < TIMEOUT_S + SLACK_S, f"{what}: failed only after {took:.1f} s (chroma_timeout_s {TIMEOUT_S})"
    return got.value


# ------------------------------------------------------------------ finding 4: a paused server
def test_a_paused_server_gives_store_error_within_the_timeout_and_503_then_recovers(base_cfg, server, tmp_path):
    from fastapi.testclient import TestClient

    from llmrec.ingest import ingest
    from llmrec.recommender import Recommender
    from llmrec.serve import create_app
    from llmrec.store import ItemStore, open_client

    cfg = base_cfg.replace(data_dir=tmp_path / "d", chroma_host=server.host, chroma_port=server.port, threads=1,
                           chroma_timeout_s=TIMEOUT_S, chroma_recheck_s=0.0)
    rows = [Interaction(f"u{u}", str((u + j) % 8 + 1), float(10 * u + j)) for u in range(4) for j in range(3)]
    ingest(cfg, Dataset("t", _films(8), rows), log=lambda *_: None)
    rec = Recommender.load(config=cfg)
    before = rec.history_of("u1")
    store = ItemStore(None, "text", server.host, server.port, TIMEOUT_S)
    client = TestClient(create_app(rec, cfg))
    where = f"{server.host}:{server.port}"

    with server.paused(at_most_s=60):
        e = _fails_in_time(lambda: rec.history_of("u1"), "Recommender.history_of")
        assert where in str(e) and "chroma_timeout_s" in str(e) and f"{TIMEOUT_S:g} s" in str(e)
        assert "change stamp" in str(e) and "paused or overloaded" in str(e)
        _fails_in_time(store.count, "ItemStore.count")
        _fails_in_time(lambda: open_client(None, server.host, server.port, TIMEOUT_S), "open_client")
        t0 = time.monotonic()
        r = client.post("/v1/chat/completions",
                        json={"model": cfg.serve_model_name, "messages": [{"role": "user", "content": "I loved Film 2"}]})
        assert time.monotonic() - t0 < TIMEOUT_S + SLACK_S
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "store_unavailable" and where in r.json()["error"]["message"]
        assert int(r.headers["Retry-After"]) >= 1

    assert rec.history_of("u1") == before  # resumed: the same state, no reload needed
    assert rec.refresh(force=True) is False and store.count() == 8
    assert open_client(None, server.host, server.port, TIMEOUT_S).list_collections()


# ------------------------------------------------------------------ finding 5: embedded, another process
def test_a_long_lived_embedded_recommender_sees_another_process_ingest(base_cfg, tmp_path):
    from llmrec.ingest import ingest
    from llmrec.recommender import Recommender

    data = tmp_path / "store"
    cfg = base_cfg.replace(data_dir=data, threads=1)
    rows = [Interaction(f"u{u}", str((u * 3 + j) % 12 + 1), float(100 * u + j), 4.0) for u in range(5) for j in range(4)]
    ingest(cfg, Dataset("t", _films(12), rows), log=lambda *_: None)
    rec = Recommender.load(config=cfg)  # what `llmrec serve` holds for its lifetime
    assert len(rec.ids) == 12 and "13" not in rec.index
    with pytest.raises(UnknownUserError):
        rec.history_of("newbie")

    # Another process ingests a new item and a new user (and one more interaction of u1) into the same folder.
    new_rows = [Interaction("newbie", "13", 5000.0, 5.0), Interaction("newbie", "2", 5001.0, 3.0),
                Interaction("u1", "13", 6000.0, 4.0)]
    cat, inter = _write_catalog(tmp_path / "more", [*_films(12), Item("13", "Film 13", "a story about owls")], new_rows)
    proc = _cli_ingest(cfg, cat, inter, data, tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]

    assert rec.history_of("newbie") == ["13", "2"]  # no rebuild: the stamp changed, the Recommender reloaded
    assert rec.history_of("u1")[-1] == "13" and rec.item("13").title == "Film 13" and len(rec.ids) == 13
    rows13, _ = rec.candidates(["13"], 5)
    assert len(rows13) == 5 and rec.index["13"] not in rows13.tolist()
    assert abs(float((rec.vectors[rec.index["13"]] ** 2).sum()) - 1.0) < 1e-4  # its real vector was read

    times = []
    for _ in range(100):
        t = time.perf_counter()
        assert rec.refresh(force=True) is False
        times.append(time.perf_counter() - t)
    med = statistics.median(times) * 1e3
    print(f"\n[embedded stamp] check median {med:.2f} ms, p95 {sorted(times)[94] * 1e3:.2f} ms (100 checks)")
    assert med < 50


# ------------------------------------------------------------------ finding 6: a server killed mid-ingest
@pytest.mark.slow  # a long end-to-end run (make test-all)
def test_a_server_killed_mid_ingest_exits_2_with_the_rerun_hint_and_the_rerun_completes(base_cfg, server, tmp_path):
    from llmrec.store import ChangeStamp, open_client
    from llmrec.store.interactions import ChromaInteractions

    items = _films(700)  # three chunks of encode+upsert (256 items each): killed after the first is written
    rows = [Interaction(f"u{u}", str((u * 7 + j * 13) % 700 + 1), float(1000 * u + j), float(j % 5 + 1))
            for u in range(60) for j in range(10)]
    cat, inter = _write_catalog(tmp_path / "cat", items, rows)
    data = tmp_path / "d"
    proc = _cli_ingest(base_cfg, cat, inter, data, tmp_path, server)
    watcher = open_client(None, server.host, server.port, 5.0)
    deadline = time.monotonic() + 300
    while True:
        col = watcher.get_collection("items_text")
        if col is not None and col.count() > 0:
            break
        assert proc.poll() is None, f"the ingest ended before it wrote: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "the ingest wrote nothing in 300 s"
        time.sleep(0.02)
    server.stop(kill=True)  # SIGKILL while the ingest encodes its next chunk
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, f"exit {proc.returncode}: {err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    last = [line[line.index("llmrec: error:"):] for line in err.replace("\r", "\n").splitlines()
            if "llmrec: error:" in line]  # (after a progress bar's carriage return)
    assert len(last) == 1, err[-3000:]
    assert f"the Chroma server at {server.host}:{server.port} failed while" in last[-1]
    assert "mid-ingest" in last[-1] and "nothing written is lost" in last[-1]
    assert "run the same `llmrec ingest` again to complete it" in last[-1]

    server.start()  # the same folder and port
    client = open_client(None, server.host, server.port, 5.0)
    written = client.get_collection("items_text").count()
    assert 0 < written < len(items)  # cut off midway
    stamp = ChangeStamp(client).read()
    proc = _cli_ingest(base_cfg, cat, inter, data, tmp_path, server)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert f"holds {len(items)} items and {len(rows)} interactions" in out, out
    assert client.get_collection("items_text").count() == len(items)
    stored = ChromaInteractions(client)
    assert stored.count() == len(rows) and set(stored.read()) == set(rows)  # complete, nothing twice
    assert ChangeStamp(client).read() != stamp
