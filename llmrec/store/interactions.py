"""Where a store keeps its interactions: one interface, two places.

* :class:`CsvInteractions`: ``{data_dir}/interactions.csv`` (user,item,timestamp,rating), the
  embedded store's (no ``chroma_host``). Rewritten whole through a temporary file and a rename.
* :class:`ChromaInteractions`: the Chroma collection ``interactions`` on the configured server
  (``chroma_host``), so that every replica over that server reads the same interactions. One
  record per interaction, id :func:`interaction_id` (a hash of user, item and timestamp, so a
  re-ingest adds nothing twice), metadata ``user_id``, ``item_id`` (strings), ``timestamp``
  (float, seconds), ``rating`` (float, absent when unknown), and a constant 1-d embedding (Chroma
  needs one; it is never queried). Only ever added to: nothing stored is deleted or changed.

Both keep an interaction once per (user, item, timestamp): the first stored wins (a later rating
for the same key is ignored). :func:`open_interactions` picks the one a config names.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from abc import ABC, abstractmethod
from pathlib import Path

from llmrec.data.types import Interaction, item_key
from llmrec.errors import StoreError
from llmrec.store.client import StoreUnavailableError, as_store_client

INTERACTIONS_FILE = "interactions.csv"
INTERACTIONS_COLLECTION = "interactions"


def interaction_id(user: str, item: str, timestamp: float) -> str:
    """The record id of an interaction: 32 hex digits of sha256 over (user, item, ``repr(float(timestamp))``);
    the same in every process (unlike ``hash()``)."""
    return hashlib.sha256(f"{user}\x1f{item}\x1f{float(timestamp)!r}".encode()).hexdigest()[:32]


def _unique_new(rows: list[Interaction], seen: set) -> list[Interaction]:
    """Rows whose (user, item, timestamp) is not in ``seen`` nor earlier in ``rows`` (``seen`` is extended)."""
    new = []
    for r in rows:
        key = (r.user, r.item, r.timestamp)
        if key not in seen:
            seen.add(key)
            new.append(r)
    return new


class InteractionStore(ABC):
    """The interactions of one store."""

    where: str
    """Human-readable location (a file, or ``host:port/collection``), for messages."""

    @abstractmethod
    def read(self) -> list[Interaction]:
        """Every stored interaction.

        Raises:
            StoreError: a stored interaction cannot be read (the file line or record id named), or
                the server cannot be reached."""

    @abstractmethod
    def add(self, rows: list[Interaction]) -> tuple[int, int]:
        """Store the ``rows`` not stored yet (unique by user, item, timestamp).

        Returns:
            (how many were added, how many are stored after).

        Raises:
            StoreError: the store cannot be written; for :class:`ChromaInteractions` also a row
                whose user or item is not a non-empty string, or whose timestamp or rating is not a
                finite number (see :func:`check_rows`; checked before anything is written). Stored interactions are never removed, even when a
                write fails midway (a prefix of the new rows may then be stored; adding them again
                is harmless)."""

    def check(self, rows: list[Interaction] = ()) -> None:
        """Raise :class:`StoreError` now if the stored interactions cannot be read, or ``rows`` could
        not be added (before an ingest writes anything). Default: :meth:`read`."""
        self.read()


def check_rows(rows: list[Interaction]) -> None:
    """Raises StoreError naming the first interaction whose user or item is not a non-empty string, or
    whose timestamp (or rating, when given) is not a finite number."""
    for r in rows:
        if not (isinstance(r.user, str) and r.user and isinstance(r.item, str) and r.item):
            raise StoreError(f"interaction user and item must be non-empty strings, got user {r.user!r}, item {r.item!r}")
        for what, v in (("timestamp", r.timestamp), ("rating", r.rating)):
            if v is None and what == "rating":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise StoreError(f"interaction of user {r.user!r}, item {r.item!r}: {what} must be a finite number, got {v!r}")


def canonical_order(rows: list[Interaction]) -> list[Interaction]:
    """``rows`` sorted by (timestamp, item id as :func:`~llmrec.data.types.item_key`, user, rating):
    one order for every process that reads the same set."""
    return sorted(rows, key=lambda x: (x.timestamp, item_key(x.item), x.user, -math.inf if x.rating is None else x.rating))


# ---------------------------------------------------------------------------------- CSV file
def write_interactions(path: Path, rows: list[Interaction]) -> None:
    """Write ``rows`` to ``path`` (CSV user,item,timestamp,rating) through ``path.tmp`` and a rename."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "timestamp", "rating"])
        for r in rows:
            w.writerow([r.user, r.item, repr(r.timestamp), "" if r.rating is None else repr(r.rating)])
    os.replace(tmp, path)


def read_interactions(path: Path) -> list[Interaction]:
    """The interactions stored by :func:`write_interactions`, in file order ([] when there is no file yet).

    Raises:
        StoreError: ``file:line`` of the first row that cannot be read (the file was edited or damaged).
    """
    path = Path(path)
    if not path.exists():
        return []
    out, line = [], 1
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            for r in reader:
                line = reader.line_num
                out.append(Interaction(r["user"], r["item"], float(r["timestamp"]),
                                       float(r["rating"]) if r["rating"] else None))
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as e:
        what = f"missing column {e}" if isinstance(e, KeyError) else str(e)
        raise StoreError(f"{path}:{line}: stored interactions unreadable ({what}); fix or remove the file "
                         "and ingest again") from None
    return out


def merge_interactions(path: Path, rows: list[Interaction], old: list[Interaction]) -> int:
    """Merge ``rows`` into the interactions file, whose current rows are ``old``; returns the stored count."""
    return _merge(path, rows, old)[1]


