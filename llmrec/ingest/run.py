"""``ingest()``: a dataset into a data directory (the item store, interactions, manifest), under the ingest lock;
see :mod:`llmrec.ingest` for what is written where."""

from __future__ import annotations

import fcntl
import functools
import json
import math
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from llmrec.config import Config
from llmrec.data.catalog import LoadReport, load_catalog
from llmrec.data.movielens import load_ml100k, load_ml_latest_small
from llmrec.data.types import Dataset, item_metadata
from llmrec.errors import ConfigError, DataError, StoreError
from llmrec.ingest.base import MODALITIES, derived_keys
from llmrec.ingest.image import attach_posters
from llmrec.ingest.media import FAILURES_FILE
from llmrec.store import StoreUnavailableError
from llmrec.store.interactions import (  # noqa: F401  (re-exported: their former home)
    INTERACTIONS_FILE,
    merge_interactions,
    open_interactions,
    read_interactions,
    write_interactions,
)

RERUN_HINT = ("nothing written is lost: once the store answers again, run the same `llmrec ingest` again "
              "to complete it")

MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".ingest.lock"


def load_dataset(cfg: Config, catalog: str | None = None, interactions: str | None = None,
                 skip_bad: bool = False) -> tuple[Dataset, LoadReport]:
    """The dataset named by ``cfg.dataset`` (or a JSONL catalog when ``catalog`` is given).

    MovieLens items get their poster from config ``posters_dir`` as ``image`` (see
    :func:`llmrec.ingest.image.attach_posters`); a catalog's items name their own images.
    """
    if catalog:
        return load_catalog(catalog, interactions, skip_bad, cfg.title_max_chars)
    if cfg.dataset == "ml-100k":
        ds = load_ml100k(cfg.downloads_dir(), cfg.ml100k_source, cfg.download_timeout_s)
        return attach_posters(ds, cfg.posters_dir)[0], LoadReport()
    if cfg.dataset == "ml-latest-small":
        return attach_posters(load_ml_latest_small(cfg.ml_latest_small_dir), cfg.posters_dir)[0], LoadReport()
    raise ConfigError(f"unknown dataset {cfg.dataset!r}: use ml-100k, ml-latest-small, or --catalog FILE")


