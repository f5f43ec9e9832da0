"""Every registered ingest modality (:data:`llmrec.ingest.base.MODALITIES`) through the same checks,
on 3 real files each (posters, speech clips) plus an item whose file is missing: vectors in
``items_{kind}``, the derived text in both collections, the missing file a per-item failure
(``failures.jsonl``, the summary, the manifest naming the file), the other modalities untouched."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llmrec.data.catalog import load_catalog
from llmrec.ingest import MANIFEST_FILE, ingest
from llmrec.ingest.base import MODALITIES, Modality, derived_keys
from llmrec.ingest.media import FAILURES_FILE, read_failures
from llmrec.store import ItemStore, kinds

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SAMPLES = {
    "image": [SHARED / "posters" / f"{i}.jpg" for i in ("2", "10", "32")],
    "audio": [SHARED / "audio" / f"{i}.ogg" for i in ("198-209-0000", "3436-172162-0000", "5703-47212-0000")],
}
"""3 real files per modality, each with content its derived text reads (posters, speech)."""


def test_every_modality_has_samples_and_the_protocol():
    assert list(MODALITIES) == ["image", "audio"]  # the order ingest does them in
    assert set(SAMPLES) == set(MODALITIES), "add 3 real sample files for each registered modality"
    for kind, m in MODALITIES.items():
        assert isinstance(m, Modality) and m.kind == kind and m.derived_keys
    assert derived_keys() == ("caption", "transcript")
    assert len({m.flag for m in MODALITIES.values()}) == len(MODALITIES)


def test_unknown_modality_keyword_is_refused(base_cfg):
    from llmrec.data.types import Dataset

    with pytest.raises(TypeError, match="'videos'"):
        ingest(base_cfg, Dataset("x", [], []), videos=True)


@pytest.fixture(scope="module", params=list(MODALITIES))
def run(request, base_cfg, tmp_path_factory):
    """A catalog of 3 items with a real file of the modality, one whose file is missing and one
    without; ingested with only that modality on. (modality, config, dataset, summary)."""
    m = MODALITIES[request.param]
    root = tmp_path_factory.mktemp(f"cat_{m.kind}")
    (root / "f").mkdir()
    rows = []
    for n, p in enumerate(SAMPLES[m.kind]):
        shutil.copy(p, root / "f" / p.name)
        rows.append({"id": f"i{n}", "title": f"Item {n}", m.kind: f"f/{p.name}"})
    rows += [{"id": "gone", "title": "Gone", m.kind: "f/gone" + SAMPLES[m.kind][0].suffix},
             {"id": "plain", "title": "Plain", "text": "Text only."}]
    (root / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = base_cfg.replace(threads=1, encode_batch_size=4, audio_max_seconds=20.0,
                           data_dir=tmp_path_factory.mktemp(f"store_{m.kind}"))
    if m.kind == "audio":
        from llmrec.prepare import prepare_whisper

        prepare_whisper(cfg, log=lambda *_: None)
    ds, _ = load_catalog(root / "items.jsonl")
    flags = {x.flag: x is m for x in MODALITIES.values()}
    return m, cfg, ds, ingest(cfg, ds, log=lambda *_: None, **flags)


def test_vectors_derived_text_and_failures(run):
    m, cfg, ds, summary = run
    good = ["i0", "i1", "i2"]
    assert [m.path(it) is not None for it in ds.items] == [True] * 4 + [False]
    for x in MODALITIES.values():
        assert summary[f"{x.flag}_ingested"] is (x is m)
    assert summary[f"{m.flag}_encoded"] == 3 and summary[f"{m.flag}_failed"] == 1
    assert set(kinds(cfg.store_dir())) == {"text", m.kind}  # the other modalities untouched

    ids, vecs, metas = ItemStore(cfg.store_dir(), m.kind).matrix()
    assert sorted(ids) == good and vecs.shape[0] == 3 and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    by_id = dict(zip(ids, metas, strict=True))
    text = ItemStore(cfg.store_dir(), "text").metadata(good + ["gone", "plain"])
    for key in m.derived_keys:
        for i in good:
            assert by_id[i][m.kind] == m.path(ds.items[int(i[1])])
            assert len(by_id[i][key].split()) >= 3, (i, key, by_id[i][key])  # posters have titles; clips speech
            assert text[i][key] == by_id[i][key]
        assert key not in text["gone"] and key not in text["plain"]

    (rec,) = [r for r in read_failures(cfg.store_dir() / FAILURES_FILE) if r["kind"] == m.kind]
    assert rec["item"] == "gone" and rec["stage"] == "load" and rec["path"].endswith("f/gone" + SAMPLES[m.kind][0].suffix)
    assert [f["item"] for f in summary[f"{m.kind}_failures"]] == ["gone"]
    manifest = json.loads((cfg.store_dir() / MANIFEST_FILE).read_text())
    assert manifest[f"{m.kind}_failures_file"] == FAILURES_FILE and f"{m.kind}_failures" not in manifest
    assert manifest[f"{m.flag}_encoded"] == 3
