"""OCR of images: ``read(images) -> list[list[OcrBox]]`` and :func:`clean_text`, for caption fallbacks.

The engine is RapidOCR (``rapidocr-onnxruntime==1.4.4``, Apache-2.0): PaddleOCR's PP-OCRv4 text
detector (DB, Liao et al. 2020, "Real-time Scene Text Detection with Differentiable Binarization"),
its text-angle classifier and its CRNN/SVTR recogniser, as ONNX models inside the wheel, run by
onnxruntime on the CPU; nothing is downloaded. The recogniser is PaddleOCR's Chinese-and-English
model: it reads Latin capitals well but often drops the spaces between words set in capitals
("GRUMPIEROLDMEN"), and the small print of a poster's credit block comes out as low-confidence
noise, which :func:`clean_text` drops.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata

from PIL import Image

from llmrec.config import Config
from llmrec.encoders.image_io import load_image, to_rgb
from llmrec.errors import ModelError

MIN_SCORE = 0.8
"""Boxes the recogniser is less sure of than this are dropped (poster credit blocks read at 0.5-0.75)."""
MAX_CHARS = 200
"""Cleaned OCR text is cut to at most this many characters (on a word boundary, marked ``...``)."""
DET_MIN_SIDE = 480
"""The detector sees the image scaled so that its shorter side is this many pixels (RapidOCR's
default is 736). On 100 ml-latest-small posters (300 px wide), the share whose cleaned text holds a
word of the real title was 88% at 480, 87% at 736 and 82% at the native size; 480 took about 0.8x
the time of 736 and 1.6x that of the native size."""
MAX_ASPECT = 4.0
"""The detector scales an image's SHORT side up to ``DET_MIN_SIDE``: a 60000 x 10 strip would become
2.9 M x 480 pixels (measured: ingest grew to 13.5 GB before the kernel killed it). An image longer than this ratio is
padded (white) on its short side to it first, and one over ``image_max_side`` shrunk to it, so the
detector's input stays under ``DET_MIN_SIDE**2 * MAX_ASPECT`` pixels; posters (about 1.5) are untouched."""
MIN_TEXT_SIDE = 8
"""An image whose short side is under this many pixels once shrunk to ``image_max_side`` is not read (no
boxes): nothing legible is left, and the recogniser would stretch its one wide box to a 48-pixel-high
line thousands of times as wide (about 3 GB for a 60000 x 10 strip)."""

_WHEEL = "`pip install rapidocr-onnxruntime==1.4.4`"


@dataclass(frozen=True)
class OcrBox:
    """One line of text found in an image: its text, the recogniser's confidence (0..1) and its
    axis-aligned bounding box in pixels of the image given (``left, top, right, bottom``)."""

    text: str
    score: float
    box: tuple[float, float, float, float]


class RapidOcr:
    """RapidOCR on the CPU (see the module docstring), one image at a time.

    Args:
        cfg: config ``threads`` (0: onnxruntime's default, one thread per core) and the image
            loading limits (``image_max_pixels``, ``image_max_side``) for paths.

    Raises:
        ModelError: ``rapidocr-onnxruntime`` (or its OpenCV) is not installed or its models do not load.
    """

    name = "rapidocr"

    def __init__(self, cfg: Config | None = None):
        cfg = cfg if cfg is not None else Config()
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as e:
            raise ModelError(f"OCR needs {_WHEEL} ({e})") from None
        threads = cfg.threads if cfg.threads > 0 else -1
        try:
            # No text-angle classifier: posters are upright, and it turned some lines upside down (on
            # 60 posters, title words found on 45 of 52 without it and 44 with it at 736; 41 and 39
            # at the native size).
            self.engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=threads, print_verbose=False,
                                   use_cls=False, det_limit_side_len=DET_MIN_SIDE, det_limit_type="min")
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load the RapidOCR models: {type(e).__name__}: {e}") from e
        self.max_pixels, self.max_side = cfg.image.max_pixels, cfg.image.max_side

    def identity(self) -> dict:
        """``{"engine": "rapidocr", "version": ...}``: what the boxes depend on."""
        try:
            version = metadata.version("rapidocr-onnxruntime")
        except metadata.PackageNotFoundError:
            version = None
        return {"engine": self.name, "version": version, "det_min_side": DET_MIN_SIDE, "angle_classifier": False}

    def read(self, images: Sequence[str | os.PathLike | Image.Image]) -> list[list[OcrBox]]:
        """The text boxes of each image, in the engine's order (roughly top to bottom).

        Args:
            images: paths (loaded by :func:`~llmrec.encoders.image_io.load_image`) or PIL images
                (any mode).
        Returns:
            One list of :class:`OcrBox` per image (empty when no text is found); all boxes the
            engine returns, confidence not filtered (see :func:`clean_text`).
        Raises:
            ImageError: a path cannot be loaded, naming the file.
            TypeError: ``images`` is a single image, or an input is neither a path nor a PIL image.
        """
        if isinstance(images, (str, os.PathLike, Image.Image)):
            raise TypeError("pass a sequence of images (paths or PIL images), not a single one")
        out = []
        for item in images:
            if isinstance(item, Image.Image):
                image = to_rgb(item)
            elif isinstance(item, (str, os.PathLike)):
                image = load_image(item, self.max_pixels, self.max_side)
            else:
                raise TypeError(f"an image must be a path or a PIL image, got {type(item).__name__}")
            image = bounded(image, self.max_side)
            if min(image.size) < MIN_TEXT_SIDE:  # a strip shrunk to a line or two: nothing legible left
                out.append([])
                continue
            result, _ = self.engine(image)  # a PIL RGB image; RapidOCR converts it to BGR itself
            boxes = []
            for points, text, score in result or []:
                xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
                boxes.append(OcrBox(str(text), float(score), (min(xs), min(ys), max(xs), max(ys))))
            out.append(boxes)
        return out


