"""Shared state for replicas: two processes over one REAL `chroma run` server.

Everything a replica needs to answer (items, interactions, the change stamp) lives on the server:
two processes, each with its own empty local data directory, answer alike, and an ingest through
either is seen by the other. The server is started here (127.0.0.1, a free port) and stopped here.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmrec.data.types import Dataset, Interaction, Item
from llmrec.errors import DataError, ModelError, StoreError, UnknownUserError
from tests.support.chroma_server import QUIET, running

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parents[1] / "support" / "shared_state_worker.py"


@pytest.fixture
def server(tmp_path):
    """A fresh `chroma run` server on its own folder; stopped after the test."""
    with running(tmp_path / "server") as srv:
        yield srv


@pytest.fixture
def chroma_server(server):
    """(host, port) of :func:`server`."""
    return server.host, server.port


def _cfg(base_cfg, server, data_dir, **kw):
    host, port = server
    return base_cfg.replace(data_dir=data_dir, chroma_host=host, chroma_port=port, threads=1, **kw)


@pytest.fixture(scope="module")
def capped(ml100k) -> tuple[Dataset, list[Interaction]]:
    """A real slice of ml-100k: its first 300 items, users 1-60 (eval_max_users-style capping);
    and, held back, user 1's last 5 interactions plus 5 of user 61's (a user not ingested yet)."""
    items = ml100k.items[:300]
    keep = {i.id for i in items}
    rows = [x for x in ml100k.interactions if x.item in keep and x.user.isdigit() and int(x.user) <= 61]
    u1 = sorted((x for x in rows if x.user == "1"), key=lambda x: (x.timestamp, int(x.item)))
    held = u1[-5:] + [x for x in rows if x.user == "61"][:5]
    held_set = set(held)
    return Dataset("ml-100k-capped", items, [x for x in rows if x not in held_set and x.user != "61"]), held


class Replica:
    """The second process (tests/shared_state_worker.py), driven by JSON lines."""

    def __init__(self, cfg, tmp_path):
        env = {**os.environ, **QUIET, "LLMREC_HOME": str(cfg.home), "LLMREC_DATA_DIR": str(tmp_path / "replica2"),
               "LLMREC_CHROMA_HOST": cfg.chroma_host, "LLMREC_CHROMA_PORT": str(cfg.chroma_port),
               "LLMREC_THREADS": "1", "LLMREC_CANDIDATES": str(cfg.candidates),
               "LLMREC_HISTORY_MAX": str(cfg.history_max), "LLMREC_EXPLAIN": cfg.explain,
               "PYTHONPATH": str(ROOT)}
        env.pop("LLMREC_CONFIG", None)
        self.err = open(tmp_path / "replica2.err", "w+")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, env=env, cwd=tmp_path)
        self.ready = self._reply()

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.err.seek(0)
            pytest.fail(f"replica 2 died (exit {self.proc.poll()}): {self.err.read()[-3000:]}")
        reply = json.loads(line)
        assert "error" not in reply, reply["error"]
        return reply

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def _answer(rec, users, llm_users, n, k) -> dict:
    """What the worker's ``answer`` replies, computed in this process (through JSON, like it)."""
    sys.path.insert(0, str(WORKER.parent))
    try:
        from shared_state_worker import answer
    finally:
        sys.path.pop(0)
    return json.loads(json.dumps(answer(rec, users, llm_users, n, k), allow_nan=False))


