"""The store's change stamp (collection ``llmrec_state``): renewed by every ingest that writes, read by long-lived readers."""

from __future__ import annotations

import time
import uuid

from llmrec.store.client import GuardedCollection, as_store_client

STATE_COLLECTION = "llmrec_state"
_STAMP_ID = "stamp"


class ChangeStamp:
    """The store's change stamp: one record in the collection ``llmrec_state`` whose metadata
    ``stamp`` (a random 32-hex token) every ingest that writes renews (:meth:`bump`), and whose
    ``at`` is the time of that write (seconds since the epoch). A reader that remembers the stamp
    it loaded under knows the store changed when :meth:`read` differs: one small ``get`` (about
    3 ms against a local ``chroma run``, under 1 ms embedded; see README). A random token, not a
    counter: two writers on different machines never need to agree on the next value.

    The same on a server and in an embedded store: an embedded reader's long-lived client does see
    another process's stamp (it is read from the store's sqlite file), though not that process's new
    vectors (see :func:`open_client`'s ``reopen``). Reading never creates the collection (a store
    ingested before stamps existed, or a read-only one, reads None until an ingest bumps).

    Args:
        client: a :class:`StoreClient` (:func:`open_client`) or a bare ``chromadb`` client.
    """

    def __init__(self, client):
        self.client = as_store_client(client)
        self.collection: GuardedCollection | None = None

    def read(self) -> str | None:
        """The current stamp (None: no ingest has written since the stamp was introduced).

        Raises:
            StoreUnavailableError: the server does not answer within its timeout, or is gone.
            StoreError: the store fails otherwise."""
        if self.collection is None:
            self.collection = self.client.get_collection(STATE_COLLECTION)
            if self.collection is None:
                return None
        with self.client.call("reading the change stamp"):
            got = self.collection.raw.get(ids=[_STAMP_ID], include=["metadatas"])
        metas = got.get("metadatas") or []
        return str((metas[0] or {}).get("stamp")) if metas else None

    def bump(self) -> str:
        """Renew the stamp; returns the new one.

        Raises:
            StoreUnavailableError, StoreError: as :meth:`read`."""
        if self.collection is None:
            self.collection = self.client.get_or_create_collection(STATE_COLLECTION, embedding_function=None)
        stamp = uuid.uuid4().hex
        with self.client.call("renewing the change stamp"):
            self.collection.raw.upsert(ids=[_STAMP_ID], embeddings=[[1.0]],
                                       metadatas=[{"stamp": stamp, "at": time.time()}])
        return stamp
