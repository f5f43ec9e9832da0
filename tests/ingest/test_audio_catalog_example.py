"""examples/audio_catalog.py: the clips of ../shared/data/audio as a catalog, licences kept."""

import importlib.util
from pathlib import Path

import pytest

from llmrec.data.catalog import load_catalog

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "audio_catalog.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("audio_catalog_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_catalog_of_the_clips_keeps_each_licence(example, tmp_path):
    ds, report = load_catalog(example.build(tmp_path))
    clips = sorted(example.AUDIO.glob("*.ogg"))
    assert len(ds.items) == len(clips) == 10 and not report.skipped
    by_id = {it.id: it for it in ds.items}
    speech = by_id["198-209-0000"]
    assert speech.title == "Sense and Sensibility / Chapter 18 / Jane Austen / Read by Heather Barnett"
    assert "CC-BY 4.0" in speech.fields["licence"] and Path(speech.audio).is_file()
    assert all(it.fields["licence"] for it in ds.items)


def test_an_empty_folder_is_refused(example, tmp_path):
    with pytest.raises(FileNotFoundError, match="no .ogg clips"):
        example.build(tmp_path / "out", tmp_path)
