"""load_audio on the real clips and on files written here (WAV, FLAC, MP3 by libsndfile; cut and
damaged copies byte by byte): 16 kHz mono float32, the length cap, and typed errors naming the file;
paths that are not regular files (devices, FIFOs, oversized sparse files) refused before they are read."""

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from llmrec.config import Config
from llmrec.encoders.audio_io import (
    SAMPLE_RATE,
    check_not_silent,
    level_dbfs,
    load_audio,
    to_16k_mono,
)
from llmrec.errors import AudioError, ConfigError, DataError, LLMRecError
from tests.support.hang_guard import within

AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "audio"
SPEECH = AUDIO / "198-209-0000.ogg"  # LibriSpeech, 22,050 Hz mono, 13.9 s


def _best_corr(a: np.ndarray, b: np.ndarray, max_lag: int = 2000) -> float:
    """Largest normalised correlation of a and b over lags -max_lag..max_lag (MP3 adds a delay)."""
    n = min(len(a), len(b)) - 2 * max_lag
    ref = a[max_lag:max_lag + n]
    best = 0.0
    for lag in range(-max_lag, max_lag + 1, 1):
        seg = b[max_lag + lag:max_lag + lag + n]
        best = max(best, float(np.dot(ref, seg) / (np.linalg.norm(ref) * np.linalg.norm(seg) + 1e-12)))
    return best


@pytest.fixture(scope="module")
def speech():
    return load_audio(SPEECH)


def test_real_ogg_is_16k_mono_float32(speech):
    info = sf.info(str(SPEECH))
    assert (speech.source_rate, speech.channels) == (22050, 1)
    assert speech.samples.dtype == np.float32 and speech.samples.ndim == 1
    assert abs(len(speech.samples) - info.frames * SAMPLE_RATE / info.samplerate) <= 1
    assert abs(speech.seconds - info.duration) < 1e-3 and not speech.truncated
    assert -25 < level_dbfs(speech.samples) < -5 and np.abs(speech.samples).max() <= 1.0


def test_every_shared_clip_loads():
    clips = sorted(AUDIO.glob("*.ogg"))
    assert len(clips) == 10
    for p in clips:
        c = load_audio(p)
        assert c.seconds > 2 and np.isfinite(c.samples).all(), p


@pytest.mark.parametrize("fmt, ext, corr", [("WAV", "wav", 0.999), ("FLAC", "flac", 0.999), ("MP3", "mp3", 0.95)])
def test_stereo_44k_files_match_the_mono_original(speech, tmp_path, fmt, ext, corr):
    # The clip upsampled to 44.1 kHz, as stereo (left = right), written by libsndfile in each format.
    from scipy.signal import resample_poly

    x = resample_poly(speech.samples, 441, 160).astype(np.float32)
    path = tmp_path / f"clip.{ext}"
    sf.write(str(path), np.stack([x, x], axis=1), 44100, format=fmt)
    c = load_audio(path)
    assert (c.source_rate, c.channels) == (44100, 2)
    assert abs(len(c.samples) - len(speech.samples)) <= SAMPLE_RATE // 20  # MP3 frames pad the end
    assert _best_corr(speech.samples, c.samples) > corr


def test_resampling_keeps_the_pitch_and_downmix_averages(tmp_path):
    for rate in (8000, 22050, 48000):
        t = np.arange(rate * 2) / rate
        left = 0.5 * np.sin(2 * np.pi * 440 * t)
        path = tmp_path / f"tone{rate}.wav"
        sf.write(str(path), np.stack([left, np.zeros_like(left)], axis=1), rate, subtype="FLOAT")
        x = load_audio(path).samples
        assert len(x) == 2 * SAMPLE_RATE
        peak_hz = np.argmax(np.abs(np.fft.rfft(x))) * SAMPLE_RATE / len(x)
        assert abs(peak_hz - 440) <= 1
        mid = x[4000:-4000]  # away from the filter's edges
        assert abs(np.abs(mid).max() - 0.25) < 0.01  # (left + silent right) / 2


def test_to_16k_mono_shapes_and_errors():
    assert to_16k_mono(np.zeros((441, 2)), 44100).shape == (160,)
    assert to_16k_mono(np.zeros(0), 22050).shape == (0,)
    with pytest.raises(ValueError, match="sample rate"):
        to_16k_mono(np.zeros(10), 0)
    with pytest.raises(ValueError, match="shape"):
        to_16k_mono(np.zeros((2, 2, 2)), 16000)


