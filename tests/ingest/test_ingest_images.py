"""Ingest of images: real posters in a small catalog with a corrupt and a missing file; failures
recorded, captions stored, resumable after an interruption (KeyboardInterrupt, and a real SIGKILL)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmrec.cli import main
from llmrec.config import Config
from llmrec.data.catalog import load_catalog
from llmrec.data.types import Dataset, Item
from llmrec.ingest import ingest
from llmrec.ingest.image import attach_posters, images_wanted
from llmrec.ingest.media import FAILURES_FILE, read_failures
from llmrec.store import ItemStore, kinds

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
POSTERS = SHARED / "posters"
# ml-latest-small movieIds and titles; the corrupt and the missing file sit among them.
GOOD = [("2", "Jumanji (1995)"), ("9", "Sudden Death (1995)"), ("10", "GoldenEye (1995)"),
        ("16", "Casino (1995)"), ("21", "Get Shorty (1995)"), ("22", "Copycat (1995)"),
        ("23", "Assassins (1995)"), ("24", "Powder (1995)"), ("32", "Twelve Monkeys (1995)"),
        ("47", "Seven (1995)")]
N_GOOD = len(GOOD)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """items.jsonl with relative image paths: 10 real posters, a truncated copy of one, a file that
    does not exist, and an item without an image."""
    root = tmp_path_factory.mktemp("catalog")
    (root / "img").mkdir()
    rows = []
    for n, (i, title) in enumerate(GOOD):
        shutil.copy(POSTERS / f"{i}.jpg", root / "img" / f"{i}.jpg")
        rows.append({"id": i, "title": title, "image": f"img/{i}.jpg", "year": 1995})
        if n == 2:
            (root / "img" / "cut.jpg").write_bytes((POSTERS / "1.jpg").read_bytes()[:4000])
            rows.append({"id": "1", "title": "Toy Story (1995)", "image": "img/cut.jpg"})
        if n == 5:
            rows.append({"id": "5", "title": "Father of the Bride Part II (1995)", "image": "img/gone.jpg"})
    rows.append({"id": "7", "title": "Sabrina (1995)", "text": "No poster for this one."})
    path = root / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cfg(base_cfg):
    # Small write batches so that an interruption falls between them; one thread (busy cores).
    return base_cfg.replace(encode_batch_size=4, threads=1)


@pytest.fixture(scope="module")
def full(cfg, catalog, tmp_path_factory):
    """One uninterrupted ingest of the catalog: (config, summary)."""
    c = cfg.replace(data_dir=tmp_path_factory.mktemp("full"))
    ds, _ = load_catalog(catalog)
    return c, ingest(c, ds, log=lambda *_: None)


def _image_state(data_dir):
    ids, vecs, metas = ItemStore(data_dir, "image").matrix()
    return ids, vecs, metas


def test_catalog_images_are_resolved_against_the_catalog(catalog):
    ds, _ = load_catalog(catalog)
    by_id = {it.id: it for it in ds.items}
    assert by_id["2"].image == str(catalog.parent / "img" / "2.jpg") and Path(by_id["2"].image).is_file()
    assert by_id["7"].image is None
    assert images_wanted(Config.load(env={}), ds)  # auto: a catalog that names images


def test_relative_catalog_path_gives_absolute_image_paths(catalog, monkeypatch):
    monkeypatch.chdir(catalog.parent.parent)
    ds, _ = load_catalog(Path(catalog.parent.name) / catalog.name)
    image = next(it.image for it in ds.items if it.id == "2")
    assert image == str(catalog.parent / "img" / "2.jpg") and Path(image).is_absolute()


def test_vectors_failures_and_captions(full, catalog):
    c, summary = full
    assert summary["images_ingested"] and summary["images"] == N_GOOD + 2
    assert (summary["images_encoded"], summary["images_failed"], summary["images_in_store"]) == (N_GOOD, 2, N_GOOD)
    ids, vecs, metas = _image_state(c.data_dir)
    assert sorted(ids) == sorted(i for i, _ in GOOD)
    assert vecs.shape == (N_GOOD, 1280) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    assert kinds(c.data_dir) == ["image", "text"]
    # The same vectors as the encoder gives the files directly.
    from llmrec.encoders.image import EfficientNetLite0Encoder

    direct = EfficientNetLite0Encoder(c).encode([catalog.parent / "img" / f"{i}.jpg" for i in ids])
    assert np.abs(direct - vecs).max() < 1e-5
    # Failures: which item, which file, why; in the store and in the summary.
    fails = {f["item"]: f for f in read_failures(Path(c.data_dir) / FAILURES_FILE)}
    assert set(fails) == {"1", "5"}
    assert fails["1"]["path"] == str(catalog.parent / "img" / "cut.jpg") and "truncated" in fails["1"]["reason"]
    assert fails["5"]["path"] == str(catalog.parent / "img" / "gone.jpg") and fails["5"]["reason"] == "no such file"
    assert {f["item"] for f in summary["image_failures"]} == {"1", "5"}
    assert len((Path(c.data_dir) / FAILURES_FILE).read_text().splitlines()) == 2
    # Captions: in the image collection and in the item's (text) metadata, for the text fallback.
    text = ItemStore(c.data_dir, "text").metadata([i for i, _ in GOOD] + ["1", "5", "7"])
    by_id = dict(zip(ids, metas, strict=True))
    for i, title in GOOD:
        cap = by_id[i]["caption"]
        assert text[i]["caption"] == cap and by_id[i]["image"].endswith(f"{i}.jpg")
        assert by_id[i]["title"] == title and len(by_id[i]["image_sha256"]) == 64
    assert "JUMANJI" in by_id["2"]["caption"].upper() and "GETSHORTY" in by_id["21"]["caption"].upper().replace(" ", "")
    assert sum("Looks like: " in m["caption"] for m in metas) >= N_GOOD - 2
    assert all("caption" not in text[i] for i in ("1", "5", "7"))
    assert text["7"]["title"] == "Sabrina (1995)" and text["2"]["f_year"] == 1995
    manifest = json.loads((Path(c.data_dir) / "manifest.json").read_text())
    assert manifest["images_in_store"] == N_GOOD and manifest["image_failures_file"] == FAILURES_FILE


def test_rerun_skips_what_is_stored(full, catalog):
    c, _ = full
    before = _image_state(c.data_dir)
    ds, _ = load_catalog(catalog)
    again = ingest(c, ds, log=lambda *_: None)
    assert (again["images_encoded"], again["images_unchanged"], again["images_failed"]) == (0, N_GOOD, 2)
    after = _image_state(c.data_dir)
    assert after[0] == before[0] and np.array_equal(after[1], before[1]) and after[2] == before[2]
    assert len((Path(c.data_dir) / FAILURES_FILE).read_text().splitlines()) == 2  # not appended twice


def _same_as_full(full, data_dir):
    ids, vecs, metas = _image_state(full[0].data_dir)
    ids2, vecs2, metas2 = _image_state(data_dir)
    assert ids2 == ids and len(set(ids2)) == len(ids2)
    assert np.abs(vecs2 - vecs).max() < 1e-6
    assert [m["caption"] for m in metas2] == [m["caption"] for m in metas]
    t1 = ItemStore(full[0].data_dir, "text").matrix()
    t2 = ItemStore(data_dir, "text").matrix()
    assert t2[0] == t1[0] and t2[2] == t1[2] and np.array_equal(t2[1], t1[1])
    f1 = sorted((f["item"], f["reason"]) for f in read_failures(Path(full[0].data_dir) / FAILURES_FILE))
    f2 = sorted((f["item"], f["reason"]) for f in read_failures(Path(data_dir) / FAILURES_FILE))
    assert f2 == f1 and len((Path(data_dir) / FAILURES_FILE).read_text().splitlines()) == 2


@pytest.mark.slow  # a long end-to-end run (make test-all)
def test_resume_after_keyboard_interrupt(full, cfg, catalog, tmp_path):
    c = cfg.replace(data_dir=tmp_path / "store")
    ds, _ = load_catalog(catalog)
    seen = []

    def interrupt(done, total):
        seen.append((done, total))
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest(c, ds, log=lambda *_: None, progress=interrupt)
    assert seen[-1] == (7, N_GOOD + 1)  # the missing file is known before encoding; the corrupt one is not
    partial = _image_state(c.data_dir)[0]
    assert len(partial) == 6  # each item is written when done: all 7 processed, less the corrupt one
    resumed = ingest(c, ds, log=lambda *_: None)
    assert resumed["images_unchanged"] == len(partial)
    assert resumed["images_encoded"] == N_GOOD - len(partial)
    _same_as_full(full, c.data_dir)


KILLER = """
import os, signal, sys
from llmrec.config import Config
from llmrec.data.catalog import load_catalog
from llmrec.ingest import ingest