def bounded(image: Image.Image, max_side: int, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """``image`` (RGB) at most ``max_side`` pixels a side (Lanczos, aspect kept) and at most ``max_aspect``
    long (the short side padded with white, image top-left); the same object when both already hold. A
    short side under :data:`MIN_TEXT_SIDE` is returned as it is (the caller reads nothing from it)."""
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.LANCZOS)
    w, h = image.size
    if min(w, h) < MIN_TEXT_SIDE or max(w, h) <= max_aspect * min(w, h):
        return image
    side = -(-max(w, h) // int(max_aspect))
    canvas = Image.new("RGB", (w, max(h, side)) if w >= h else (max(w, side), h), "white")
    canvas.paste(image, (0, 0))
    return canvas


def reading_order(boxes: Sequence[OcrBox]) -> list[list[OcrBox]]:
    """Group boxes into lines and order them: lines top to bottom, boxes in a line left to right.

    Two boxes are on one line when their vertical extents overlap by at least half the height of
    the smaller one. Returns the lines, each a list of boxes.
    """
    lines: list[list[OcrBox]] = []
    for b in sorted(boxes, key=lambda b: ((b.box[1] + b.box[3]) / 2, b.box[0])):
        top, bottom = b.box[1], b.box[3]
        for line in lines:
            lt, lb = min(x.box[1] for x in line), max(x.box[3] for x in line)
            overlap = min(bottom, lb) - max(top, lt)
            if overlap >= 0.5 * min(bottom - top, lb - lt):
                line.append(b)
                break
        else:
            lines.append([b])
    lines.sort(key=lambda line: sum((x.box[1] + x.box[3]) / 2 for x in line) / len(line))
    return [sorted(line, key=lambda x: x.box[0]) for line in lines]


_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def clean_text(boxes: Sequence[OcrBox], min_score: float = MIN_SCORE, max_chars: int = MAX_CHARS) -> str:
    """The text of an image's OCR boxes as one short string.

    Drops boxes with a confidence below ``min_score`` and boxes with fewer than two letters or
    digits; removes control and zero-width characters; joins the rest in reading order
    (:func:`reading_order`) with single spaces; cuts the result to ``max_chars`` characters at a
    word boundary, ending it with ``...`` when cut. Returns ``""`` when nothing is left.
    """
    kept = []
    for b in boxes:
        text = _CONTROL.sub("", _SPACE.sub(" ", b.text)).strip()
        if b.score >= min_score and sum(c.isalnum() for c in text) >= 2:
            kept.append(OcrBox(text, b.score, b.box))
    text = " ".join(b.text for line in reading_order(kept) for b in line)
    if len(text) > max_chars:
        cut = text[:max_chars - 3]
        cut = cut[:cut.rfind(" ")] if " " in cut else cut
        text = cut.rstrip() + "..."
    return text