def test_length_cap(speech):
    c = load_audio(SPEECH, max_seconds=5)
    assert c.truncated and len(c.samples) == 5 * SAMPLE_RATE
    np.testing.assert_allclose(c.samples[:SAMPLE_RATE * 4], speech.samples[:SAMPLE_RATE * 4], atol=1e-3)
    assert not load_audio(SPEECH, max_seconds=60).truncated
    with pytest.raises(ValueError):
        load_audio(SPEECH, max_seconds=0)


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    data = SPEECH.read_bytes()
    out = {}

    def put(name: str, content: bytes, reason: str):
        (tmp / name).write_bytes(content)
        out[name] = (tmp / name, reason)

    put("empty.ogg", b"", "empty file")
    put("notes.ogg", b"not audio at all, just some text\n" * 20, "not an audio file")
    put("header.ogg", data[:200], "truncated")
    put("cut.ogg", data[: len(data) // 3], "truncated")
    damaged = bytearray(data)
    damaged[5000:20000] = np.random.default_rng(0).integers(0, 256, 15000, dtype=np.uint8).tobytes()
    put("damaged.ogg", bytes(damaged), "corrupt Ogg stream")
    sf.write(str(tmp / "w.wav"), np.zeros((16000, 2), np.float32) + 0.1, 16000)
    wav = (tmp / "w.wav").read_bytes()
    put("cut.wav", wav[: len(wav) // 2], "truncated")
    sf.write(str(tmp / "f.flac"), np.random.default_rng(1).uniform(-0.5, 0.5, 48000), 16000)
    flac = (tmp / "f.flac").read_bytes()
    put("cut.flac", flac[: len(flac) // 2], "corrupt")
    sf.write(str(tmp / "none.wav"), np.zeros(0, np.float32), 16000)
    out["none.wav"] = (tmp / "none.wav", "no audio samples")
    sf.write(str(tmp / "nan.wav"), np.array([0.1, np.nan] * 500, np.float32), 16000, subtype="FLOAT")
    out["nan.wav"] = (tmp / "nan.wav", "NaN")
    out["missing.ogg"] = (tmp / "missing.ogg", "no such file")
    (tmp / "folder.ogg").mkdir()
    out["folder.ogg"] = (tmp / "folder.ogg", "is a directory")
    return out


def test_bad_files_raise_audio_error_naming_the_file(tmp_path):
    for name, (path, reason) in _bad_files(tmp_path).items():
        with pytest.raises(AudioError) as e:
            load_audio(path)
        assert e.value.path == str(path) and str(path) in str(e.value), name
        assert reason.lower() in e.value.reason.lower(), (name, e.value.reason)
        assert isinstance(e.value, DataError) and isinstance(e.value, LLMRecError)


def test_devices_fifo_and_sparse_file_are_refused_unread(tmp_path):
    fifo = tmp_path / "clip.ogg"
    os.mkfifo(fifo)
    sparse = tmp_path / "huge.wav"
    with open(sparse, "wb") as f:
        f.truncate(2_000_000_001)  # 2 GB of hole
    cases = [("/dev/zero", "not a regular file (character device)"),
             ("/dev/urandom", "not a regular file (character device)"),
             (fifo, "not a regular file (FIFO)"),
             (sparse, "2.0 GB (2,000,000,001 bytes), over media_max_bytes 200000000")]
    for path, reason in cases:
        e = within(lambda p=path: load_audio(p), fifos=[fifo])
        assert isinstance(e, AudioError) and e.path == str(path), (path, e)
        assert reason in e.reason, (path, e.reason)
    size = SPEECH.stat().st_size
    assert load_audio(SPEECH, max_seconds=1, max_bytes=size).seconds == 1.0  # exactly the limit: read
    with pytest.raises(AudioError, match=f"over media_max_bytes {size - 1}"):
        load_audio(SPEECH, max_bytes=size - 1)


def test_silence_check(speech):
    assert check_not_silent(speech, SPEECH) is speech
    from llmrec.encoders.audio_io import AudioClip

    zeros = AudioClip(np.zeros(SAMPLE_RATE, np.float32), 16000, 1)
    with pytest.raises(AudioError, match="silent"):
        check_not_silent(zeros, "zeros.wav")
    quiet = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 10 ** (-50 / 20)
    assert -51 < level_dbfs(quiet) < -47
    check_not_silent(AudioClip(quiet, 16000, 1), "quiet.wav")  # low-level noise is sound, not silence
    with pytest.raises(AudioError, match="silent"):
        check_not_silent(AudioClip(quiet * 10 ** (-30 / 20), 16000, 1), "quieter.wav")
    assert level_dbfs(np.zeros(0)) == float("-inf")


def test_audio_config_keys():
    cfg = Config.load(env={"LLMREC_INGEST_AUDIO": "auto", "LLMREC_AUDIO_MAX_SECONDS": "30"})
    assert cfg.ingest_audio is None and cfg.audio_max_seconds == 30.0
    assert Config.load(env={"LLMREC_INGEST_AUDIO": "false"}).ingest_audio is False
    for env in ({"LLMREC_AUDIO_MODEL": "large"}, {"LLMREC_AUDIO_MAX_SECONDS": "0"},
                {"LLMREC_AUDIO_MAX_SECONDS": "nan"}):
        with pytest.raises(ConfigError):
            Config.load(env=env)
