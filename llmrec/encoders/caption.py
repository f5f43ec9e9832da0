"""Image captions for the text fallback: ``Captioner.caption(images) -> list[str]``.

Where the LLM cannot take an image's soft tokens, an item's image is described to it in words.
No image-to-text model (BLIP, CLIP, ...) ships in any package this machine can install, so the
built-in captioner makes the best caption it can offline: the text printed on the image (OCR: a
poster's title and tagline, see :mod:`llmrec.encoders.ocr`) and the image backbone's most probable
ImageNet-1k classes (:meth:`~llmrec.encoders.image.EfficientNetLite0Encoder.top_classes`; names
from ``imagenet_classes.txt`` beside this file), e.g.::

    Text: "GET SHORTY Attitude plays a part RUSSO DEVITO". Looks like: book jacket, comic book.

Config ``image_captioner`` chooses the captioner:

- ``ocr-labels`` (default): OCR text and ImageNet labels, as above; ``ocr``: the text only;
  ``labels``: the labels only; ``none``: no captions.
- ``module:Class`` (a dotted import path): your own class, built as ``Class(cfg)``, with a
  ``caption(images) -> list[str]`` method (and optionally ``name`` and ``identity() -> dict``,
  recorded with each caption so that a change of captioner re-captions). ``images`` are paths or
  PIL images (ingest passes RGB PIL images already loaded). For example BLIP through transformers,
  where its weights can be had::

      # mycaption.py; config: image_captioner: mycaption:Blip
      from transformers import BlipForConditionalGeneration, BlipProcessor
      from llmrec.encoders.image_io import load_image

      class Blip:
          name = "blip-base"

          def __init__(self, cfg):
              repo = "Salesforce/blip-image-captioning-base"
              self.proc = BlipProcessor.from_pretrained(repo)
              self.model = BlipForConditionalGeneration.from_pretrained(repo).eval()

          def caption(self, images):
              ims = [im if hasattr(im, "size") else load_image(im) for im in images]
              out = self.model.generate(**self.proc(images=ims, return_tensors="pt"), max_new_tokens=30)
              return self.proc.batch_decode(out, skip_special_tokens=True)

A caption is untrusted text (it is read off the image): prompts quote it as data.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from llmrec.config import Config
from llmrec.encoders.image_io import load_image, to_rgb
from llmrec.encoders.ocr import MAX_CHARS, MIN_SCORE, RapidOcr, clean_text
from llmrec.errors import ConfigError, ModelError

ImageInput = str | os.PathLike | Image.Image
BUILT_IN = ("ocr-labels", "ocr", "labels", "none")
CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")
LABELS_K = 3
"""At most this many ImageNet labels in a caption ..."""
LABELS_MIN_PROB = 0.1
"""... each with at least this probability."""


@runtime_checkable
class Captioner(Protocol):
    """What llmrec needs from a captioner: ``caption(images) -> list[str]``, one caption per image
    (``""`` when there is nothing to say), in order. ``images``: paths or PIL images."""

    def caption(self, images: Sequence[ImageInput]) -> list[str]: ...


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order (0 = ``tench``, 999 = ``toilet
    tissue``): the first WordNet lemma of each class, read from ``imagenet_classes.txt``.

    Raises:
        ModelError: the file is missing or does not hold exactly 1000 classes.
    """
    try:
        lines = [line for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines()
                 if line.strip() and not line.startswith("#")]
    except OSError as e:
        raise ModelError(f"cannot read the ImageNet class names {CLASSES_FILE}: {e}") from e
    names = tuple(line.split("\t", 1)[1].split(",")[0].strip() for line in lines if "\t" in line)
    if len(names) != 1000:
        raise ModelError(f"{CLASSES_FILE} holds {len(names)} ImageNet classes, not 1000: reinstall llmrec")
    return names


