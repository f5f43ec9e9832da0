"""Captions for the text fallback: ImageNet class names, the built-in OCR + labels captioner on real
posters, and plugging a captioner in by configuration."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from llmrec.config import Config
from llmrec.encoders.caption import (
    CLASSES_FILE,
    Captioner,
    OcrLabelsCaptioner,
    captioner_id,
    imagenet_classes,
    load_captioner,
)
from llmrec.encoders.image import EfficientNetLite0Encoder
from llmrec.errors import ConfigError, ImageError

POSTERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "posters"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


@pytest.fixture(scope="module")
def cfg():
    return Config.load(env={}, overrides={"threads": 1})


@pytest.fixture(scope="module")
def encoder(cfg):
    return EfficientNetLite0Encoder(cfg)


@pytest.fixture(scope="module")
def captioner(cfg, encoder):
    return load_captioner(cfg, encoder=encoder)


def test_imagenet_class_names_are_the_standard_order(encoder):
    names = imagenet_classes()
    assert len(names) == 1000 and len(CLASSES_FILE.read_text().splitlines()) == 1005  # 5 header lines
    assert names[0] == "tench" and names[1] == "goldfish" and names[999] == "toilet tissue"
    # The classes the poster test of the encoder relies on (web site, comic book, book jacket).
    assert [names[i] for i in (916, 917, 921)] == ["web site", "comic book", "book jacket"]
    # The real classifier on a real photo-like input agrees with the names: a poster is mostly
    # seen as printed matter, not as a fish.
    idx, _ = encoder.top_classes([POSTERS / "1.jpg", POSTERS / "21.jpg"], k=3)
    assert {names[i] for i in idx.ravel()} & {"comic book", "book jacket", "web site", "toyshop"}


def test_default_captioner_reads_title_and_labels(captioner):
    assert isinstance(captioner, OcrLabelsCaptioner) and isinstance(captioner, Captioner)
    assert captioner.name == "ocr-labels"
    caps = captioner.caption([POSTERS / "2.jpg", POSTERS / "21.jpg"])
    assert len(caps) == 2
    assert caps[0].startswith('Text: "') and "JUMANJI" in caps[0].upper()
    assert "GET SHORTY" in caps[1].upper() and "Looks like: " in caps[1]
    labels = caps[1].split("Looks like: ")[1].rstrip(".").split(", ")
    assert 1 <= len(labels) <= 3 and set(labels) <= set(imagenet_classes())


def test_parts_and_empty_inputs(cfg, encoder):
    plain = Image.new("RGB", (300, 450), (30, 60, 120))
    ocr_only = load_captioner(cfg.replace(image_captioner="ocr"))
    assert ocr_only.caption([plain]) == [""]  # nothing printed: nothing invented
    labels_only = load_captioner(cfg.replace(image_captioner="labels"), encoder=encoder)
    (cap,) = labels_only.caption([POSTERS / "21.jpg"])
    assert cap.startswith("Looks like: ") and "Text:" not in cap
    assert labels_only.caption([]) == []
    assert load_captioner(cfg.replace(image_captioner="none")) is None
    with pytest.raises(TypeError):
        labels_only.caption(POSTERS / "21.jpg")


def test_drawn_text_comes_back_in_the_caption(cfg):
    font = ImageFont.truetype(str(FONT), 44) if FONT.exists() else ImageFont.load_default(size=44)
    im = Image.new("RGB", (600, 300), "white")
    ImageDraw.Draw(im).text((40, 110), "NORTHERN LIGHTS", font=font, fill="black")
    (cap,) = load_captioner(cfg.replace(image_captioner="ocr")).caption([im])
    assert cap.replace(" ", "").upper().startswith('TEXT:"NORTHERNLIGHTS'), cap


def test_bad_file_is_named(captioner, tmp_path):
    bad = tmp_path / "not-an-image.jpg"
    bad.write_text("hello")
    with pytest.raises(ImageError) as e:
        captioner.caption([bad])
    assert e.value.path == str(bad)


def test_identity_changes_with_the_settings(cfg, encoder, captioner):
    a = captioner.identity()
    assert a["captioner"] == "ocr-labels" and a["ocr"]["engine"] == "rapidocr" and a["ocr"]["version"] == "1.4.4"
    assert captioner_id(captioner) == a["id"] and len(a["id"]) == 16
    b = OcrLabelsCaptioner(cfg, encoder=encoder, min_score=0.6)
    assert captioner_id(b) != a["id"]
    assert captioner_id(None) == ""


class _SizeCaptioner:
    """A plugged-in captioner (a stand-in for BLIP & co.): describes each image by its size."""

    name = "size-v1"

    def __init__(self, cfg):
        self.cfg = cfg

    def caption(self, images):
        from llmrec.encoders.image_io import load_image

        ims = [im if isinstance(im, Image.Image) else load_image(im) for im in images]
        return [f"an image {im.size[0]} pixels wide" for im in ims]


def test_a_captioner_plugs_in_by_configuration(monkeypatch, cfg):
    mod = types.ModuleType("llmrec_test_plugin")
    mod.SizeCaptioner = _SizeCaptioner
    mod.NoCaption = lambda cfg: object()
    monkeypatch.setitem(sys.modules, "llmrec_test_plugin", mod)
    c = load_captioner(Config.load(env={"LLMREC_IMAGE_CAPTIONER": "llmrec_test_plugin:SizeCaptioner"}))
    assert isinstance(c, _SizeCaptioner) and isinstance(c, Captioner)
    assert c.caption([POSTERS / "21.jpg"]) == ["an image 300 pixels wide"]
    assert captioner_id(c) == "size-v1"
    with pytest.raises(ConfigError, match="no 'Missing'"):
        load_captioner(cfg.replace(image_captioner="llmrec_test_plugin:Missing"))
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        load_captioner(cfg.replace(image_captioner="no_such_module_xyz:Blip"))
    with pytest.raises(ConfigError, match="without a caption"):
        load_captioner(cfg.replace(image_captioner="llmrec_test_plugin:NoCaption"))


@pytest.mark.parametrize("bad", ["blip", "ocr+labels", "module:", ":Class", "a b:C", "mod:Class.attr"])
def test_config_refuses_unknown_captioners(bad):
    with pytest.raises(ConfigError, match="image_captioner"):
        Config.load(env={}, overrides={"image_captioner": bad})


def test_labels_follow_the_classifier(encoder, cfg):
    # The labels are the classifier's own top classes above the probability floor, by name.
    c = OcrLabelsCaptioner(cfg, ocr=False, encoder=encoder)
    paths = [POSTERS / f"{i}.jpg" for i in (1, 24, 32)]
    idx, probs = encoder.top_classes(paths, k=3)
    names = imagenet_classes()
    want = [[names[i] for i, p in zip(r, pr, strict=True) if p >= 0.1] for r, pr in zip(idx, probs, strict=True)]
    assert c.labels(paths) == want
    assert np.all(probs[:, 0] >= 0.1)  # each poster gets at least one label