@pytest.mark.slow  # loads the LLM in two processes: about 2 minutes on 2 busy cores
def test_two_replicas_answer_alike_and_each_sees_the_others_ingest(base_cfg, chroma_server, capped, tmp_path):
    from llmrec.ingest import ingest
    from llmrec.recommender import Recommender

    ds, held = capped
    cfg = _cfg(base_cfg, chroma_server, tmp_path / "replica1", candidates=5, history_max=5)
    t0 = time.perf_counter()
    summary = ingest(cfg, ds, log=lambda *_: None)
    t_ingest = time.perf_counter() - t0
    assert summary["items_in_store"] == 300 and summary["interactions_in_store"] == len(ds.interactions)

    rec1 = Recommender.load(config=cfg)
    assert rec1.retriever_name == "item-knn"
    users = [str(u) for u in range(1, 21)] + ["61"]
    llm_users = ["1", "2", "3"]
    replica = Replica(cfg, tmp_path)
    try:
        assert replica.ready["items"] == 300
        mine = _answer(rec1, users, llm_users, 20, 5)
        theirs = replica.ask(op="answer", users=users, llm_users=llm_users, n=20, k=5)
        assert theirs == mine  # histories, candidates and scores, full recommendations: identical
        assert mine["history"]["61"] is None and len(mine["candidates"]["1"]) == 20
        assert all(len(mine["recommend"][u]["items"]) == 5 for u in llm_users)

        # Replica 2 ingests user 1's held-back interactions and a new user: replica 1 sees them.
        old_hist = mine["history"]["1"]
        got = replica.ask(op="ingest", interactions=[[x.user, x.item, x.timestamp, x.rating] for x in held])
        assert got["interactions_in_store"] == len(ds.interactions) + len(held)
        new_hist = rec1.history_of("1")  # refresh: the stamp changed
        assert new_hist[:len(old_hist)] == old_hist and set(new_hist[len(old_hist):]) == {x.item for x in held[:5]}
        assert rec1.history_of("61") == [x.item for x in sorted(held[5:], key=lambda x: (x.timestamp, int(x.item)))]
        after = _answer(rec1, users, llm_users, 20, 5)
        assert after["candidates"]["1"] != mine["candidates"]["1"]
        now_seen = {x.item for x in held[:5]}  # user 1's new history: never recommended to them
        assert not {i for i, _ in after["candidates"]["1"]} & now_seen
        assert not {r["item_id"] for r in after["recommend"]["1"]["items"]} & now_seen
        assert after["history"]["61"] and after["candidates"]["61"]
        assert replica.ask(op="answer", users=users, llm_users=llm_users, n=20, k=5) == after

        # Replica 1 ingests more: replica 2 (loaded before) sees it.
        extra = [Interaction("u-new", ds.items[0].id, 1e9, 4.0), Interaction("u-new", ds.items[1].id, 1e9 + 1, None)]
        ingest(cfg, Dataset("more", [], extra), log=lambda *_: None)
        seen = replica.ask(op="answer", users=["u-new", "1"], n=20, k=5)
        assert seen["history"]["u-new"] == [ds.items[0].id, ds.items[1].id]
        assert seen == _answer(rec1, ["u-new", "1"], [], 20, 5)

        # The per-request freshness check: one small get of the change stamp.
        times = []
        for _ in range(200):
            t = time.perf_counter()
            assert rec1.refresh(force=True) is False
            times.append(time.perf_counter() - t)
        med = statistics.median(times) * 1e3
        print(f"\n[shared state] ingest of {summary['interactions_in_store']} interactions + 300 items: "
              f"{t_ingest:.1f} s; freshness check median {med:.2f} ms, "
              f"p95 {sorted(times)[189] * 1e3:.2f} ms (200 checks)")
        assert med < 100
    finally:
        replica.close()
    assert replica.proc.returncode == 0
    # Nothing either replica needs is local: no interactions file in either data directory.
    assert not (tmp_path / "replica1" / "interactions.csv").exists()
    assert not (tmp_path / "replica2" / "interactions.csv").exists()


