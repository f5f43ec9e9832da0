"""Image loading through Pillow that copes with real files: ``load_image(path) -> RGB PIL image``.

Handled: CMYK and greyscale JPEGs, palette/greyscale/RGB images with transparency (composited on
white), 16-bit images (scaled to 8 bits, not clipped), EXIF orientation, animated GIF/WebP/PNG
(the first frame), very large images (downscaled on load; past ``image_max_pixels`` refused before
decoding). A missing, truncated or corrupt file, one that is not an image, and a path that is not
a regular file of at most ``media_max_bytes`` (a device, a FIFO, a directory: refused before it is
opened, see :mod:`llmrec.encoders.media_file`) raise :class:`~llmrec.errors.ImageError` naming the file.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from llmrec.config import Config
from llmrec.encoders.media_file import DEFAULT_MAX_BYTES, open_media
from llmrec.errors import ImageError

DEFAULT_MAX_PIXELS: int = Config.default("image_max_pixels")
DEFAULT_MAX_SIDE: int = Config.default("image_max_side")

# What Pillow's decoders raise on broken data: OSError ("image file is truncated", "broken data
# stream"), SyntaxError (some plugins' header checks), and a few low-level errors.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError)
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def load_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Image.Image:
    """Open an image file as an 8-bit RGB PIL image, upright, at most ``max_side`` pixels a side.

    The path is checked before it is opened (:func:`~llmrec.encoders.media_file.open_media`: a
    regular file of at most ``max_bytes``; a device, FIFO, socket or directory is never read). The
    pixel count is checked from the header before any pixel is decoded. A JPEG larger than
    needed is decoded at a reduced DCT scale (``Image.draft``), then every image is resampled
    (Lanczos) to fit ``max_side`` x ``max_side``, aspect ratio kept. Animated files give their first
    frame. See :func:`to_rgb` for the colour conversions.

    Args:
        path: the image file (any format Pillow reads: JPEG, PNG, GIF, WebP, BMP, TIFF, ...).
        max_pixels: refuse images with more than this many pixels (config ``image_max_pixels``).
        max_side: longest side of the result, in pixels (config ``image_max_side``).
        max_bytes: refuse files larger than this, bytes (config ``media_max_bytes``).

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``RGB`` (its file closed).

    Raises:
        ImageError: naming the file: it does not exist or cannot be read; it is not a regular file
            or is larger than ``max_bytes``; it is not an image; its data is truncated or corrupt;
            it has more than ``max_pixels`` pixels (or more than Pillow's own decompression-bomb
            limit, 2 x ``PIL.Image.MAX_IMAGE_PIXELS``); its mode cannot be converted to RGB.
    """
    path = Path(path)
    with open_media(path, max_bytes, ImageError, "image") as f, open_image(f, path, max_pixels) as im:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                if im.format == "JPEG" and max(im.size) > max_side:
                    im.draft(None, (max_side, max_side))  # DCT scaling: both sides stay >= max_side
                im.load()
            out = to_rgb(im, path)
        except ImageError:
            raise
        except _DECODE_ERRORS as e:
            raise ImageError(path, f"truncated or corrupt image data ({type(e).__name__}: {e})") from None
    if max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def open_image(f: BinaryIO, path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read an image's header from an open binary file (no pixel is decoded): the lazy PIL image.

    Args:
        f: the file, at its start (e.g. from :func:`~llmrec.encoders.media_file.open_media`); it
            stays open when the image is closed. path: the file's name, in errors.
        max_pixels: refuse images with more than this many pixels (config ``image_max_pixels``).
    Raises:
        ImageError: naming ``path``: not an image Pillow recognises, an unreadable header, more
            than ``max_pixels`` pixels (or past Pillow's decompression-bomb limit).
    """
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS; the limit that governs is max_pixels, checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(f)
    except Image.DecompressionBombError as e:
        raise ImageError(path, f"refused as too large to decode ({e})") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file (Pillow does not recognise its format)") from None
    except _DECODE_ERRORS as e:
        raise ImageError(path, f"unreadable image header ({type(e).__name__}: {e})") from None
    width, height = im.size
    if width * height > max_pixels:
        im.close()
        raise ImageError(path, f"{width} x {height} = {width * height:,} pixels is more than the limit of "
                               f"{max_pixels:,} (config image_max_pixels)")
    return im


def to_rgb(im: Image.Image, path: str | os.PathLike | None = None) -> Image.Image:
    """A PIL image of any mode as an 8-bit RGB image, upright (EXIF orientation applied).

    - transparency (an alpha channel, or a palette/greyscale/RGB ``transparency`` key) is
      composited on white;
    - 16-bit greyscale (``I;16*``) is scaled by 255/65535; 32-bit integer ``I`` is read as 16-bit
      data (how Pillow opens some 16-bit files), values clipped to 0..65535 then scaled; float ``F``
      is read as 0..1. (16-bit RGB/RGBA PNGs are already reduced to 8 bits by Pillow, by their high
      byte, which is a scaling too.)
    - CMYK (Adobe-inverted JPEGs included, which Pillow un-inverts) and every other mode go
      through Pillow's ``convert("RGB")``; embedded ICC profiles are not applied (RGB is taken as sRGB).
    - an animated image gives the frame it is on (the first, for a freshly opened file).

    Args:
        im: an open PIL image. path: the file it came from, named in errors.

    Returns:
        A new ``RGB`` image (``im`` itself when it is already RGB, upright and opaque).

    Raises:
        ImageError: the mode cannot be converted to RGB.
    """
    try:
        im = ImageOps.exif_transpose(im)
    except _DECODE_ERRORS:  # a malformed EXIF block: keep the stored orientation rather than fail
        pass
    mode = im.mode
    try:
        if mode in _SIXTEEN_BIT or mode in ("I", "F"):
            return _high_depth_to_rgb(im)
        if mode in _ALPHA_MODES or im.info.get("transparency") is not None:
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return im if mode == "RGB" else im.convert("RGB")
    except ValueError as e:
        raise ImageError(path if path is not None else "<image>", f"cannot convert image mode {mode!r} to RGB ({e})") from None


def _high_depth_to_rgb(im: Image.Image) -> Image.Image:
    """``I;16*``, ``I`` and ``F`` images to 8-bit RGB by scaling (never by clipping at 255)."""
    arr = np.asarray(im)
    if im.mode == "F":
        scaled = np.clip(np.nan_to_num(arr.astype(np.float64), nan=0.0), 0.0, 1.0) * 255.0
    else:
        scaled = np.clip(arr.astype(np.float64), 0, 65535) * (255.0 / 65535.0)
    return Image.fromarray(np.rint(scaled).astype(np.uint8)).convert("RGB")  # 2-D uint8: mode L