def _merge(path: Path, rows: list[Interaction], old: list[Interaction]) -> tuple[int, int]:
    new = _unique_new(rows, {(r.user, r.item, r.timestamp) for r in old})
    if new or not Path(path).exists():
        write_interactions(path, old + new)
    return len(new), len(old) + len(new)


class CsvInteractions(InteractionStore):
    """``interactions.csv`` in a data directory; :meth:`read` gives file order (oldest ingest first)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.where = str(self.path)

    def read(self) -> list[Interaction]:
        return read_interactions(self.path)

    def add(self, rows: list[Interaction]) -> tuple[int, int]:
        return _merge(self.path, rows, self.read())


# ------------------------------------------------------------------------------ Chroma server
class ChromaInteractions(InteractionStore):
    """The ``interactions`` collection of a Chroma client (a server's, for shared state).

    Args:
        client: a :class:`llmrec.store.StoreClient` (see :func:`llmrec.store.open_client`; its calls
            time out and raise typed errors) or a bare ``chromadb`` client.
        where: its location, for messages (e.g. ``host:port``).
    Raises:
        StoreUnavailableError: the server does not answer within its timeout, or is gone (here and
            in every method; see :func:`llmrec.store.chroma_call`).
        StoreError: the collection cannot be opened otherwise.
    """

    def __init__(self, client, where: str = "chroma"):
        self.client = as_store_client(client)
        self.where = f"{where}/{INTERACTIONS_COLLECTION}"
        self.collection = self.client.get_or_create_collection(INTERACTIONS_COLLECTION, embedding_function=None)
        self.step = max(1, self.client.get_max_batch_size())

    def count(self) -> int:
        """How many interactions are stored (one server call)."""
        return self.collection.count()

    def read(self) -> list[Interaction]:
        """Every stored interaction in :func:`canonical_order`, read in pages of ``get_max_batch_size()``.
        A read while another process adds may miss some of its rows (pages shift); that ingest's
        change stamp, renewed after it, makes a :class:`~llmrec.recommender.Recommender` read again."""
        out, off = {}, 0
        while True:  # the collection's calls raise StoreError naming the server (llmrec.store.chroma_call)
            got = self.collection.get(limit=self.step, offset=off, include=["metadatas"])
            for i, m in zip(got["ids"], got["metadatas"], strict=True):
                out[i] = self._row(i, m or {})
            off += len(got["ids"])
            if len(got["ids"]) < self.step:
                break
        return canonical_order(list(out.values()))

    def _row(self, rid: str, m: dict) -> Interaction:
        try:
            rating = m.get("rating")
            x = Interaction(m["user_id"], m["item_id"], float(m["timestamp"]), None if rating is None else float(rating))
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(f"interaction record {rid!r} at {self.where} is damaged ({e!r} in {m}); "
                             "delete that record and ingest again") from None
        if not (isinstance(x.user, str) and isinstance(x.item, str)):
            raise StoreError(f"interaction record {rid!r} at {self.where} is damaged (user/item not strings: {m})")
        return x

    def check(self, rows: list[Interaction] = ()) -> None:
        """:func:`check_rows` on ``rows`` (the collection opened in the constructor; stored records are
        checked when read)."""
        check_rows(rows)

    def add(self, rows: list[Interaction]) -> tuple[int, int]:
        """Add the rows whose :func:`interaction_id` is not stored yet, ``get_max_batch_size()`` at a time
        (one existence check and at most one write per batch); returns (added, :meth:`count` after)."""
        check_rows(rows)
        new = _unique_new(rows, set())
        added = 0
        try:
            for s in range(0, len(new), self.step):
                chunk = {interaction_id(r.user, r.item, r.timestamp): r for r in new[s:s + self.step]}
                have = set(self.collection.get(ids=list(chunk), include=[])["ids"])
                todo = [(i, r) for i, r in chunk.items() if i not in have]
                if todo:
                    added += len(todo)
                    self.collection.upsert(  # upsert, not add: two writers racing write the same record
                        ids=[i for i, _ in todo], embeddings=[[1.0]] * len(todo),
                        metadatas=[{"user_id": r.user, "item_id": r.item, "timestamp": float(r.timestamp),
                                    **({} if r.rating is None else {"rating": float(r.rating)})} for _, r in todo])
            return added, self.count()
        except StoreUnavailableError:
            raise  # the ingest adds what to do (see llmrec.ingest)
        except StoreError as e:
            raise StoreError(f"cannot write the interactions at {self.where}: {e} (those already stored are "
                             "kept; ingest again to add the rest)") from e


def open_interactions(cfg, path: str | Path | None = None, client=None) -> InteractionStore:
    """The interaction store a config names: :class:`ChromaInteractions` on ``chroma_host``:``chroma_port``
    when ``chroma_host`` is set (through ``client`` when given, e.g. an ``ItemStore``'s), else
    :class:`CsvInteractions` at ``{path or cfg.store_dir()}/interactions.csv``.

    Raises:
        StoreUnavailableError: the Chroma server does not answer within ``chroma_timeout_s`` or is not
            there (host and port named).
    """
    from llmrec.store import open_client

    if cfg.chroma.host:
        client = client if client is not None else open_client(None, cfg.chroma.host, cfg.chroma.port,
                                                               cfg.chroma.timeout_s)
        return ChromaInteractions(client, f"{cfg.chroma.host}:{cfg.chroma.port}")
    return CsvInteractions(Path(path or cfg.store_dir()) / INTERACTIONS_FILE)
