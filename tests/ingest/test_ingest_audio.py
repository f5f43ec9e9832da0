"""Ingest of audio: a small catalog of the 10 real clips plus a non-audio file, a missing file and a
silent file; vectors, transcripts (audio and text collections), failures recorded, rerun skips
what is stored, and nothing stored is lost."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from llmrec.cli import main
from llmrec.config import Config
from llmrec.data.catalog import load_catalog
from llmrec.ingest import ingest
from llmrec.ingest.audio import audio_wanted
from llmrec.ingest.media import FAILURES_FILE, read_failures
from llmrec.prepare import prepare_whisper
from llmrec.store import ItemStore, kinds

pytestmark = pytest.mark.slow  # Whisper over 10 real clips, kills and reruns: about 4 minutes (make test-all)

AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "audio"
CLIPS = sorted(AUDIO.glob("*.ogg"))
SPEECH = {"198-209-0000", "3436-172162-0000", "5703-47212-0000"}
BAD = {"bad": "not an audio file", "gone": "no such file", "hush": "silent"}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("audio_catalog")
    (root / "a").mkdir()
    rows = []
    for p in CLIPS:
        shutil.copy(p, root / "a" / p.name)
        rows.append({"id": p.stem, "title": p.stem.replace("_", " "), "audio": f"a/{p.name}"})
    (root / "a" / "bad.ogg").write_text("this is a text file, not a recording\n" * 30)
    sf.write(str(root / "a" / "hush.wav"), np.zeros((3 * 44100, 2), np.float32), 44100)
    rows += [{"id": "bad", "title": "Bad", "audio": "a/bad.ogg"}, {"id": "gone", "title": "Gone", "audio": "a/gone.ogg"},
             {"id": "hush", "title": "Hush", "audio": "a/hush.wav"}, {"id": "plain", "title": "Plain", "text": "No audio."}]
    path = root / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cfg(base_cfg, tmp_path_factory):
    c = base_cfg.replace(encode_batch_size=4, threads=1, audio_max_seconds=20.0,
                         data_dir=tmp_path_factory.mktemp("audio_store"))
    prepare_whisper(c, log=lambda *_: None)
    return c


@pytest.fixture(scope="module")
def full(cfg, catalog):
    ds, _ = load_catalog(catalog)
    return ingest(cfg, ds, log=lambda *_: None)


def test_auto_and_flags(catalog):
    ds, _ = load_catalog(catalog)
    assert audio_wanted(Config.load(env={}), ds)
    assert not audio_wanted(Config.load(env={}, overrides={"ingest_audio": False}), ds)


def test_vectors_transcripts_and_failures(full, cfg):
    assert full["audio_ingested"] and full["audio"] == 13
    assert full["audio_encoded"] == 10 and full["audio_failed"] == 3 and full["audio_in_store"] == 10
    ids, vecs, metas = ItemStore(cfg.store_dir(), "audio").matrix()
    assert sorted(ids) == sorted(p.stem for p in CLIPS)
    assert vecs.shape == (10, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    by_id = dict(zip(ids, metas, strict=True))
    for i, m in by_id.items():
        assert m["encoder"] == full["audio_encoder"] and len(m["audio_sha256"]) == 64
        assert m["source_rate"] == 22050 and m["channels"] == 1 and 0 < m["seconds"] <= 20.0
        if i in SPEECH:
            assert len(m["transcript"].split()) > 20, (i, m["transcript"])
        elif i != "Karissa_Hobbs_-_Lets_Go_Fishin":
            assert m["transcript"] == "", (i, m["transcript"])
    assert by_id["Karissa_Hobbs_-_Lets_Go_Fishin"]["audio_truncated"]
    assert not by_id["198-209-0000"]["audio_truncated"]
    # the text fallback: speech transcripts in the text collection; none for items without speech
    text = ItemStore(cfg.store_dir(), "text").metadata(ids + ["plain", "bad"])
    assert text["3436-172162-0000"]["transcript"] == by_id["3436-172162-0000"]["transcript"]
    assert "transcript" not in text["sorohanro_-_solo-trumpet-06"] and "transcript" not in text["plain"]
    recs = {r["item"]: r for r in read_failures(cfg.store_dir() / FAILURES_FILE) if r["kind"] == "audio"}
    assert set(recs) == set(BAD)
    for i, why in BAD.items():
        assert why in recs[i]["reason"] and recs[i]["path"].endswith(("bad.ogg", "gone.ogg", "hush.wav"))


def test_rerun_skips_and_loses_nothing(full, cfg, catalog):
    store = ItemStore(cfg.store_dir(), "audio")
    before_ids, before_vecs, before_metas = store.matrix()
    text_before = ItemStore(cfg.store_dir(), "text").matrix()
    ds, _ = load_catalog(catalog)
    again = ingest(cfg, ds, log=lambda *_: None)
    assert again["audio_encoded"] == 0 and again["audio_unchanged"] == 10 and again["audio_failed"] == 3
    after_ids, after_vecs, after_metas = store.matrix()
    assert after_ids == before_ids and np.array_equal(after_vecs, before_vecs) and after_metas == before_metas
    text_after = ItemStore(cfg.store_dir(), "text").matrix()
    assert text_after[0] == text_before[0] and text_after[2] == text_before[2]  # transcripts kept
    assert again["items_unchanged"] == len(ds.items)
    assert len(read_failures(cfg.store_dir() / FAILURES_FILE)) == 3  # not duplicated


def test_removed_audio_is_deleted_and_no_audio_flag(cfg, catalog, tmp_path, capsys):
    rows = [json.loads(x) for x in catalog.read_text().splitlines()]
    keep = [r for r in rows if r["id"] in ("198-209-0000", "plain")]
    small = catalog.parent / "small.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in keep))
    c = cfg.replace(data_dir=tmp_path / "s")
    ingest(c, load_catalog(small)[0], log=lambda *_: None)
    assert ItemStore(c.store_dir(), "audio").count() == 1
    keep[0] = {k: v for k, v in keep[0].items() if k != "audio"}
    small.write_text("".join(json.dumps(r) + "\n" for r in keep))
    out = ingest(c, load_catalog(small)[0], log=lambda *_: None, audio=True)
    assert out["audio_removed"] == 1 and ItemStore(c.store_dir(), "audio").count() == 0
    assert "transcript" not in ItemStore(c.store_dir(), "text").metadata(["198-209-0000"])["198-209-0000"]
    rc = main(["ingest", "--catalog", str(catalog), "--data-dir", str(tmp_path / "n"), "--home", str(cfg.home),
               "--no-audio", "--no-images"])
    assert rc == 0 and "audio" not in kinds(tmp_path / "n")


KILLER = """
import os, signal, sys
from llmrec.config import Config
from llmrec.data.catalog import load_catalog
from llmrec.ingest import ingest