def test_reingest_is_idempotent_and_bad_input_loses_nothing(base_cfg, chroma_server, tmp_path):
    from llmrec.ingest import ingest
    from llmrec.recommender import Recommender
    from llmrec.store import ChangeStamp, ItemStore, open_client
    from llmrec.store.interactions import ChromaInteractions, interaction_id

    items = [Item(str(i), f"Film {i}", f"a story about {('ships', 'cats', 'kings')[i % 3]}") for i in range(1, 13)]
    rows = [Interaction(f"u{u}", str((u * 5 + j) % 12 + 1), 1000.0 * u + j, [None, 3.5][j % 2])
            for u in range(6) for j in range(5)]
    rows += [rows[0], Interaction("u0", rows[0].item, rows[0].timestamp, 1.0)]  # the same key twice more
    cfg = _cfg(base_cfg, chroma_server, tmp_path / "d")
    first = ingest(cfg, Dataset("t", items, rows), log=lambda *_: None)
    assert first["interactions_in_store"] == 30 and first["items_in_store"] == 12
    client = open_client(None, *chroma_server)
    stored = ChromaInteractions(client)
    stamp = ChangeStamp(client).read()
    assert stamp is not None
    back = stored.read()
    assert len(back) == 30 and set(back) == set(rows[:30])  # ratings (and missing ones) kept exactly
    assert back == sorted(back, key=lambda x: (x.timestamp, int(x.item), x.user))
    assert {interaction_id(x.user, x.item, x.timestamp) for x in rows} == set(stored.collection.get(include=[])["ids"])

    again = ingest(cfg, Dataset("t", items, rows), log=lambda *_: None)
    assert again["interactions_in_store"] == 30 and again["items_unchanged"] == 12 and stored.count() == 30
    assert ChangeStamp(client).read() == stamp  # nothing written: replicas need not reload

    # Bad input is refused before anything is written; what is stored stays.
    with pytest.raises(DataError, match="timestamp must be finite"):
        ingest(cfg, Dataset("bad", [Item("99", "New")], [Interaction("u9", "1", 1.0), Interaction("u9", "2", math.nan)]))
    with pytest.raises(StoreError, match="user and item must be non-empty strings"):
        ingest(cfg, Dataset("bad", [Item("99", "New")], [Interaction("u9", "1", 1.0), Interaction("", "2", 2.0)]))
    with pytest.raises(StoreError, match="user and item must be non-empty strings"):
        stored.add([Interaction("u9", "1", 5.0), Interaction("u9", 2, 6.0)])
    with pytest.raises(StoreError, match="rating must be a finite number"):
        stored.add([Interaction("u9", "1", 5.0), Interaction("u9", "2", 6.0, math.inf)])
    assert stored.count() == 30 and ItemStore(None, "text", *chroma_server).count() == 12
    assert ChangeStamp(client).read() == stamp

    # A local interactions.csv from before interactions moved to the server is added, and kept.
    from llmrec.store.interactions import write_interactions

    legacy = [rows[0], Interaction("legacy", "3", 7.0, 2.0)]
    write_interactions(tmp_path / "d" / "interactions.csv", legacy)
    assert ingest(cfg, Dataset("t", items, []), log=lambda *_: None)["interactions_in_store"] == 31
    assert (tmp_path / "d" / "interactions.csv").exists() and ChangeStamp(client).read() != stamp
    (tmp_path / "d" / "interactions.csv").unlink()

    rec = Recommender.load(config=cfg)
    assert rec.history_of("legacy") == ["3"]
    assert rec.history_of("u1") == [x.item for x in sorted(rows[5:10], key=lambda x: (x.timestamp, int(x.item)))]
    with pytest.raises(UnknownUserError):
        rec.history_of("u9")


def test_an_ingest_cut_off_midway_loses_nothing_and_completes_when_run_again(base_cfg, server, tmp_path):
    # The server dies (SIGKILL) while an ingest writes its interactions, batch by batch.
    import threading

    from llmrec.ingest import ingest
    from llmrec.store import open_client
    from llmrec.store.interactions import ChromaInteractions

    items = [Item(str(i), f"Film {i}") for i in range(1, 41)]
    old = [Interaction(f"old{u}", str(u % 40 + 1), float(u)) for u in range(100)]
    cfg = _cfg(base_cfg, (server.host, server.port), tmp_path / "d")
    ingest(cfg, Dataset("t", items, old), log=lambda *_: None)
    stored = ChromaInteractions(open_client(None, server.host, server.port))
    step = stored.step
    new = [Interaction(f"n{n // 40}", str(n % 40 + 1), 1e6 + n, 4.0) for n in range(3 * step)]
    failed = []

    def run():
        try:
            ingest(cfg, Dataset("more", items, new), log=lambda *_: None)
        except Exception as e:
            failed.append(e)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 300
    while stored.count() <= len(old):  # the first batch is in: cut the power
        assert t.is_alive() and time.monotonic() < deadline, "the ingest ended before it could be cut off"
        time.sleep(0.02)
    server.stop(kill=True)
    t.join(120)
    assert failed and isinstance(failed[0], StoreError), failed
    assert f"{server.host}:{server.port}" in str(failed[0]) or "interactions" in str(failed[0])

    server.start()
    stored = ChromaInteractions(open_client(None, server.host, server.port))
    back = set(stored.read())
    assert set(old) <= back and len(old) < len(back) < len(old) + len(new)  # a prefix of the new rows, old ones all kept
    done = ingest(cfg, Dataset("more", items, new), log=lambda *_: None)
    assert done["interactions_in_store"] == len(old) + len(new) == stored.count()
    assert set(stored.read()) == set(old) | set(new)


