"""OCR (RapidOCR's ONNX models from the wheel): text drawn by the test, and real posters' titles."""

import csv
import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from llmrec.config import Config
from llmrec.encoders.ocr import OcrBox, RapidOcr, clean_text, reading_order
from llmrec.errors import ImageError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
POSTERS = SHARED / "posters"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
# Posters whose title is printed large (looked at by hand): ml-latest-small movieIds.
TITLED = ["2", "9", "10", "16", "21", "22", "23", "24", "25", "3"]
STOP = {"THE", "AND", "WITH", "FROM", "THIS", "THAT"}


def _font(size: int):
    # DejaVu (Debian's fonts-dejavu-core) where installed, else Pillow's own embedded TrueType font.
    return ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default(size=size)


def _letters(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


@pytest.fixture(scope="module")
def ocr():
    return RapidOcr(Config.load(env={}, overrides={"threads": 1}))


@pytest.fixture(scope="module")
def titles():
    with open(SHARED / "ml-latest-small" / "movies.csv", encoding="utf-8", newline="") as f:
        return {r["movieId"]: r["title"] for r in csv.DictReader(f)}


def test_reads_text_the_test_draws(ocr):
    im = Image.new("RGB", (720, 260), (250, 248, 240))
    d = ImageDraw.Draw(im)
    d.text((30, 30), "MIDNIGHT EXPRESS", font=_font(56), fill=(20, 20, 20))
    d.text((30, 150), "Seven days in Lisbon", font=_font(40), fill=(140, 20, 20))
    boxes = ocr.read([im])[0]
    assert boxes and all(isinstance(b, OcrBox) and 0 <= b.score <= 1 for b in boxes)
    text = clean_text(boxes)
    got = _letters(text)
    for word in ("MIDNIGHT", "EXPRESS", "SEVEN", "DAYS", "LISBON"):
        assert word in got, text
    # Reading order: the first line before the second.
    assert got.index("MIDNIGHT") < got.index("LISBON")
    # Boxes are in image pixels: the first line's lie in the top half of the image, the second's below.
    top = _letters(" ".join(b.text for b in boxes if b.box[3] < 130))
    assert "MIDNIGHT" in top and "EXPRESS" in top and "LISBON" not in top


def test_no_text_gives_nothing(ocr):
    plain = Image.new("RGB", (400, 300), (90, 140, 200))
    assert ocr.read([plain]) == [[]]
    assert clean_text([]) == ""


def test_real_posters_show_their_title(ocr, titles):
    # The OCR of a poster that prints its title contains a word of the movie's real title
    # (ml-latest-small's movies.csv), compared in capitals without spaces (the recogniser drops
    # spaces between capitals).
    paths = [POSTERS / f"{i}.jpg" for i in TITLED]
    texts = [clean_text(b) for b in ocr.read(paths)]
    hits = []
    for i, text in zip(TITLED, texts, strict=True):
        words = [w for w in re.findall(r"[A-Z0-9]+", re.sub(r"\(\d{4}\)\s*$", "", titles[i]).upper())
                 if len(w) >= 4 and w not in STOP]
        hits.append(any(w in _letters(text) for w in words))
    assert sum(hits) >= 9, list(zip(TITLED, texts, hits, strict=True))


def test_paths_and_images_agree_and_bad_files_are_named(ocr, tmp_path):
    path = POSTERS / "21.jpg"
    from llmrec.encoders.image_io import load_image

    assert ocr.read([path]) == ocr.read([load_image(path)])
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(ImageError) as e:
        ocr.read([bad])
    assert e.value.path == str(bad)
    with pytest.raises(TypeError):
        ocr.read(path)


def _box(text, score, left, top, right, bottom):
    return OcrBox(text, score, (left, top, right, bottom))


def test_clean_text_drops_low_confidence_and_noise_and_orders():
    boxes = [
        _box("TAGLINE here", 0.95, 10, 300, 200, 330),     # lower line
        _box("WORLD", 0.97, 160, 102, 300, 150),          # right of HELLO, same line (slightly lower)
        _box("HELLO", 0.99, 10, 100, 150, 148),
        _box("KCOnEGRCNBR", 0.61, 10, 400, 280, 410),      # credit-block noise: low confidence
        _box("R", 0.90, 290, 420, 300, 430),               # a single letter
        _box("a\u200bb\tc", 0.9, 10, 500, 40, 510),         # zero-width and tab characters cleaned
    ]
    assert clean_text(boxes) == "HELLO WORLD TAGLINE here ab c"
    assert clean_text(boxes, min_score=0.5).startswith("HELLO WORLD TAGLINE here KCOnEGRCNBR")
    lines = reading_order(boxes[:3])
    assert [[b.text for b in line] for line in lines] == [["HELLO", "WORLD"], ["TAGLINE here"]]


def test_clean_text_is_capped_on_a_word_boundary():
    words = [_box(f"word{i:03d}", 0.99, 10 + 80 * i, 10, 80 + 80 * i, 40) for i in range(60)]
    text = clean_text(words, max_chars=50)
    assert len(text) <= 50 and text.endswith("...")
    assert text[:-3].split() == [f"word{i:03d}" for i in range(len(text[:-3].split()))]


def test_bounded_keeps_posters_and_bounds_strips():
    from llmrec.encoders.ocr import MAX_ASPECT, MIN_TEXT_SIDE, bounded

    poster = Image.new("RGB", (300, 450))
    assert bounded(poster, 2048) is poster
    for size in ((8000, 100), (100, 8000), (2048, 40)):
        out = bounded(Image.new("RGB", size), 2048)
        w, h = out.size
        assert max(w, h) <= 2048 and max(w, h) <= MAX_ASPECT * min(w, h) + 1
    assert min(bounded(Image.new("RGB", (60000, 10)), 2048).size) < MIN_TEXT_SIDE  # not read at all


_WIDE = """
import sys
from PIL import Image, ImageDraw
from llmrec.config import Config
from llmrec.encoders.ocr import RapidOcr
im = Image.new("RGB", (60000, 10), "white")
ImageDraw.Draw(im).text((5, 0), "HELLO", fill="black")
path = sys.argv[1]
im.save(path)
boxes = RapidOcr(Config.load(env={}, overrides={"threads": 1})).read([path, im])
# VmHWM: this process's own peak (ru_maxrss would carry the forking pytest's size across exec)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(len(boxes), hwm // 1024)
"""


def test_a_very_long_strip_is_read_in_bounded_memory(tmp_path):
    """A 60000 x 10 image (1.8 KB as PNG) made the detector's input 2.9 M x 480 pixels: ingest grew to
    13.5 GB until the kernel killed it. Now read, by path and as a PIL image, in a child process whose
    resident memory is watched (it is killed past 3 GiB, so a regression fails here, not the machine)."""
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", _WIDE, str(tmp_path / "wide.png")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    peak, deadline = 0, time.monotonic() + 300
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) // 1024
        except (OSError, StopIteration):
            rss = 0
        peak = max(peak, rss)
        if peak > 3072 or time.monotonic() > deadline:
            child.kill()
        time.sleep(0.05)
    out, err = child.communicate()
    assert child.returncode == 0 and peak <= 3072, (peak, err[-2000:])
    n, peak_mib = map(int, out.split())
    assert n == 2 and peak_mib < 2500