cfg = Config.load(env={}, overrides={"data_dir": sys.argv[2], "encode_batch_size": 4, "threads": 1,
                                     "home": sys.argv[3], "audio_max_seconds": 20.0})
ds, _ = load_catalog(sys.argv[1])

def kill(done, total):
    if done >= 5:
        print("killing", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

ingest(cfg, ds, log=lambda *_: None, progress=kill)
"""


def test_resume_after_a_kill(full, cfg, catalog, tmp_path):
    """SIGKILL in the middle of the audio ingest (mid-batch: 5 clips done, batches of 4), then the same
    ingest again: every clip written before the kill is kept and skipped, the rest is done, and the
    store equals an uninterrupted one."""
    import os
    import subprocess
    import sys

    store = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(catalog), str(store), str(cfg.home)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == -9 and "killing" in proc.stdout, proc.stderr[-2000:]
    partial = ItemStore(store, "audio").ids()
    assert len(partial) == 5  # each clip is written once transcribed: the kill after the 5th loses none
    resumed = ingest(cfg.replace(data_dir=store), load_catalog(catalog)[0], log=lambda *_: None)
    assert resumed["audio_unchanged"] == len(partial)
    assert resumed["audio_in_store"] == full["audio_in_store"] == len(ItemStore(store, "audio").ids())
    ids, V, metas = ItemStore(store, "audio").matrix()
    ids0, V0, metas0 = ItemStore(cfg.data_dir, "audio").matrix()
    assert ids == ids0 and np.allclose(V, V0, atol=1e-5)
    assert [m.get("transcript") for m in metas] == [m.get("transcript") for m in metas0]