def test_a_replica_uses_no_local_trained_state(base_cfg, chroma_server, tmp_path):
    # {data_dir}/retriever and {data_dir}/ranker exist on one machine only: with a server they are
    # not used (both replicas fall back to item-kNN and zero-shot), whereas an embedded store reads them.
    from llmrec.ingest import ingest
    from llmrec.recommender import Recommender

    items = [Item(str(i), f"Film {i}") for i in range(1, 9)]
    rows = [Interaction(f"u{u}", str((u + j) % 8 + 1), float(10 * u + j)) for u in range(5) for j in range(4)]
    with_folder, without = tmp_path / "a", tmp_path / "b"
    cfg = _cfg(base_cfg, chroma_server, with_folder)
    ingest(cfg, Dataset("t", items, rows), log=lambda *_: None)
    for sub in ("retriever", "ranker"):
        (with_folder / sub).mkdir()
        (with_folder / sub / "manifest.json").write_text("{ damaged")
    with pytest.warns(UserWarning, match="not used: with chroma_host set"):
        a = Recommender.load(config=cfg)
    b = Recommender.load(config=cfg.replace(data_dir=without))
    assert a.retriever_name == b.retriever_name == "item-knn" and a.trained_ranker is None
    hist = a.history_of("u1")
    assert [a.ids[r] for r in a.candidates(hist, 5)[0]] == [b.ids[r] for r in b.candidates(hist, 5)[0]]
    with pytest.raises(ModelError, match="ranker_dir"):
        _ = Recommender.load(config=cfg.replace(data_dir=without, ranker="trained")).trained_ranker

    # The embedded store of the same folder does read it (so the test above can fail).
    local = base_cfg.replace(data_dir=tmp_path / "embedded")
    ingest(local, Dataset("t", items, rows), log=lambda *_: None)
    (tmp_path / "embedded" / "retriever").mkdir()
    (tmp_path / "embedded" / "retriever" / "manifest.json").write_text("{ damaged")
    with pytest.raises(ModelError, match="retriever manifest"):
        Recommender.load(config=local)


def test_refresh_is_throttled_and_a_bad_recheck_interval_is_refused(base_cfg, chroma_server, tmp_path):
    from llmrec.errors import ConfigError
    from llmrec.ingest import ingest
    from llmrec.recommender import Recommender

    items = [Item(str(i), f"Film {i}") for i in range(1, 6)]
    cfg = _cfg(base_cfg, chroma_server, tmp_path / "d", chroma_recheck_s=3600.0)
    ingest(cfg, Dataset("t", items, [Interaction("u", "1", 1.0)]), log=lambda *_: None)
    rec = Recommender.load(config=cfg)
    ingest(cfg, Dataset("t", [], [Interaction("u", "2", 2.0)]), log=lambda *_: None)
    assert rec.history_of("u") == ["1"]  # checked less than an hour ago: not yet
    assert rec.refresh(force=True) is True and rec.history_of("u") == ["1", "2"]
    assert rec.refresh(force=True) is False
    with pytest.raises(ConfigError, match="chroma_recheck_s"):
        Recommender.load(config=cfg.replace(chroma_recheck_s=-1.0))
