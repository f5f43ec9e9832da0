"""The audio part of ``llmrec ingest``: audio vectors, transcripts, failures.

Each item with an ``audio`` path is decoded (:func:`llmrec.encoders.audio_io.load_audio`, at most
config ``audio_max_seconds``), refused when silent, embedded by Whisper's encoder (config
``audio_model``) into the store's ``items_audio`` collection (ids = item ids) and transcribed; the
transcript goes into the item's metadata in the ``items_audio`` collection (key ``transcript``,
``""`` when no speech was found) and, when not empty, in the ``items_text`` collection (the text
fallback). The audio collection's metadata also record what the vector came from: ``audio`` (the
path), ``audio_sha256`` (the file's content), ``encoder`` (its identity), ``seconds`` (decoded),
``source_rate``, ``channels`` and ``audio_truncated`` (the file is longer than the cap).

- **Resumable, per item.** Clips are decoded and embedded
  :data:`~llmrec.ingest.image.MEDIA_CHUNK` (8, or ``encode_batch_size`` when smaller) at a time,
  and each item is written to the store as soon as it is transcribed; an item whose stored path,
  file hash and encoder all match is skipped, so a rerun after an interruption does only the rest.
  A kill loses at most the clip being transcribed and the embedding pass of its group (at most 8
  clips). Upserts are by item id: nothing is duplicated.
- **Media paths are checked before they are read** (:mod:`llmrec.encoders.media_file`): anything
  but a regular file of at most ``media_max_bytes`` (a device, a FIFO, a socket, a directory, an
  oversized or sparse file) is that item's failure without a byte read; then the header is checked
  (:func:`~llmrec.encoders.audio_io.check_audio_header`); then the file is hashed.
- **Failures** (a missing, empty, corrupt, non-audio or silent file, not a regular file, an encoder
  error) are recorded
  per item, with the file and the reason, in ``{data_dir}/failures.jsonl`` (``"kind": "audio"``,
  beside the image records) and reported; the ingest goes on and the item is tried again next time.
  After an ingest an item has an audio vector exactly when its current audio file was encoded. A
  transcription error keeps the vector, without a transcript (tried again next time).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from llmrec.config import Config
from llmrec.data.types import Dataset, Item
from llmrec.encoders.media_file import DEFAULT_MAX_BYTES, open_media, sha256_of
from llmrec.errors import AudioError, StoreError
from llmrec.ingest.media import (
    FAILURES_FILE,
    MEDIA_CHUNK,
    ItemTally,
    MediaModality,
    append_failures,
    encode_isolating,
    failure_record,
    read_failures,
    remove_vectors,
    rewrite_failures,
    sync_text_field,
    write_item,
)

AUDIO_KIND = "audio"
DERIVED_KEYS = ("transcript",)
"""Text-collection metadata keys that ingest derives (from audio), not read from the catalog."""


def audio_wanted(cfg: Config, dataset: Dataset) -> bool:
    """Whether ingest encodes audio: config ``ingest_audio`` when set; else (``auto``) when some item
    names an audio file."""
    if cfg.ingest.audio is not None:
        return bool(cfg.ingest.audio)
    return any(it.audio for it in dataset.items)


class AudioPipeline:
    """The Whisper encoder of a config, loaded once (before ingest writes anything).

    Raises:
        ModelError: the model is not prepared (``llmrec models prepare``) or does not load.
    """

    def __init__(self, cfg: Config):
        from llmrec.encoders.audio import load_audio_encoder

        self.encoder = load_audio_encoder(cfg)
        self.encoder_id = self.encoder.identity()["id"]


def audio_sha256(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The sha256 of an audio file's bytes (hex), once the file is known to be audio.

    The path is ``stat``-ed before it is opened (:func:`~llmrec.encoders.media_file.open_media`),
    then its header is checked (:func:`~llmrec.encoders.audio_io.check_audio_header`), then it is
    hashed: a device, FIFO, oversized file or non-audio file is refused before it is hashed.

    Raises:
        AudioError: naming the file: missing, a directory, not a regular file, over ``max_bytes``
            (config ``media_max_bytes``), unreadable, empty, or not audio libsndfile recognises.
    """
    from llmrec.encoders.audio_io import check_audio_header

    with open_media(path, max_bytes, AudioError, "audio") as f:
        check_audio_header(f, path)
        return sha256_of(f, path, max_bytes, AudioError)


def _failure(item: Item, stage: str, err: BaseException) -> dict:
    return failure_record(AUDIO_KIND, item.audio, item.id, stage, err, AudioError)


