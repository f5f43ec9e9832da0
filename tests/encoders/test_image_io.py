"""load_image on real posters and on edge-case files written here with Pillow (or byte by byte);
paths that are not regular files (devices, FIFOs, sockets, oversized sparse files) refused before
they are read (llmrec.encoders.media_file)."""

import os
import socket
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmrec.config import Config
from llmrec.encoders import media_file
from llmrec.encoders.image_io import load_image, to_rgb
from llmrec.encoders.media_file import human_bytes, open_media, sha256_of
from llmrec.errors import ConfigError, DataError, ImageError, LLMRecError
from tests.support.hang_guard import within

POSTERS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "posters"
GREY_POSTERS = ["3814.jpg", "2639.jpg"]  # the two greyscale JPEGs among the posters
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def _close(pixel, expected, tol):
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(pixel, expected, strict=True))


def _halves(size, left=RED, right=BLUE):
    """An RGB image, left half one colour, right half another."""
    w, h = size
    im = Image.new("RGB", size, left)
    im.paste(Image.new("RGB", (w - w // 2, h), right), (w // 2, 0))
    return im


def _png(path, width, height, bit_depth, colour_type, raw_rows=b"", idat=None):
    """Write a PNG byte by byte (Pillow cannot write 16-bit RGB, nor lie about its size)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    data = zlib.compress(raw_rows) if idat is None else idat
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


# -- real posters ---------------------------------------------------------------------------
def test_real_posters_load_as_rgb_unchanged():
    paths = sorted(POSTERS.glob("*.jpg"))[:20]
    assert len(paths) == 20
    for p in paths:
        im = load_image(p)
        assert im.mode == "RGB"
        with Image.open(p) as ref:
            assert im.size == ref.size  # 300 px wide: below image_max_side, not resampled
            assert np.array_equal(np.asarray(im), np.asarray(ref.convert("RGB")))


@pytest.mark.parametrize("name", GREY_POSTERS)
def test_greyscale_posters_become_grey_rgb(name):
    with Image.open(POSTERS / name) as ref:
        assert ref.mode == "L"
        grey = np.asarray(ref)
    arr = np.asarray(load_image(POSTERS / name))
    assert arr.shape == (*grey.shape, 3)
    for c in range(3):
        assert np.array_equal(arr[..., c], grey)


# -- colour modes ---------------------------------------------------------------------------
def test_cmyk_jpeg(tmp_path):
    im = Image.new("CMYK", (64, 32), (0, 255, 255, 0))      # left: pure red in CMYK
    im.paste(Image.new("CMYK", (32, 32), (0, 0, 0, 255)), (32, 0))  # right: black
    im.save(tmp_path / "cmyk.jpg", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as check:
        assert check.mode == "CMYK"
    out = load_image(tmp_path / "cmyk.jpg")
    assert out.mode == "RGB" and out.size == (64, 32)
    assert _close(out.getpixel((10, 16)), RED, 12)
    assert _close(out.getpixel((54, 16)), (0, 0, 0), 12)


def test_greyscale_jpeg(tmp_path):
    im = Image.new("L", (32, 32), 40)
    im.paste(Image.new("L", (16, 32), 200), (16, 0))
    im.save(tmp_path / "grey.jpg", quality=95)
    out = load_image(tmp_path / "grey.jpg")
    assert out.mode == "RGB"
    assert _close(out.getpixel((4, 16)), (40, 40, 40), 3)
    assert _close(out.getpixel((28, 16)), (200, 200, 200), 3)


def test_palette_png_with_transparency_is_composited_on_white(tmp_path):
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)  # index 0 blue (transparent), 1 red
    for x in range(4):
        for y in range(8):
            im.putpixel((x, y), 1)
    im.save(tmp_path / "pal.png", transparency=0)
    with Image.open(tmp_path / "pal.png") as check:
        assert check.mode == "P" and check.info.get("transparency") == 0
    out = load_image(tmp_path / "pal.png")
    assert out.getpixel((1, 1)) == RED
    assert out.getpixel((6, 1)) == WHITE  # not the palette's blue, not black


def test_alpha_pngs_are_composited_on_white(tmp_path):
    Image.new("RGBA", (4, 4), (0, 0, 0, 128)).save(tmp_path / "rgba.png")
    Image.new("LA", (4, 4), (0, 0)).save(tmp_path / "la.png")
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "key.png", transparency=(1, 2, 3))
    assert _close(load_image(tmp_path / "rgba.png").getpixel((0, 0)), (127, 127, 127), 1)
    assert load_image(tmp_path / "la.png").getpixel((0, 0)) == WHITE
    assert load_image(tmp_path / "key.png").getpixel((0, 0)) == WHITE


def test_16bit_greyscale_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 10 * 257, 16384, 32896, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode.startswith("I")
        assert check.convert("RGB").getpixel((1, 0)) == (255, 255, 255)  # what plain Pillow does: clip
    out = np.asarray(load_image(tmp_path / "g16.png"))
    assert out[0, :, 0].tolist() == [0, 4, 10, 64, 128, 255]
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])


def test_16bit_rgb_png_is_scaled(tmp_path):
    pixels = [(0x4000, 0x8080, 0xFFFF), (0x1234, 0x0000, 0x00FF)]  # two pixels, 16 bits a channel
    row = b"\x00" + b"".join(struct.pack(">HHH", *p) for p in pixels)
    _png(tmp_path / "rgb16.png", 2, 1, 16, 2, row)
    out = load_image(tmp_path / "rgb16.png")
    for x, p in enumerate(pixels):
        assert _close(out.getpixel((x, 0)), [v / 257 for v in p], 1)


def test_16bit_values_in_a_32bit_image_and_float_images():
    i32 = Image.fromarray(np.array([[0, 1000, 65535, 70000, -5]], np.int32))
    assert i32.mode == "I"
    assert np.asarray(to_rgb(i32))[0, :, 0].tolist() == [0, 4, 255, 255, 0]
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0, np.nan]], np.float32))
    assert f.mode == "F"
    assert np.asarray(to_rgb(f))[0, :, 0].tolist() == [0, 128, 255, 255, 0]


# -- orientation, animation, size -----------------------------------------------------------
@pytest.mark.parametrize("orientation, size, first, second", [
    (3, (40, 20), ("left", BLUE), ("right", RED)),    # rotated 180
    (6, (20, 40), ("top", RED), ("bottom", BLUE)),    # shown rotated 90 clockwise
    (8, (20, 40), ("top", BLUE), ("bottom", RED)),    # shown rotated 90 counter-clockwise
])
def test_exif_orientation_is_applied(tmp_path, orientation, size, first, second):
    exif = Image.Exif()
    exif[0x0112] = orientation
    _halves((40, 20)).save(tmp_path / "rot.jpg", quality=95, exif=exif)
    out = load_image(tmp_path / "rot.jpg")
    assert out.size == size
    w, h = out.size
    where = {"left": (w // 4, h // 2), "right": (3 * w // 4, h // 2), "top": (w // 2, h // 4), "bottom": (w // 2, 3 * h // 4)}
    for side, colour in (first, second):
        assert _close(out.getpixel(where[side]), colour, 20), side


@pytest.mark.parametrize("ext", ["gif", "webp", "png"])
def test_animated_images_give_the_first_frame(tmp_path, ext):
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, (0, 255, 0), BLUE)]
    path = tmp_path / f"anim.{ext}"
    extra = {"lossless": True} if ext == "webp" else {}
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0, **extra)
    with Image.open(path) as check:
        assert check.n_frames == 3
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (16, 16)
    assert _close(out.getpixel((8, 8)), RED, 2)


def test_large_images_are_downscaled_on_load(tmp_path):
    _halves((4000, 3000)).save(tmp_path / "big.jpg", quality=90)
    _halves((3000, 1000)).save(tmp_path / "big.png")
    out = load_image(tmp_path / "big.jpg", max_side=1024)
    assert out.size == (1024, 768)
    assert _close(out.getpixel((100, 384)), RED, 20) and _close(out.getpixel((900, 384)), BLUE, 20)
    png = load_image(tmp_path / "big.png", max_side=1024)
    assert png.size == (1024, 341)
    assert load_image(tmp_path / "big.png", max_side=3000).size == (3000, 1000)


def test_pixel_limit_refuses_with_the_file_named(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (300, 200), RED).save(path)
    assert load_image(path, max_pixels=60_000).size == (300, 200)
    with pytest.raises(ImageError) as e:
        load_image(path, max_pixels=59_999)
    assert str(path) in str(e.value) and "image_max_pixels" in str(e.value) and "60,000" in str(e.value)


@pytest.mark.parametrize("width, height", [(12_000, 10_000), (20_000, 20_000)])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, width, height):
    # A header claiming 120 MP (over llmrec's default limit, under Pillow's hard one) or 400 MP (over
    # both), with almost no data: refused from the header, no pixel buffer allocated, no warning leaked.
    path = _png(tmp_path / "bomb.png", width, height, 8, 0, idat=zlib.compress(b"\x00" * 64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError) as e:
            load_image(path)
    message = str(e.value)
    assert str(path) in message and ("image_max_pixels" in message or "too large" in message)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


# -- bad files ------------------------------------------------------------------------------
def test_truncated_jpeg(tmp_path):
    data = (POSTERS / "1.jpg").read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert e.value.path == str(path) and str(path) in str(e.value) and "truncated" in str(e.value)


def test_corrupt_png_data(tmp_path):
    path = tmp_path / "bad.png"
    Image.new("RGB", (32, 32), RED).save(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") + 8
    data[at] ^= 0xFF  # one flipped byte: the chunk's CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert str(path) in str(e.value)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is a text file, not a poster\n")
    with pytest.raises(ImageError) as e:
        load_image(path)
    assert str(path) in str(e.value) and "not an image" in str(e.value)


def test_empty_missing_and_directory(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    for path, words in [(tmp_path / "empty.png", "not an image"), (tmp_path / "nope.jpg", "no such file"),
                        (tmp_path, "directory")]:
        with pytest.raises(ImageError) as e:
            load_image(path)
        assert str(path) in str(e.value) and words in str(e.value)


def test_image_error_is_a_typed_data_error():
    e = ImageError("/x/poster.jpg", "truncated")
    assert isinstance(e, DataError) and isinstance(e, LLMRecError) and isinstance(e, ValueError)
    assert (e.path, e.reason, str(e)) == ("/x/poster.jpg", "truncated", "/x/poster.jpg: truncated")


# -- paths that are not regular files (checked before anything is opened or read) ----------
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_devices_are_refused_unread(device):
    e = within(lambda: load_image(device))
    assert isinstance(e, ImageError) and e.path == device, e
    assert e.reason.startswith("not a regular file (character device)"), e.reason


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "poster.jpg"
    os.mkfifo(fifo)
    e = within(lambda: load_image(fifo), fifos=[fifo])
    assert isinstance(e, ImageError) and e.path == str(fifo) and "not a regular file (FIFO)" in e.reason, e


def test_socket_and_link_to_a_device(tmp_path):
    sock_path = tmp_path / "s.jpg"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        e = within(lambda: load_image(sock_path))
        assert isinstance(e, ImageError) and "not a regular file (socket)" in e.reason, e
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    e = within(lambda: load_image(tmp_path / "zero.jpg"))
    assert isinstance(e, ImageError) and "(character device /dev/zero, through a symbolic link)" in e.reason, e


def test_size_limit_and_sparse_file(tmp_path):
    poster = POSTERS / "2.jpg"
    size = poster.stat().st_size
    assert load_image(poster, max_bytes=size).size[0] > 0  # exactly the limit: read
    with pytest.raises(ImageError, match=f"over media_max_bytes {size - 1}"):
        load_image(poster, max_bytes=size - 1)
    sparse = tmp_path / "huge.jpg"
    with open(sparse, "wb") as f:
        f.truncate(12_345_678_901)  # 12 GB of hole: nothing written, nothing may be read
    e = within(lambda: load_image(sparse), seconds=5)
    assert isinstance(e, ImageError), e
    assert e.reason == "12.3 GB (12,345,678,901 bytes), over media_max_bytes 200000000", e.reason


def test_stat_open_race_is_caught_on_the_opened_file(tmp_path, monkeypatch):
    # The path passes the stat (a regular file then) and is a FIFO when opened: the open must not
    # block (O_NONBLOCK), and the fstat of what was opened refuses it.
    regular = os.stat(POSTERS / "2.jpg")
    fifo = tmp_path / "swapped.jpg"
    os.mkfifo(fifo)
    real_stat = os.stat
    monkeypatch.setattr(media_file.os, "stat", lambda p, *a, **k: regular if str(p) == str(fifo) else real_stat(p, *a, **k))
    e = within(lambda: open_media(fifo, 10**9, ImageError, "image").close(), fifos=[fifo])
    assert isinstance(e, ImageError) and "not a regular file (FIFO)" in e.reason, e


def test_opened_file_is_blocking_and_hash_is_capped(tmp_path):
    import fcntl
    import hashlib

    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 3000)
    with open_media(path, 3000, ImageError, "image") as f:
        assert not fcntl.fcntl(f.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
        assert sha256_of(f, path, 3000, ImageError) == hashlib.sha256(b"x" * 3000).hexdigest()
        with pytest.raises(ImageError, match="grew past media_max_bytes 2999"):  # more bytes than were allowed
            sha256_of(f, path, 2999, ImageError)
    assert [human_bytes(n) for n in (0, 999, 1000, 1_500_000, 999_960_000, 12_345_678_901)] == [
        "0 B", "999 B", "1.0 kB", "1.5 MB", "1.0 GB", "12.3 GB"]


# -- configuration --------------------------------------------------------------------------
def test_image_config_keys():
    cfg = Config.load(env={"LLMREC_IMAGE_MAX_PIXELS": "5000000", "LLMREC_IMAGE_MAX_SIDE": "512"})
    assert (cfg.image_max_pixels, cfg.image_max_side, cfg.image_encoder) == (5_000_000, 512, "efficientnet-lite0")
    for key, value in [("image_max_side", 100), ("image_max_pixels", 0), ("image_encoder", "clip")]:
        with pytest.raises(ConfigError, match=key):
            Config.load(env={}, overrides={key: value})
