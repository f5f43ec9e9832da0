"""What image and audio ingest share: the per-item failure log (``failures.jsonl``), the tally of
items done, encoding a batch with failing items isolated, and writing one item's vector and derived text."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

FAILURES_FILE = "failures.jsonl"


MEDIA_CHUNK = 8
"""Most media items (images, audio clips) loaded and encoded together at ingest (fewer when
``encode_batch_size`` is smaller). Each item is written as soon as it is done, so an interruption
loses at most the item in progress and the encoder pass of its chunk. On a CPU a batch of 8 encodes
as fast per image as one of 64, and the captioner or transcriber, one item at a time, dominates."""


def read_failures(path: str | os.PathLike) -> list[dict]:
    """The failures recorded in a ``failures.jsonl`` (the last record per kind and item; [] when
    there is no file). Lines that are not JSON objects (a write cut by a kill) are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out: dict[tuple, dict] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and "item" in rec:
                key = (rec.get("kind"), rec["item"])
                out.pop(key, None)
                out[key] = rec
    return list(out.values())


def append_failures(path: Path, records: list[dict]) -> None:
    if not records:
        return
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def rewrite_failures(path: Path, keep: list[dict]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in keep:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


class ItemTally:
    """The per-item bookkeeping of a media ingest (images or audio): each item processed, written or
    failed, moves the bar and calls ``progress(done, total)``; a failure is appended to the
    failures file at once and the item's stored vector (its ``key`` in the text collection too)
    deleted, so that what the store holds is right after each item.

    Args:
        store, text_store: the modality and text :class:`~llmrec.store.ItemStore`. key: ``caption``
            or ``transcript``. failures_path: ``failures.jsonl``. stored: the items' stored metadata
            (by id) before the run. total: the items to process. desc, unit: the bar's.
        progress: ``progress(done, total)`` or None (an exception it raises stops the ingest).
    """

    def __init__(self, store, text_store, key: str, failures_path: Path, stored: dict, total: int,
                 desc: str, unit: str, progress=None):
        self.store, self.text_store, self.key = store, text_store, key
        self.failures_path, self.stored, self.total, self.progress = failures_path, stored, total, progress
        self.failures: list[dict] = []
        self.removed = self.done = 0
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=not total)

    def record(self, failure: dict) -> None:
        """Record a failure that keeps the item's vector (a caption or transcript)."""
        append_failures(self.failures_path, [failure])
        self.failures.append(failure)

    def fail(self, failure: dict) -> None:
        """An item failed (load or encode): recorded, its stale vector deleted, and processed."""
        if failure["item"] in self.stored:
            self.removed += remove_vectors(self.store, self.text_store, self.key, [failure["item"]])
        self.record(failure)
        self.tick()

    def tick(self) -> None:
        """One more item processed."""
        self.bar.update(1)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)

    def close(self) -> None:
        self.bar.close()


def write_item(store, text_store, key: str, item_id: str, vector, meta: dict) -> None:
    """Write one item's vector ``[dim]`` and metadata to the modality collection ``store``, and its
    ``meta[key]`` (``caption``, ``transcript``) into the text collection. A ``meta[key]`` of None
    removes an earlier value (upserts merge metadata)."""
    store.upsert([item_id], vector[None, :], [meta])
    if meta[key] is None:
        store.update_metadata([item_id], [{key: None}])
    set_text_field(text_store, key, {item_id: meta[key]})


def encode_isolating(encode, dim: int, loaded, failure):
    """Encode a chunk's loaded entries ``(item, path, data)`` with ``encode(list of data) -> [n, dim]``;
    when the batch fails, each entry alone, so an error isolates the failing item(s), recorded by
    ``failure(item, "encode", error)``. Returns (vectors float32 [n_ok, dim], the ok entries, failure
    records)."""
    import numpy as np

    if not loaded:
        return np.zeros((0, dim), np.float32), [], []
    try:
        return encode([data for _, _, data in loaded]), loaded, []
    except Exception:  # noqa: BLE001 - find the item(s) that failed
        pass
    vecs, ok, failures = [], [], []
    for entry in loaded:
        try:
            vecs.append(encode([entry[2]])[0])
            ok.append(entry)
        except Exception as e:  # noqa: BLE001
            failures.append(failure(entry[0], "encode", e))
    return (np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)), ok, failures


def set_text_field(text_store, key: str, values: dict[str, str | None]) -> None:
    """Write a derived field (``caption``, ``transcript``; None or "" removes it) into the text
    collection's metadata of the items it holds."""
    stored = text_store.metadata(list(values))
    ids = [i for i in values if i in stored and stored[i].get(key) != (values[i] or None)]
    if ids:
        text_store.update_metadata(ids, [{key: values[i] or None} for i in ids])


def sync_text_field(store, text_store, key: str, ids: list[str]) -> None:
    """Make the text collection's ``key`` that of the modality collection ``store`` (an interruption
    between the two writes left them apart)."""
    metas = store.metadata(ids)
    set_text_field(text_store, key, {i: metas[i].get(key) if i in metas else None for i in ids})


def remove_vectors(store, text_store, key: str, ids: list[str]) -> int:
    """Delete these items' vectors from the modality collection ``store`` and their ``key`` in the text
    collection. Returns how many vectors were deleted."""
    if not ids:
        return 0
    n = store.delete(ids)
    set_text_field(text_store, key, dict.fromkeys(ids))
    return n


def failure_record(kind: str, path: str | None, item_id: str, stage: str, err: BaseException, media_error: type) -> dict:
    """One ``failures.jsonl`` record: the item, its file, the stage that failed and why (a ``media_error``'s
    own ``reason``, else the exception's type and message), with the time."""
    reason = err.reason if isinstance(err, media_error) else f"{type(err).__name__}: {err}"
    return {"kind": kind, "item": item_id, "path": path, "stage": stage, "reason": reason,
            "time": datetime.now(UTC).isoformat(timespec="seconds")}


@dataclass(frozen=True)
class MediaModality:
    """One entry of :data:`llmrec.ingest.base.MODALITIES` (the :class:`~llmrec.ingest.base.Modality`
    protocol): ``field`` the :class:`~llmrec.data.types.Item` attribute naming the file; ``wanted``,
    ``make_pipeline`` and ``run`` the module's own ``*_wanted``, pipeline class and ``ingest_*``."""

    kind: str
    flag: str
    derived_keys: tuple[str, ...]
    field: str
    wanted: Callable
    make_pipeline: Callable
    run: Callable

    def path(self, item) -> str | None:
        return getattr(item, self.field)

    def pipeline(self, cfg):
        return self.make_pipeline(cfg)

    def ingest(self, cfg, dataset, out: Path, text_store, pipeline, log=print, progress=None) -> dict:
        return self.run(cfg, dataset, out, text_store, pipeline, log, progress)