# long: one resumable per-item loop (load, embed, transcribe, write, record the failure)
def ingest_audio(cfg: Config, dataset: Dataset, out: Path, text_store, pipeline: AudioPipeline | None,
                 log=print, progress=None) -> dict:
    """Embed and transcribe the audio of ``dataset``'s items into the store at ``out`` (module docstring).

    Args:
        text_store: the store's ``text`` :class:`~llmrec.store.ItemStore` (transcripts go into its
            metadata for items it holds).
        pipeline: the model (None when no item names audio: only stale vectors are removed).
        log: one-line messages. progress: ``progress(done, total)`` after each item is processed (an
            exception it raises stops the ingest; what was written stays).
    Returns:
        A summary: ``audio`` (items naming audio), ``audio_encoded``, ``audio_unchanged``,
        ``audio_failed``, ``audio_removed``, ``audio_in_store``, ``audio_failures`` (the records),
        ``audio_seconds_decoded`` (s of audio), ``audio_embed_seconds``, ``audio_transcribe_seconds``,
        ``audio_wall_seconds`` and ``audio_encoder`` (the encoder id).
    Raises:
        StoreError: the audio collection's vector dimension differs from the encoder's.
    """
    from llmrec.encoders.audio_io import check_not_silent, load_audio
    from llmrec.store import ItemStore, kinds

    t0 = time.time()
    with_audio = [it for it in dataset.items if it.audio]
    empty = {"audio": 0, "audio_encoded": 0, "audio_unchanged": 0, "audio_failed": 0, "audio_removed": 0,
             "audio_in_store": 0, "audio_failures": [], "audio_wall_seconds": 0.0}
    if not with_audio and AUDIO_KIND not in kinds(out, cfg.chroma.host, cfg.chroma.port, cfg.chroma.timeout_s):
        return empty
    if with_audio and pipeline is None:
        raise ValueError("items name audio files: ingest_audio needs their AudioPipeline")
    store = ItemStore(out, AUDIO_KIND, cfg.chroma.host, cfg.chroma.port, cfg.chroma.timeout_s)
    if pipeline is not None and store.dim() not in (None, pipeline.encoder.dim):
        raise StoreError(f"audio encoder dimension {pipeline.encoder.dim} does not match the audio collection "
                         f"of {out} (dimension {store.dim()})")
    failures_path = out / FAILURES_FILE
    stored = store.metadata([it.id for it in dataset.items])
    removed = remove_vectors(store, text_store, "transcript", [it.id for it in dataset.items if not it.audio and it.id in stored])

    failures: list[dict] = []
    todo: list[tuple[Item, str]] = []
    for it in with_audio:
        try:
            sha = audio_sha256(it.audio, cfg.media_max_bytes)
        except AudioError as e:
            failures.append(_failure(it, "load", e))
            continue
        want = {"audio": it.audio, "audio_sha256": sha, "encoder": pipeline.encoder_id}
        have = stored.get(it.id)
        if have is None or any(have.get(k) != v for k, v in want.items()) or "transcript" not in have:
            todo.append((it, sha))
    removed += remove_vectors(store, text_store, "transcript", [f["item"] for f in failures if f["item"] in stored])
    append_failures(failures_path, failures)
    unchanged = len(with_audio) - len(todo) - len(failures)
    if with_audio:
        log(f"audio: {len(todo)} to embed and transcribe, {unchanged} unchanged, {len(failures)} unreadable "
            f"(of {len(with_audio)} items with audio)")

    embed_s = transcribe_s = decoded = 0.0
    encoded = 0
    tally = ItemTally(store, text_store, "transcript", failures_path, stored, len(todo), "audio: embed+transcribe",
                      "clip", progress)
    step = min(cfg.encode_batch_size, MEDIA_CHUNK)
    try:
        for s in range(0, len(todo), step):
            loaded = []
            for it, sha in todo[s:s + step]:
                try:
                    clip = load_audio(it.audio, cfg.audio.max_seconds, cfg.media_max_bytes)
                    loaded.append((it, sha, check_not_silent(clip, it.audio)))
                except Exception as e:  # noqa: BLE001 - one bad file never stops the ingest
                    tally.fail(_failure(it, "load", e))
            t = time.time()
            vecs, ok, enc_failures = _embed(pipeline.encoder, loaded)
            embed_s += time.time() - t
            for f in enc_failures:
                tally.fail(f)
            for (it, sha, clip), vec in zip(ok, vecs, strict=True):
                t = time.time()
                transcript, failure = _transcribe(pipeline.encoder, it, clip)
                transcribe_s += time.time() - t
                decoded += clip.seconds
                meta = {"title": it.title, "audio": it.audio, "audio_sha256": sha, "encoder": pipeline.encoder_id,
                        "transcript": transcript, "seconds": round(clip.seconds, 3), "source_rate": clip.source_rate,
                        "channels": clip.channels, "audio_truncated": clip.truncated}
                write_item(store, text_store, "transcript", it.id, vec, meta)
                encoded += 1
                if failure:
                    tally.record(failure)
                tally.tick()
    finally:
        tally.close()
    failures += tally.failures
    removed += tally.removed
    sync_text_field(store, text_store, "transcript", [it.id for it in with_audio])
    ids = {it.id for it in dataset.items}
    keep = [r for r in read_failures(failures_path) if r.get("kind") != AUDIO_KIND or r.get("item") not in ids]
    if keep or failures or failures_path.exists():
        rewrite_failures(failures_path, keep + failures)
    return {
        "audio": len(with_audio), "audio_encoded": encoded, "audio_unchanged": unchanged,
        "audio_failed": len({f["item"] for f in failures}), "audio_removed": removed, "audio_in_store": store.count(),
        "audio_failures": failures, "audio_seconds_decoded": round(decoded, 1),
        "audio_embed_seconds": round(embed_s, 2), "audio_transcribe_seconds": round(transcribe_s, 2),
        "audio_wall_seconds": round(time.time() - t0, 2), "audio_encoder": pipeline.encoder_id if pipeline else None,
    }


def _embed(encoder, loaded):
    """:func:`~llmrec.ingest.image.encode_isolating` with the audio encoder."""
    return encode_isolating(encoder.embed, encoder.dim, loaded, _failure)


def _transcribe(encoder, item: Item, clip) -> tuple[str | None, dict | None]:
    """One embedded clip's transcript: ``(text, None)`` (``""``: no speech), or ``(None, failure
    record)`` when transcription fails (the vector is kept)."""
    try:
        return encoder.transcribe([clip])[0], None
    except Exception as e:  # noqa: BLE001 - a transcript failure keeps the vector
        return None, _failure(item, "transcribe", e)


AUDIO = MediaModality(AUDIO_KIND, "audio", DERIVED_KEYS, "audio", audio_wanted, AudioPipeline, ingest_audio)
"""The ``audio`` entry of :data:`llmrec.ingest.base.MODALITIES`."""
