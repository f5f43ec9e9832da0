"""The ingest seam for media modalities: the :class:`Modality` protocol and the registry
:data:`MODALITIES` that :func:`llmrec.ingest.run.ingest` goes through, in order, after the items'
text and the interactions.

Registered: ``image`` (:mod:`llmrec.ingest.image`: posters, image vectors, captions) and ``audio``
(:mod:`llmrec.ingest.audio`: Whisper vectors, transcripts). Each writes its vectors to the store's
``items_{kind}`` collection, its derived text into the ``items_text`` metadata, its per-item failures
(``"kind": kind``) to ``failures.jsonl``, and its summary keys (``{kind}_failures``: the records,
kept out of ``manifest.json``, which names ``{kind}_failures_file`` instead).

Adding a modality: a module like :mod:`llmrec.ingest.audio` defining one :class:`Modality` object
(with its encoder in ``llmrec/encoders/``, its ``ingest_{flag}`` config key and the :class:`Item`
field naming the file), plus its line in :data:`MODALITIES`. ``ingest(..., {flag}=True)`` then
turns it on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from llmrec.config import Config
from llmrec.data.types import Dataset, Item
from llmrec.ingest.audio import AUDIO
from llmrec.ingest.image import IMAGE


@runtime_checkable
class Modality(Protocol):
    """One media modality of ingest.

    Attributes:
        kind: the store's vector kind (collection ``items_{kind}``), the :class:`Item` field holding
            the item's file path, and the ``kind`` of its ``failures.jsonl`` records (``"image"``).
        flag: the :func:`~llmrec.ingest.run.ingest` keyword that turns it on or off, and the summary
            key ``{flag}_ingested`` (``"images"``, ``"audio"``).
        derived_keys: the ``items_text`` metadata keys it derives (``("caption",)``): not read from
            the catalog, so a re-ingest of the text leaves them alone.
    """

    kind: str
    flag: str
    derived_keys: tuple[str, ...]

    def path(self, item: Item) -> str | None:
        """The item's file of this modality (None: the item has none)."""
        ...

    def wanted(self, cfg: Config, dataset: Dataset) -> bool:
        """Whether ingest does this modality when its keyword is None (config ``ingest_{flag}``, ``auto``)."""
        ...

    def pipeline(self, cfg: Config):
        """The modality's models, loaded once before anything is written. Raises ModelError (or
        ConfigError for a bad plug-in) when they cannot be loaded."""
        ...

    def ingest(self, cfg: Config, dataset: Dataset, out: Path, text_store, pipeline, log=print,
               progress=None) -> dict:
        """Encode the dataset's files of this modality into the store at ``out`` (resumably, per item;
        failures recorded, never raised); ``pipeline`` None when no item names a file (stale vectors
        are only removed). Returns the summary keys, ``{kind}_failures`` among them. Raises
        StoreError when the collection's dimension differs from the encoder's."""
        ...


MODALITIES: dict[str, Modality] = {m.kind: m for m in (IMAGE, AUDIO)}
"""The registered modalities by kind, in the order ingest does them."""


def derived_keys() -> tuple[str, ...]:
    """Every registered modality's derived text keys, in registry order."""
    return tuple(k for m in MODALITIES.values() for k in m.derived_keys)
