"""The image part of ``llmrec ingest``: posters for MovieLens, image vectors, captions, failures.

Each item with an ``image`` path is loaded (:func:`llmrec.encoders.image_io.load_image`), encoded by
the image encoder (config ``image_encoder``) into the store's ``items_image`` collection (ids =
item ids) and captioned (config ``image_captioner``); the caption goes into the item's metadata in
both the ``items_image`` and the ``items_text`` collections (key ``caption``), for the text
fallback. The image collection's metadata also record what the vector came from: ``image`` (the
path), ``image_sha256`` (the file's content), ``encoder`` and ``captioner`` (their identities).

- **Resumable, per item.** Images are loaded and encoded :data:`MEDIA_CHUNK` (8, or
  ``encode_batch_size`` when smaller) at a time, and each item is written to the store as soon as
  it is captioned; an item whose stored path, file hash, encoder and captioner all match is
  skipped, so a rerun after an interruption (Ctrl-C, kill) does only the rest. A kill loses at most
  the item being captioned and the encoder pass of its group (at most 8 images, well under a
  second on a CPU). Upserts are by item id: nothing is duplicated.
- **Media paths are checked before they are read** (:mod:`llmrec.encoders.media_file`): each path is
  ``stat``-ed, and anything but a regular file of at most ``media_max_bytes`` (a device such as
  ``/dev/zero``, a FIFO, a socket, a directory, an oversized or sparse file) is that item's failure
  without a byte read; then the header is read (not an image: a failure, the file not hashed);
  then the file is hashed.
- **Failures** (a missing, corrupt or oversized file, not a regular file, an encoder or captioner
  error) are recorded per item, with the file and the reason, in ``{data_dir}/failures.jsonl`` as
  they happen, and reported; the ingest goes on. A failed item is tried again at the next ingest. After an ingest an item has an
  image vector exactly when its current image file was encoded: the vector of an item whose image
  was removed from the catalog, or whose new file fails, is deleted. A caption failure keeps the
  vector, without a caption (and the caption is tried again next time).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from pathlib import Path

from llmrec.config import Config
from llmrec.data.types import Dataset, Item
from llmrec.encoders.image_io import DEFAULT_MAX_PIXELS, open_image
from llmrec.encoders.media_file import DEFAULT_MAX_BYTES, open_media, sha256_of
from llmrec.errors import DataError, ImageError, StoreError
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

MOVIELENS = ("ml-100k", "ml-latest-small")
ML100K_POSTER_MAP = "ml100k_item_to_poster.csv"
IMAGE_KIND = "image"
DERIVED_KEYS = ("caption",)
"""Text-collection metadata keys that ingest derives (from images), not read from the catalog."""


# --------------------------------------------------------------------------- posters
def attach_posters(dataset: Dataset, folder: str | os.PathLike | None) -> tuple[Dataset, int]:
    """MovieLens items with their poster from ``folder`` as ``image``; returns (dataset, posters found).

    ml-latest-small: ``{movieId}.jpg``; ml-100k: the poster id from ``ml100k_item_to_poster.csv``
    (``ml100k_item_id,poster_id``), then ``{poster_id}.jpg``. Items without a poster file keep
    ``image=None`` (text-only); a missing folder (or ``folder`` None) leaves every item so. Other
    datasets are returned unchanged.

    Raises:
        DataError: ``ml100k_item_to_poster.csv`` is malformed (``file:line``).
    """
    if folder is None or dataset.name not in MOVIELENS or not Path(folder).is_dir():
        return dataset, 0
    folder = Path(folder)
    if dataset.name == "ml-100k":
        path = folder / ML100K_POSTER_MAP
        if not path.is_file():
            return dataset, 0
        mapping, reader = {}, None
        try:
            with open(path, encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f)
                for row in reader:
                    mapping[row["ml100k_item_id"].strip()] = row["poster_id"].strip()
        except (KeyError, AttributeError, UnicodeDecodeError, csv.Error, OSError) as e:
            what = f"missing column {e}" if isinstance(e, KeyError) else str(e)
            raise DataError(f"{path}:{reader.line_num if reader else 1}: {what}") from None
    else:
        mapping = {it.id: it.id for it in dataset.items}
    items, found = [], 0
    for it in dataset.items:
        poster = mapping.get(it.id)
        file = folder / f"{poster}.jpg" if poster else None
        if file is not None and file.is_file():
            it = dataclasses.replace(it, image=str(file))
            found += 1
        items.append(it)
    return Dataset(dataset.name, items, dataset.interactions, dataset.source), found


def images_wanted(cfg: Config, dataset: Dataset, builtin: bool | None = None) -> bool:
    """Whether ingest encodes images: config ``ingest_images`` when set; else (``auto``) when some
    item names an image, except for the built-in MovieLens datasets (``builtin``: default, by the
    dataset's name), whose posters take minutes."""
    if cfg.ingest.images is not None:
        return bool(cfg.ingest.images)
    builtin = dataset.name in MOVIELENS if builtin is None else builtin
    return not builtin and any(it.image for it in dataset.items)


# --------------------------------------------------------------------------- failures






def _failure(item: Item, stage: str, err: BaseException) -> dict:
    return failure_record(IMAGE_KIND, item.image, item.id, stage, err, ImageError)


def file_sha256(path: str | os.PathLike, max_bytes: int = DEFAULT_MAX_BYTES,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """The sha256 of an image file's bytes (hex), once the file is known to be an image.

    The path is ``stat``-ed before it is opened (:func:`~llmrec.encoders.media_file.open_media`),
    then its header is read (:func:`~llmrec.encoders.image_io.open_image`), then it is hashed: a
    device, FIFO, oversized file or non-image is refused before it is hashed.

    Raises:
        ImageError: naming the file: missing, a directory, not a regular file, over ``max_bytes``
            (config ``media_max_bytes``), unreadable, not an image, or over ``max_pixels``.
    """
    with open_media(path, max_bytes, ImageError, "image") as f:
        with open_image(f, path, max_pixels):  # the header only; leaving the image does not close f
            pass
        return sha256_of(f, path, max_bytes, ImageError)




# --------------------------------------------------------------------------- the models
class ImagePipeline:
    """The image encoder and the captioner of a config, loaded once (before ingest writes anything).

    Raises:
        ModelError: the encoder or the captioner's models cannot be loaded.
        ConfigError: a ``module:Class`` captioner cannot be imported or built.
    """

    def __init__(self, cfg: Config):
        from llmrec.encoders.caption import captioner_id, load_captioner
        from llmrec.encoders.image import load_image_encoder

        self.encoder = load_image_encoder(cfg)
        self.captioner = load_captioner(cfg, encoder=self.encoder)
        self.encoder_id = self.encoder.identity()["id"]
        self.captioner_id = captioner_id(self.captioner)


# --------------------------------------------------------------------------- ingest
# long: one resumable per-item loop (load, encode, caption, write, record the failure)
def ingest_images(cfg: Config, dataset: Dataset, out: Path, text_store, pipeline: ImagePipeline | None,
                  log=print, progress=None) -> dict:
    """Encode and caption the images of ``dataset``'s items into the store at ``out`` (module docstring).

    Args:
        text_store: the store's ``text`` :class:`~llmrec.store.ItemStore` (captions go into its
            metadata for items it holds).
        pipeline: the models (None when no item names an image: only stale vectors are removed).
        log: one-line messages. progress: ``progress(done, total)`` after each item is processed
            (called from the loop: an exception it raises, e.g. ``KeyboardInterrupt``, stops the
            ingest; what was written stays).
    Returns:
        A summary: ``images`` (items naming an image), ``images_encoded``, ``images_unchanged``,
        ``images_failed``, ``images_removed`` (stale vectors deleted), ``images_in_store``,
        ``image_failures`` (the records), ``image_encode_seconds``, ``image_caption_seconds``,
        ``image_seconds``, the encoder and captioner ids.
    Raises:
        StoreError: the image collection's vector dimension differs from the encoder's.
    """
    from llmrec.store import ItemStore, kinds

    t0 = time.time()
    with_image = [it for it in dataset.items if it.image]
    if not with_image and IMAGE_KIND not in kinds(out, cfg.chroma.host, cfg.chroma.port, cfg.chroma.timeout_s):
        return {"images": 0, "images_encoded": 0, "images_unchanged": 0, "images_failed": 0, "images_removed": 0,
                "images_in_store": 0, "image_failures": [], "image_seconds": 0.0}
    store = ItemStore(out, IMAGE_KIND, cfg.chroma.host, cfg.chroma.port, cfg.chroma.timeout_s)
    if pipeline is not None:
        have = store.dim()
        if have is not None and have != pipeline.encoder.dim:
            raise StoreError(f"image encoder dimension {pipeline.encoder.dim} does not match the image collection "
                             f"of {out} (dimension {have})")
    failures_path = out / FAILURES_FILE
    stored = store.metadata([it.id for it in dataset.items])

    # Items the catalog no longer gives an image: their vector and caption go.
    gone = [it.id for it in dataset.items if not it.image and it.id in stored]
    removed = remove_vectors(store, text_store, "caption", gone)

    failures: list[dict] = []
    todo: list[tuple[Item, str]] = []
    if with_image and pipeline is None:
        raise ValueError("items name images: ingest_images needs their ImagePipeline")
    for it in with_image:
        try:
            sha = file_sha256(it.image, cfg.media_max_bytes, cfg.image.max_pixels)
        except ImageError as e:
            failures.append(_failure(it, "load", e))
            continue
        want = {"image": it.image, "image_sha256": sha,
                "encoder": pipeline.encoder_id, "captioner": pipeline.captioner_id}
        have = stored.get(it.id)
        if have is None or any(have.get(k) != v for k, v in want.items()):
            todo.append((it, sha))
    removed += remove_vectors(store, text_store, "caption", [f["item"] for f in failures if f["item"] in stored])
    append_failures(failures_path, failures)
    unchanged = len(with_image) - len(todo) - len(failures)
    if with_image:
        log(f"images: {len(todo)} to encode and caption, {unchanged} unchanged, {len(failures)} unreadable "
            f"(of {len(with_image)} items with an image)")

    encode_s = caption_s = 0.0
    encoded = 0
    tally = ItemTally(store, text_store, "caption", failures_path, stored, len(todo), "images: encode+caption",
                      "image", progress)
    step = min(cfg.encode_batch_size, MEDIA_CHUNK)
    try:
        for s in range(0, len(todo), step):
            loaded = []
            for it, sha in todo[s:s + step]:
                try:
                    loaded.append((it, sha, _load(cfg, it.image)))
                except Exception as e:  # noqa: BLE001 - one bad file never stops the ingest
                    tally.fail(_failure(it, "load", e))
            t = time.time()
            vecs, ok, enc_failures = _encode(pipeline.encoder, loaded)
            encode_s += time.time() - t
            for f in enc_failures:
                tally.fail(f)
            for (it, sha, im), vec in zip(ok, vecs, strict=True):
                t = time.time()
                caption, cap_failure = _caption(pipeline.captioner, it, im)
                caption_s += time.time() - t
                meta = {"title": it.title, "image": it.image, "image_sha256": sha, "encoder": pipeline.encoder_id,
                        "captioner": "" if cap_failure else pipeline.captioner_id,
                        "caption": caption, "width": im.size[0], "height": im.size[1]}
                write_item(store, text_store, "caption", it.id, vec, meta)
                encoded += 1
                if cap_failure:
                    tally.record(cap_failure)
                tally.tick()
    finally:
        tally.close()
    failures += tally.failures
    removed += tally.removed
    sync_text_field(store, text_store, "caption", [it.id for it in with_image])
    # The run is complete: the image failures recorded are exactly this run's (other kinds' and
    # other items' records stay).
    ids = {it.id for it in dataset.items}
    keep = [r for r in read_failures(failures_path) if r.get("kind") != IMAGE_KIND or r.get("item") not in ids]
    if keep or failures or failures_path.exists():
        rewrite_failures(failures_path, keep + failures)
    return {
        "images": len(with_image), "images_encoded": encoded, "images_unchanged": unchanged,
        "images_failed": len(failures), "images_removed": removed, "images_in_store": store.count(),
        "image_failures": failures, "image_encode_seconds": round(encode_s, 2),
        "image_caption_seconds": round(caption_s, 2), "image_seconds": round(time.time() - t0, 2),
        "image_encoder": pipeline.encoder_id if pipeline else None,
        "image_captioner": pipeline.captioner_id if pipeline else None,
    }


def _load(cfg: Config, path: str):
    from llmrec.encoders.image_io import load_image

    return load_image(path, cfg.image.max_pixels, cfg.image.max_side, cfg.media_max_bytes)






def _encode(encoder, loaded):
    """:func:`encode_isolating` with the image encoder."""
    return encode_isolating(encoder.encode, encoder.dim, loaded, _failure)


def _caption(captioner, item: Item, im) -> tuple[str | None, dict | None]:
    """One encoded image's caption: ``(caption, None)``; ``(None, None)`` without a captioner;
    ``(None, failure record)`` when the captioner fails (the vector is kept)."""
    if captioner is None:
        return None, None
    try:
        got = captioner.caption([im])
        if not isinstance(got, (list, tuple)) or len(got) != 1 or not isinstance(got[0], str):
            raise TypeError(f"the captioner returned {got!r:.80}, not a list of one string")
        return got[0].strip(), None
    except Exception as e:  # noqa: BLE001 - a caption failure keeps the vector
        return None, _failure(item, "caption", e)


IMAGE = MediaModality(IMAGE_KIND, "images", DERIVED_KEYS, "image", images_wanted, ImagePipeline, ingest_images)
"""The ``image`` entry of :data:`llmrec.ingest.base.MODALITIES`."""