class OcrLabelsCaptioner:
    """The built-in captioner: OCR text and/or the image backbone's ImageNet labels (module docstring).

    Args:
        cfg: the config (``threads``, image loading limits, the image encoder's settings).
        ocr, labels: which parts to make.
        encoder: an image encoder with ``top_classes`` to reuse (default: :func:`load_image_encoder`
            of ``cfg``, built on first use).
        min_score, max_chars: OCR cleaning (:func:`llmrec.encoders.ocr.clean_text`).

    Raises:
        ModelError: the OCR engine or the image encoder cannot be loaded.
    """

    def __init__(self, cfg: Config | None = None, ocr: bool = True, labels: bool = True, encoder=None,
                 min_score: float = MIN_SCORE, max_chars: int = MAX_CHARS):
        if not (ocr or labels):
            raise ValueError("a caption needs OCR text, labels or both")
        self.cfg = cfg if cfg is not None else Config()
        self.use_ocr, self.use_labels = ocr, labels
        self.name = "ocr-labels" if ocr and labels else ("ocr" if ocr else "labels")
        self.min_score, self.max_chars = min_score, max_chars
        self.ocr = RapidOcr(self.cfg) if ocr else None
        self._encoder = encoder
        if labels:
            imagenet_classes()  # a missing class file is refused now, not at the first image

    @property
    def encoder(self):
        if self._encoder is None:
            from llmrec.encoders.image import load_image_encoder

            self._encoder = load_image_encoder(self.cfg)
        return self._encoder

    def caption(self, images: Sequence[ImageInput]) -> list[str]:
        """One caption per image: ``Text: "...". Looks like: a, b.`` (either part left out when
        empty or not configured; ``""`` when both are). Labels: the classifier's top
        ``LABELS_K`` classes with probability >= ``LABELS_MIN_PROB``.

        Raises:
            ImageError: a path cannot be loaded, naming the file. TypeError: as the encoder's.
        """
        if isinstance(images, (str, os.PathLike, Image.Image)):
            raise TypeError("pass a sequence of images (paths or PIL images), not a single one")
        images = [self._load(x) for x in images]
        texts = self.ocr_texts(images) if self.use_ocr else [""] * len(images)
        labels = self.labels(images) if self.use_labels else [[] for _ in images]
        out = []
        for text, names in zip(texts, labels, strict=True):
            parts = []
            if text:
                parts.append(f'Text: "{text}".')
            if names:
                parts.append(f"Looks like: {', '.join(names)}.")
            out.append(" ".join(parts))
        return out

    def ocr_texts(self, images: Sequence[ImageInput]) -> list[str]:
        """The cleaned OCR text of each image (``""`` when none is found)."""
        return [clean_text(b, self.min_score, self.max_chars) for b in self.ocr.read(images)]

    def labels(self, images: Sequence[ImageInput]) -> list[list[str]]:
        """The names of each image's most probable ImageNet classes (see :meth:`caption`)."""
        if not images:
            return []
        idx, probs = self.encoder.top_classes(images, k=LABELS_K)
        names = imagenet_classes()
        return [[names[i] for i, p in zip(row, prow, strict=True) if p >= LABELS_MIN_PROB]
                for row, prow in zip(idx.tolist(), probs.tolist(), strict=True)]

    def identity(self) -> dict:
        """What the captions depend on (JSON-serialisable), with ``"id"``: a 16-hex-digit hash."""
        core = {"captioner": self.name, "min_score": self.min_score, "max_chars": self.max_chars,
                "labels_k": LABELS_K, "labels_min_prob": LABELS_MIN_PROB}
        if self.ocr is not None:
            core["ocr"] = self.ocr.identity()
        if self.use_labels:
            core["encoder"] = self.encoder.identity()["id"]
        core["id"] = hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]
        return core

    def _load(self, item: ImageInput) -> Image.Image:
        if isinstance(item, Image.Image):
            return to_rgb(item)
        if isinstance(item, (str, os.PathLike)):
            return load_image(item, self.cfg.image.max_pixels, self.cfg.image.max_side)
        raise TypeError(f"an image must be a path or a PIL image, got {type(item).__name__}")


def load_captioner(cfg: Config, encoder=None) -> Captioner | None:
    """The captioner named by config ``image_captioner`` (module docstring); None for ``none``.

    Args:
        encoder: the image encoder to reuse for labels (saves loading it twice).
    Raises:
        ConfigError: a ``module:Class`` that cannot be imported, is not found, or whose instance
            has no ``caption`` method.
        ModelError: the OCR engine or the encoder cannot be loaded (from the captioner).
    """
    name = cfg.image.captioner
    if name == "none":
        return None
    if name in BUILT_IN:
        return OcrLabelsCaptioner(cfg, ocr=name != "labels", labels=name != "ocr", encoder=encoder)
    module, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ConfigError(f"config key 'image_captioner': cannot import module {module!r} ({e})") from None
    except AttributeError:
        raise ConfigError(f"config key 'image_captioner': module {module!r} has no {attr!r}") from None
    captioner = factory(cfg)
    if not callable(getattr(captioner, "caption", None)):
        raise ConfigError(f"config key 'image_captioner': {name} built an object without a caption(images) method")
    return captioner


def captioner_id(captioner) -> str:
    """A short string naming a captioner and its settings: ``identity()["id"]`` when it has one,
    else its ``name`` (or class path); ``""`` for None."""
    if captioner is None:
        return ""
    ident = getattr(captioner, "identity", None)
    if callable(ident):
        got = ident()
        if isinstance(got, dict) and got.get("id"):
            return str(got["id"])
    cls = type(captioner)
    return str(getattr(captioner, "name", None) or f"{cls.__module__}:{cls.__qualname__}")
