"""The item store: Chroma collections of item vectors, one per vector kind.

One collection per kind, ``items_{kind}``, in one data directory: ``text`` (the text encoder's
vectors; its metadata are the items as the recommender reads them), ``image`` (the image
encoder's, written by ``llmrec ingest`` for items with an image), ``sasrec`` (a trained
retriever's). Open one with ``ItemStore(path, kind)``; :func:`kinds` lists those present.
Ids are the catalog's item ids; metadata are the item's fields. Only our own embeddings are
ever written or queried (Chroma is never asked to embed text: offline it cannot).
An embedded ``PersistentClient`` under the data directory by default; a Chroma server when
``chroma_host`` is configured. On a server the store also holds the interactions (collection
``interactions``, :mod:`llmrec.store.interactions`). Both kinds hold a change stamp (:class:`ChangeStamp`,
collection ``llmrec_state``) that every ingest that writes renews, so that a long-lived reader (a
replica, ``llmrec serve``) notices another process's writes.

Every Chroma call goes through :class:`~llmrec.store.client.StoreClient` / :class:`~llmrec.store.client.GuardedCollection`: a server's HTTP
calls time out after ``timeout_s`` (config ``chroma_timeout_s``), and timeouts, broken connections
and Chroma's own failures become :class:`StoreUnavailableError` / :class:`~llmrec.errors.StoreError`
naming the server (or folder), what was being done and what to do.
"""

from llmrec.store.client import (
    DEFAULT_TIMEOUT_S,
    GuardedCollection,
    StoreClient,
    StoreUnavailableError,
    as_store_client,
    chroma_call,
    ensure_dir,
    open_client,
)
from llmrec.store.items import ItemStore, collection_name, kinds
from llmrec.store.stamp import STATE_COLLECTION, ChangeStamp

__all__ = ["DEFAULT_TIMEOUT_S", "STATE_COLLECTION", "ChangeStamp", "GuardedCollection", "ItemStore", "StoreClient",
           "StoreUnavailableError", "as_store_client", "chroma_call", "collection_name", "ensure_dir", "kinds",
           "open_client"]
