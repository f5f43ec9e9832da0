"""Media paths that are not ordinary files: a character device (/dev/zero, /dev/urandom), a FIFO and
a sparse file over ``media_max_bytes``, each as an item's image AND as its audio, through the real
``llmrec ingest`` (a subprocess with a timeout, so that a regression that hangs fails here instead of
hanging the suite). The ingest must finish, ingest the other items, record each bad item's failure
with its reason, and release the ingest lock (a second ingest runs)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.ingest.media import FAILURES_FILE, read_failures
from llmrec.store import ItemStore

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
POSTERS = SHARED / "posters"
CLIP = SHARED / "audio" / "456440__inspectorj__bird-whistling-robin-single-13.ogg"  # 15 kB, a few seconds
MAX_BYTES = 1_000_000  # media_max_bytes here: the sparse files are one byte over it
TIMEOUT_S = 240  # one ingest of 2 posters and 2 clips takes well under a minute here
CLI = "import sys; from llmrec.cli import main; sys.exit(main(sys.argv[1:]))"
GOOD = ("2", "10")
BAD = {  # item: (what its image and audio paths are, words its failure reasons must hold)
    "dev": ("/dev/zero and /dev/urandom", "not a regular file (character device)"),
    "fifo": ("FIFOs", "not a regular file (FIFO"),
    "sparse": ("sparse files of media_max_bytes + 1 bytes", f"over media_max_bytes {MAX_BYTES}"),
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media_files")
    rows = []
    for i in GOOD:
        shutil.copy(POSTERS / f"{i}.jpg", root / f"{i}.jpg")
        shutil.copy(CLIP, root / f"{i}.ogg")
        rows.append({"id": i, "title": f"Good {i}", "image": f"{i}.jpg", "audio": f"{i}.ogg"})
    rows.append({"id": "dev", "title": "Device", "image": "/dev/zero", "audio": "/dev/urandom"})
    os.mkfifo(root / "pipe.jpg")
    os.mkfifo(root / "pipe.ogg")
    rows.append({"id": "fifo", "title": "Pipe", "image": "pipe.jpg", "audio": "pipe.ogg"})
    for name in ("sparse.jpg", "sparse.ogg"):
        with open(root / name, "wb") as f:
            f.truncate(MAX_BYTES + 1)  # a hole: no data written, st_size one byte over the limit
    rows.append({"id": "sparse", "title": "Sparse", "image": "sparse.jpg", "audio": "sparse.ogg"})
    path = root / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _ingest(catalog: Path, data_dir: Path, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMREC_THREADS": "1", "LLMREC_MEDIA_MAX_BYTES": str(MAX_BYTES),
           "LLMREC_IMAGE_CAPTIONER": "labels"}  # OCR is not what this tests
    try:
        return subprocess.run([sys.executable, "-c", CLI, "ingest", "--catalog", str(catalog), "--data-dir",
                               str(data_dir), "--home", str(home)], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        err = (e.stderr or b"").decode(errors="replace")[-3000:]
        pytest.fail(f"llmrec ingest did not finish in {TIMEOUT_S} s (a media path hangs it):\n{err}")


@pytest.fixture(scope="module")
def first(catalog, base_cfg, tmp_path_factory):
    """(data dir, the first ingest's process)."""
    data_dir = tmp_path_factory.mktemp("media_store")
    return data_dir, _ingest(catalog, data_dir, base_cfg.home)


def test_ingest_finishes_and_ingests_the_other_items(first):
    data_dir, proc = first
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(ItemStore(data_dir, "image").ids()) == sorted(GOOD)
    assert sorted(ItemStore(data_dir, "audio").ids()) == sorted(GOOD)
    assert sorted(ItemStore(data_dir, "text").ids()) == sorted([*GOOD, *BAD])  # the items' text is ingested


def test_failures_name_each_bad_item_path_and_reason(first, catalog):
    data_dir, proc = first
    recs = {(r["kind"], r["item"]): r for r in read_failures(data_dir / FAILURES_FILE)}
    assert set(recs) == {(kind, i) for kind in ("image", "audio") for i in BAD}, recs
    paths = {"dev": ("/dev/zero", "/dev/urandom"), "fifo": ("pipe.jpg", "pipe.ogg"),
             "sparse": ("sparse.jpg", "sparse.ogg")}
    for i, (what, words) in BAD.items():
        for kind, path in zip(("image", "audio"), paths[i], strict=True):
            r = recs[(kind, i)]
            assert r["path"].endswith(path) and words in r["reason"], (what, r)
            assert r["stage"] == "load"
            assert f"failed: item {i}: {r['path']}: {r['reason']}" in proc.stderr  # the CLI reports each
    assert "1.0 MB (1,000,001 bytes)" in recs[("image", "sparse")]["reason"]


@pytest.mark.slow  # a long end-to-end run (make test-all)
def test_lock_is_released_and_a_second_ingest_runs(first, catalog, base_cfg):
    data_dir, _ = first
    again = _ingest(catalog, data_dir, base_cfg.home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "another `llmrec ingest`" not in again.stderr
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert (manifest["images_encoded"], manifest["images_unchanged"], manifest["images_failed"]) == (0, 2, 3)
    assert (manifest["audio_encoded"], manifest["audio_unchanged"], manifest["audio_failed"]) == (0, 2, 3)
    assert len(read_failures(data_dir / FAILURES_FILE)) == 6