cfg = Config.load(env={}, overrides={"data_dir": sys.argv[2], "encode_batch_size": 4, "threads": 1,
                                     "home": sys.argv[3]})
ds, _ = load_catalog(sys.argv[1])

def kill(done, total):
    if done == 6:
        print("killing", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

ingest(cfg, ds, log=lambda *_: None, progress=kill)
"""


@pytest.mark.slow  # a long end-to-end run (make test-all)
def test_resume_after_a_kill(full, cfg, catalog, tmp_path):
    store = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", KILLER, str(catalog), str(store), str(cfg.home)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == -9 and "killing" in proc.stdout, proc.stderr[-2000:]
    partial = _image_state(store)[0]
    assert 0 < len(partial) < N_GOOD
    resumed = ingest(cfg.replace(data_dir=store), load_catalog(catalog)[0], log=lambda *_: None)
    assert resumed["images_unchanged"] == len(partial) and resumed["images_in_store"] == N_GOOD
    _same_as_full(full, store)


PER_ITEM_KILLER = """
import os, signal, sys
from llmrec.config import Config
from llmrec.data.catalog import load_catalog
from llmrec.ingest import ingest

cfg = Config.load(env={}, overrides={"data_dir": sys.argv[2], "encode_batch_size": 8, "threads": 1,
                                     "home": sys.argv[3], "image_captioner": "labels"})
ds, _ = load_catalog(sys.argv[1])

def kill(done, total):
    print("progress", done, total, flush=True)
    if done == int(sys.argv[4]):
        os.kill(os.getpid(), signal.SIGKILL)

ingest(cfg, ds, log=lambda *_: None, progress=kill)
"""


@pytest.mark.slow  # a long end-to-end run (make test-all)
def test_a_kill_mid_batch_loses_no_finished_item(cfg, catalog, tmp_path):
    """SIGKILL after the 5th of a batch of 8 items is processed: those 5 (less the corrupt file among
    them) are in the store, and a rerun encodes only the rest (its progress total and manifest)."""
    store, kill_at = tmp_path / "killed", 5
    proc = subprocess.run([sys.executable, "-c", PER_ITEM_KILLER, str(catalog), str(store), str(cfg.home),
                           str(kill_at)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    ticks = [tuple(map(int, line.split()[1:])) for line in proc.stdout.splitlines() if line.startswith("progress")]
    assert ticks[-1] == (kill_at, N_GOOD + 1)  # to do: the good posters and the corrupt file
    partial = set(_image_state(store)[0])
    assert len(partial) == kill_at - 1 and partial <= {i for i, _ in GOOD}  # the corrupt file is among the 5
    failed = {f["item"] for f in read_failures(store / FAILURES_FILE)}
    assert failed == {"5", "1"}  # the missing file (before encoding) and the corrupt one, recorded at once
    seen = []
    c = cfg.replace(data_dir=store, image_captioner="labels")
    resumed = ingest(c, load_catalog(catalog)[0], log=lambda *_: None, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (N_GOOD + 1 - len(partial),) * 2  # only the rest was processed
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["images_encoded"] == resumed["images_encoded"] == N_GOOD - len(partial)
    assert manifest["images_unchanged"] == len(partial) and manifest["images_in_store"] == N_GOOD


def test_changed_and_removed_images(cfg, catalog, tmp_path):
    # A store ingested in full; then one item's image is replaced by a corrupt file, another's is
    # dropped from the catalog: both lose their vector and caption, the rest stays.
    c = cfg.replace(data_dir=tmp_path / "store", image_captioner="labels")  # OCR is not what this tests
    ds, _ = load_catalog(catalog)
    assert ingest(c, ds, log=lambda *_: None)["images_in_store"] == N_GOOD
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    items = []
    for it in ds.items:
        if it.id == "9":
            it = Item(it.id, it.title, it.text, str(bad), None, it.fields)
        elif it.id == "10":
            it = Item(it.id, it.title, it.text, None, None, it.fields)
        items.append(it)
    out = ingest(c, Dataset(ds.name, items, []), log=lambda *_: None)
    assert out["images_removed"] == 2 and out["images_in_store"] == N_GOOD - 2
    ids = _image_state(c.data_dir)[0]
    assert "9" not in ids and "10" not in ids
    text = ItemStore(c.data_dir, "text").metadata(["9", "10", "2"])
    assert "caption" not in text["9"] and "caption" not in text["10"] and "caption" in text["2"]
    assert "image" not in text["10"] and text["9"]["image"] == str(bad)
    fails = {f["item"]: f for f in read_failures(Path(c.data_dir) / FAILURES_FILE)}
    assert set(fails) == {"1", "5", "9"} and fails["9"]["path"] == str(bad)


def test_no_images_flag_and_captioner_none(cfg, catalog, tmp_path, capsys):
    home = str(cfg.home)
    rc = main(["ingest", "--catalog", str(catalog), "--data-dir", str(tmp_path / "a"), "--home", home, "--no-images"])
    assert rc == 0
    assert kinds(tmp_path / "a") == ["text"] and not (tmp_path / "a" / FAILURES_FILE).exists()
    assert "images: off" in capsys.readouterr().err
    # Images without captions: vectors only.
    c = cfg.replace(data_dir=tmp_path / "b", image_captioner="none")
    out = ingest(c, load_catalog(catalog)[0], log=lambda *_: None)
    assert out["images_in_store"] == N_GOOD
    metas = _image_state(c.data_dir)[2]
    assert all("caption" not in m and m["captioner"] == "" for m in metas)


def test_cli_reports_failures(cfg, catalog, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLMREC_THREADS", "1")
    monkeypatch.setenv("LLMREC_IMAGE_CAPTIONER", "labels")  # OCR is tested above; this is the CLI's report
    rc = main(["ingest", "--catalog", str(catalog), "--data-dir", str(tmp_path / "s"), "--home", str(cfg.home)])
    assert rc == 0
    out, err = capsys.readouterr()
    assert f"images: {N_GOOD} encoded and captioned, 0 unchanged, 2 failed" in out
    assert f"failed: item 5: {catalog.parent / 'img' / 'gone.jpg'}: no such file" in err
    assert "failed: item 1: " in err and "2 image failure(s)" in err
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    assert saved["image_captioner"] == "labels" and saved["ingest_images"] is None


def test_images_wanted_and_config():
    ds = Dataset("ml-100k", [Item("1", "Toy Story (1995)", image="/x/1.jpg")], [])
    cat = Dataset("items", [Item("1", "Toy Story (1995)", image="/x/1.jpg")], [])
    none = Dataset("items", [Item("1", "Toy Story (1995)")], [])
    auto = Config.load(env={})
    assert not images_wanted(auto, ds) and images_wanted(auto, cat) and not images_wanted(auto, none)
    assert images_wanted(auto, ds, builtin=False) and not images_wanted(auto, cat, builtin=True)
    on = Config.load(env={"LLMREC_INGEST_IMAGES": "true"})
    assert on.ingest_images is True and images_wanted(on, ds)
    assert Config.load(env={"LLMREC_INGEST_IMAGES": "auto"}).ingest_images is None
    assert not images_wanted(Config.load(env={"LLMREC_INGEST_IMAGES": "off"}), cat)
    from llmrec.errors import ConfigError

    with pytest.raises(ConfigError, match="ingest_images"):
        Config.load(env={"LLMREC_INGEST_IMAGES": "sometimes"})


def test_movielens_posters(ml100k):
    ds, found = attach_posters(ml100k, POSTERS)
    assert found == 1394 and sum(1 for it in ds.items if it.image) == 1394
    by_id = {it.id: it for it in ds.items}
    assert by_id["1"].image == str(POSTERS / "1.jpg") and by_id["2"].image == str(POSTERS / "10.jpg")
    assert all(Path(it.image).is_file() for it in ds.items if it.image)
    assert len(ds.items) == 1682 and ds.interactions is ml100k.interactions
    assert attach_posters(ml100k, POSTERS.parent / "no-such-folder") == (ml100k, 0)
    assert attach_posters(Dataset("items", ml100k.items[:3], []), POSTERS)[1] == 0  # a catalog names its own


def test_ml_latest_small_posters():
    from llmrec.data.movielens import load_ml_latest_small

    ds, found = attach_posters(load_ml_latest_small(SHARED / "ml-latest-small"), POSTERS)
    assert found == 2863
    by_id = {it.id: it for it in ds.items}
    assert by_id["2"].image == str(POSTERS / "2.jpg") and by_id["1"].image == str(POSTERS / "1.jpg")
