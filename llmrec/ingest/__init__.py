"""``llmrec ingest``: encode a catalog's items, upsert them into the store, save interactions.

A data directory holds the Chroma store (collection ``items_text``; ``items_image`` for items'
images, see :mod:`llmrec.ingest.image`; ``items_audio``, :mod:`llmrec.ingest.audio`; one per
modality of :data:`llmrec.ingest.base.MODALITIES`), ``interactions.csv`` (user,item,timestamp,rating),
``failures.jsonl`` (items whose image could not be used, and why) and ``manifest.json`` (dataset
name, counts, encoders).

With ``chroma_host`` the items AND the interactions go to the Chroma server (collection
``interactions``, see :mod:`llmrec.store.interactions`), and every ingest that writes renews the
server's change stamp (:class:`llmrec.store.ChangeStamp`), so that every replica over that server
sees the same state; the data directory then only keeps this machine's lock, ``manifest.json``
and ``failures.jsonl`` (records of this ingest, not needed to recommend). An embedded store's
stamp is renewed the same way (in its own ``llmrec_state`` collection), so that a running
``llmrec serve`` over the same folder sees another process's ingest.

When the store stops answering mid-ingest (a Chroma server killed, unreachable, or slower than
``chroma_timeout_s``) the ingest raises :class:`~llmrec.store.StoreUnavailableError` saying that
nothing written is lost and that running the same ingest again completes it (``llmrec ingest``
exits 2).
"""

from llmrec.ingest.run import (
    INTERACTIONS_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    RERUN_HINT,
    check_dataset,
    ingest,
    load_dataset,
)

__all__ = ["INTERACTIONS_FILE", "LOCK_FILE", "MANIFEST_FILE", "RERUN_HINT", "check_dataset", "ingest", "load_dataset"]
