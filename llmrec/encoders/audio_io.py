"""Audio loading through libsndfile (the ``soundfile`` wheel bundles libsndfile 1.2: WAV, FLAC,
OGG Vorbis/Opus, MP3 and more): ``load_audio(path) -> AudioClip`` with 16 kHz mono float32 samples.

Any sample rate and channel count: channels are averaged, then resampled to 16 kHz with a
polyphase filter (:func:`scipy.signal.resample_poly`, Kaiser window). At most ``max_seconds``
(config ``audio_max_seconds``) are decoded; a longer file gives its first ``max_seconds``, marked
``truncated``. A missing, empty, corrupt or truncated file, one that is not audio, one with no
samples or non-finite samples, and a path that is not a regular file of at most ``media_max_bytes``
(a device, a FIFO, a directory: refused before it is opened, see :mod:`llmrec.encoders.media_file`)
raise :class:`~llmrec.errors.AudioError` naming the file.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from llmrec.config import Config
from llmrec.encoders.media_file import DEFAULT_MAX_BYTES, open_media
from llmrec.errors import AudioError

SAMPLE_RATE = 16_000
"""Hz: what Whisper reads."""
DEFAULT_MAX_SECONDS: float = Config.default("audio_max_seconds")
SILENCE_DBFS = -60.0
"""A clip whose loudest 25 ms frame is quieter than this (RMS, dB relative to full scale) holds no
sound worth encoding: :func:`check_not_silent` refuses it, and transcription returns ``""``."""
_FRAME = 400  # 25 ms at 16 kHz


@dataclass(frozen=True)
class AudioClip:
    """Decoded audio: ``samples`` float32 ``[n]`` in -1..1 (mono, 16 kHz); ``seconds`` its duration;
    ``source_rate`` (Hz) and ``channels`` of the file; ``truncated``: the file is longer than the
    ``max_seconds`` that were decoded."""

    samples: np.ndarray
    source_rate: int
    channels: int
    truncated: bool = False

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load_audio(path: str | os.PathLike, max_seconds: float = DEFAULT_MAX_SECONDS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> AudioClip:
    """Decode an audio file to 16 kHz mono float32, at most its first ``max_seconds``.

    The path is checked before it is opened (:func:`~llmrec.encoders.media_file.open_media`: a
    regular file of at most ``max_bytes``; a device, FIFO, socket or directory is never read).

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF, ...), any sample
            rate, any number of channels.
        max_seconds: decode at most this many seconds (config ``audio_max_seconds``); > 0.
        max_bytes: refuse files larger than this, bytes (config ``media_max_bytes``).

    Returns:
        An :class:`AudioClip` (samples ``[round(frames * 16000 / rate)]`` float32).

    Raises:
        AudioError: naming the file: missing, a directory, not a regular file, larger than
            ``max_bytes`` or unreadable; empty or not an audio file libsndfile recognises; malformed
            or truncated (fewer frames decoded than its header declares; see
            :func:`check_container` for OGG and WAV); no samples; NaN or infinite samples.
        ValueError: ``max_seconds`` is not > 0.
    """
    if not max_seconds > 0:
        raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
    path = Path(path)
    with open_media(path, max_bytes, AudioError, "audio") as f:
        check_audio_header(f, path)
        with _soundfile(f, path) as sf_file:
            rate, channels, declared = int(sf_file.samplerate), int(sf_file.channels), int(sf_file.frames)
            want = min(declared, math.ceil(max_seconds * rate)) if declared > 0 else math.ceil(max_seconds * rate)
            try:
                data = sf_file.read(frames=want, dtype="float32", always_2d=True)
                truncated = declared > want or (declared <= 0 and len(sf_file.read(frames=1, always_2d=True)) > 0)
            except _SF_ERRORS as e:
                raise _decode_error(e, path) from None
    if len(data) == 0:
        raise AudioError(path, "no audio samples (0 frames)")
    if declared > 0 and len(data) < want - rate // 100:  # libsndfile stops early on a cut file
        raise AudioError(path, f"truncated or corrupt: {len(data)} of the {want} frames its header declares could be decoded")
    if not np.isfinite(data).all():
        raise AudioError(path, "NaN or infinite samples")
    return AudioClip(to_16k_mono(data, rate), rate, channels, truncated)


def check_audio_header(f: BinaryIO, path: str | os.PathLike) -> None:
    """The checks of an open audio file that need no decoding: not empty, :func:`check_container`,
    and a header libsndfile recognises (only the header is read). ``f`` is left at byte 0.

    Raises:
        AudioError: naming ``path``: empty, a broken container, not audio libsndfile recognises.
    """
    if os.fstat(f.fileno()).st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        check_container(f, path)
    except OSError as e:
        raise AudioError(path, f"cannot read the file: {e.strerror or e}") from None
    with _soundfile(f, path):
        pass
    f.seek(0)


_SF_ERRORS = (RuntimeError, OSError, ValueError, TypeError)  # sf.LibsndfileError is a RuntimeError


def _decode_error(e: BaseException, path) -> AudioError:
    msg = getattr(e, "error_string", None) or str(e)
    if "not recognised" in msg.lower() or "unknown format" in msg.lower():
        return AudioError(path, "not an audio file (libsndfile does not recognise its format)")
    return AudioError(path, f"malformed or corrupt audio ({msg})")


def _soundfile(f: BinaryIO, path):
    """libsndfile on ``f``'s descriptor from byte 0 (not closing it): an open ``soundfile.SoundFile``.
    Raises: AudioError (libsndfile refuses the header), naming ``path``."""
    import soundfile as sf

    f.seek(0)
    try:
        return sf.SoundFile(f.fileno(), closefd=False)
    except _SF_ERRORS as e:
        raise _decode_error(e, path) from None


def check_container(f: BinaryIO, path: str | os.PathLike) -> None:
    """Structural checks libsndfile leaves out, on the headers of an open file (its audio data is not read).

    libsndfile decodes what it can of a cut or damaged OGG or WAV file without saying so; here an
    OGG file must be a chain of complete Ogg pages ending with an end-of-stream page, and a WAV
    file's ``data`` chunk must fit in the file. (Damage inside an Ogg page's data, which only its
    CRC would show, is not detected: libsndfile skips such pages.) Other formats: nothing checked.

    Args:
        f: the file (binary, seekable; read from byte 0, left anywhere). path: its name, in errors.
    Raises:
        AudioError: naming ``path``: the OGG page chain is broken or cut, or the WAV data chunk is cut.
        OSError: reading fails.
    """
    f.seek(0)
    head = f.read(12)
    size = os.fstat(f.fileno()).st_size
    if head[:4] == b"OggS":
        pos, flags = 0, 0
        while pos < size:
            f.seek(pos)
            header = f.read(27)
            if header[:4] != b"OggS":
                raise AudioError(path, f"corrupt Ogg stream: no page starts at byte {pos} (damaged or not Ogg data)")
            if len(header) < 27 or len(table := f.read(header[26])) < header[26]:
                raise AudioError(path, f"truncated: the Ogg page at byte {pos} is cut")
            flags, pos = header[5], pos + 27 + len(table) + sum(table)
        if pos > size:
            raise AudioError(path, f"truncated: the last Ogg page needs {pos} bytes, the file has {size}")
        if not flags & 4:
            raise AudioError(path, "truncated: the Ogg stream has no end-of-stream page")
    elif head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            kind, n = struct.unpack("<4sI", f.read(8))
            if kind == b"data":
                if n not in (0, 0xFFFFFFFF) and pos + 8 + n > size:  # 0 / -1: a stream writer's "unknown"
                    raise AudioError(path, f"truncated: its WAV data chunk declares {n} bytes, "
                                           f"{size - pos - 8} are in the file")
                return
            pos += 8 + n + (n & 1)


def to_16k_mono(data: np.ndarray, rate: int) -> np.ndarray:
    """Samples ``[n]`` or ``[n, channels]`` at ``rate`` Hz as 16 kHz mono float32 ``[m]``,
    ``m = ceil(n * 16000 / rate)`` (channels averaged, polyphase resampling, clipped to -1..1).

    Raises:
        ValueError: ``rate`` not a positive integer, or ``data`` not 1-D / 2-D.
    """
    from scipy.signal import resample_poly

    if int(rate) != rate or rate <= 0:
        raise ValueError(f"sample rate must be a positive integer (Hz), got {rate}")
    data = np.asarray(data, np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32)
    elif data.ndim != 1:
        raise ValueError(f"audio must be [n] or [n, channels], got shape {data.shape}")
    rate = int(rate)
    if rate != SAMPLE_RATE and len(data):
        g = math.gcd(SAMPLE_RATE, rate)
        data = resample_poly(data, SAMPLE_RATE // g, rate // g).astype(np.float32)
    return np.clip(data, -1.0, 1.0).astype(np.float32, copy=False)


def level_dbfs(samples: np.ndarray) -> float:
    """The loudest 25 ms frame's RMS in dB relative to full scale (``-inf`` for digital silence or
    no samples); ``samples`` float ``[n]`` at 16 kHz in -1..1."""
    x = np.asarray(samples, np.float64)
    if x.size == 0:
        return float("-inf")
    n = -(-x.size // _FRAME) * _FRAME
    frames = np.pad(x, (0, n - x.size)).reshape(-1, _FRAME)
    rms = float(np.sqrt((frames ** 2).mean(axis=1)).max())
    return 20 * math.log10(rms) if rms > 0 else float("-inf")


def check_not_silent(clip: AudioClip, path: str | os.PathLike) -> AudioClip:
    """``clip`` unchanged, or :class:`~llmrec.errors.AudioError` naming ``path`` when it holds only
    silence (its :func:`level_dbfs` is below :data:`SILENCE_DBFS`)."""
    level = level_dbfs(clip.samples)
    if level < SILENCE_DBFS:
        shown = "-inf" if math.isinf(level) else f"{level:.1f}"
        raise AudioError(path, f"silent: the loudest 25 ms is {shown} dBFS, below {SILENCE_DBFS:.0f} dBFS")
    return clip