def _hint_rerun(fn):
    """``fn`` (:func:`ingest`) with a :class:`StoreUnavailableError` restated as failing mid-ingest,
    with :data:`RERUN_HINT` as what to do (same ``where``, ``action`` and ``reason``)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StoreUnavailableError as e:
            raise StoreUnavailableError(e.where, f"{e.action} mid-ingest", e.reason, RERUN_HINT) from e

    return wrapper


@_hint_rerun
def ingest(cfg: Config, dataset: Dataset, log=print, images: bool | None = None, progress=None,
           audio: bool | None = None, **modalities: bool | None) -> dict:
    """Encode and upsert every new or changed item (idempotent, by item id), merge interactions,
    then (``images``) encode and caption the items' images, then (``audio``) embed and transcribe
    their audio: each modality of :data:`llmrec.ingest.base.MODALITIES` in order.

    Interactions are merged with the stored ones, unique by (user, item, timestamp), and written to
    a temporary file then renamed (with ``chroma_host``: added to the server's ``interactions``
    collection, never deleting any; a local ``interactions.csv`` left by an ingest from before
    interactions moved to the server is added too, and kept), so nothing stored is lost or
    duplicated. The store's change stamp (a server's, or the embedded store's) is renewed when
    anything was written (even if the ingest then fails), so replicas and a running
    ``llmrec serve`` reload. Images go to the
    ``items_image`` collection, resumably, failures recorded per item and never raised (see
    :mod:`llmrec.ingest.image`); ``manifest.json`` is written after the interactions and again
    after the images. Returns a summary dict.

    Args:
        images: encode images; None: config ``ingest_images`` (``auto``: see
            :func:`~llmrec.ingest.image.images_wanted`).
        audio: embed and transcribe audio into ``items_audio`` the same way (:mod:`llmrec.ingest.audio`);
            None: config ``ingest_audio`` (``auto``: :func:`~llmrec.ingest.audio.audio_wanted`).
        modalities: the keyword (its ``flag``) of any other registered modality, the same way.
        log: one-line messages. progress: ``progress(done, total)`` after each image processed.

    Raises:
        DataError: the dataset repeats an item id, or an interaction has a non-finite timestamp or
            rating (checked before anything is written).
        ModelError: the text encoder, or with images the image encoder or captioner, cannot be
            loaded (before the data directory is created).
        ConfigError: a ``module:Class`` captioner cannot be imported or built (idem).
        StoreError: the data directory is a file, another ingest is writing to it, the store's
            vector dimension differs from the encoder's, or the stored interactions file is
            corrupt (checked before anything is written); the Chroma server refuses a write (what
            was written before stays).
        StoreUnavailableError: the store stopped answering (a server gone, or slower than
            ``chroma_timeout_s``): the message says where, during what, and to run the ingest again
            (what was written before stays; the rerun adds the rest, nothing twice).
    """
    from llmrec.encoders.text import TextEncoder
    from llmrec.store import ensure_dir

    flags = {m.flag for m in MODALITIES.values()}
    for name in modalities:
        if name not in flags:
            raise TypeError(f"ingest() got an unexpected keyword argument {name!r}")
    requested = {"images": images, "audio": audio, **modalities}
    check_dataset(dataset)
    encoder = TextEncoder(cfg)  # a bad encoder is refused before the data directory is created
    todo = []  # (modality, on, pipeline): models loaded before the data directory is created
    for m in MODALITIES.values():
        on = m.wanted(cfg, dataset) if requested.get(m.flag) is None else bool(requested[m.flag])
        todo.append((m, on, m.pipeline(cfg) if on and any(m.path(it) for it in dataset.items) else None))
    out = ensure_dir(cfg.store_dir())
    with open(out / LOCK_FILE, "a+") as lock:  # one writer per data directory
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreError(f"another `llmrec ingest` is writing to {out}: wait for it to finish") from None
        summary = _ingest_locked(cfg, dataset, encoder, out)
        for m, on, pipeline in todo:
            if not on:
                continue
            try:
                summary.update(m.ingest(cfg, dataset, out, summary["_text_store"], pipeline, log, progress))
            except BaseException:
                _bump_stamp(cfg, best_effort=True)
                raise
            _bump_stamp(cfg)
            (out / MANIFEST_FILE).write_text(json.dumps(_manifest(summary), indent=1))
        summary.pop("_text_store", None)
        for m, on, _ in todo:
            summary[f"{m.flag}_ingested"] = on
        return summary


def _manifest(summary: dict) -> dict:
    """The summary without private keys, each modality's failure records replaced by the file's name."""
    records = [f"{m.kind}_failures" for m in MODALITIES.values()]
    out = {k: v for k, v in summary.items() if not k.startswith("_") and k not in records}
    for key in records:
        if key in summary:
            out[f"{key}_file"] = FAILURES_FILE
    return out


def _bump_stamp(cfg: Config, store=None, best_effort: bool = False) -> None:
    """Renew the store's change stamp (the server's with ``chroma_host``, else the embedded store's;
    see :class:`llmrec.store.ChangeStamp`), through ``store``'s client when given.
    ``best_effort``: on the way out of a failed ingest, whose own error must not be masked."""
    from llmrec.store import ChangeStamp, open_client

    try:
        client = store.client if store is not None else open_client(
            cfg.store_dir(), cfg.chroma.host, cfg.chroma.port, cfg.chroma.timeout_s)
        ChangeStamp(client).bump()
    except Exception as e:
        if not best_effort:
            where = f"{cfg.chroma.host}:{cfg.chroma.port}" if cfg.chroma.host else str(cfg.store_dir())
            raise StoreError(f"cannot renew the change stamp on {where}: {e} (the ingest's writes are stored; "
                             "replicas and running servers see them after the next ingest)") from e


def _ingest_locked(cfg: Config, dataset: Dataset, encoder, out: Path) -> dict:
    from llmrec.store import ItemStore

    interactions = open_interactions(cfg, out)
    rows = list(dataset.interactions)
    if cfg.chroma.host and (out / INTERACTIONS_FILE).exists():  # written here before they moved to the server
        rows = read_interactions(out / INTERACTIONS_FILE) + rows
    interactions.check(rows)  # a corrupt file, or rows it cannot store, refused before any write
    store = ItemStore(out, "text", cfg.chroma.host, cfg.chroma.port, cfg.chroma.timeout_s)
    have = store.dim()
    if have is not None and have != encoder.dim:
        raise StoreError(f"text encoder dimension {encoder.dim} does not match store {out} dimension {have}")
    try:
        summary, wrote = _write(cfg, dataset, encoder, out, store, interactions, rows)
    except BaseException:
        _bump_stamp(cfg, store, best_effort=True)  # it may have written a part: replicas reload that
        raise
    if wrote:
        _bump_stamp(cfg, store)
    return summary


def _write(cfg: Config, dataset: Dataset, encoder, out: Path, store, interactions, rows) -> tuple[dict, bool]:
    """The writes of :func:`_ingest_locked`: (summary, whether anything was written)."""
    items = dataset.items
    bar = tqdm(total=len(items), desc="encode+upsert items", unit="item")
    step = max(cfg.encode_batch_size * 8, 256)
    unchanged, wrote = 0, False
    derived = derived_keys()
    for s in range(0, len(items), step):
        chunk = items[s:s + step]
        stored = {i: {k: v for k, v in m.items() if k not in derived}  # captions come from images
                  for i, m in store.metadata([it.id for it in chunk]).items()}
        metas = {it.id: {k: v for k, v in item_metadata(it).items() if v is not None} for it in chunk}
        todo = [it for it in chunk if stored.get(it.id) != metas[it.id]]  # new or changed items only
        unchanged += len(chunk) - len(todo)
        if todo:
            wrote = True
            vecs = encoder.encode([it.document() for it in todo])
            store.upsert([it.id for it in todo], vecs, [metas[it.id] for it in todo])
            # Upserts merge metadata: remove the keys a changed item no longer has (e.g. its image).
            gone = {it.id: {k: None for k in stored[it.id] if k not in metas[it.id]} for it in todo if it.id in stored}
            gone = {i: g for i, g in gone.items() if g}
            if gone:
                store.update_metadata(list(gone), list(gone.values()))
        bar.update(len(chunk))
    bar.close()
    added, n_inter = interactions.add(rows)
    wrote = wrote or added > 0
    summary = {"dataset": dataset.name, "store": str(out), "items_in_store": store.count(),
               "interactions_in_store": n_inter, "items_unchanged": unchanged,
               "encoder": encoder.path, **{f"input_{k}": v for k, v in dataset.stats().items()}}
    (out / MANIFEST_FILE).write_text(json.dumps(summary, indent=1))
    return {**summary, "_text_store": store}, wrote


def check_dataset(dataset: Dataset) -> None:
    """What the catalog loaders check, for a Dataset built in code.

    Raises:
        DataError: an item id appears twice (the ids named), or an interaction's timestamp or
            rating is not a finite number (user and item named).
    """
    dups = [i for i, c in Counter(it.id for it in dataset.items).items() if c > 1]
    if dups:
        raise DataError(f"duplicate item id(s) in dataset {dataset.name!r}: {', '.join(map(repr, dups[:10]))}")
    for x in dataset.interactions:
        for what, v in (("timestamp", x.timestamp), ("rating", x.rating)):
            if v is not None and not math.isfinite(v):
                raise DataError(f"interaction of user {x.user!r}, item {x.item!r}: {what} must be finite, got {v}")
