"""Plain data types shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    """One catalog item. ``id`` is the catalog's own id (a string), never a title. ``caption`` and
    ``transcript``: the text fallback of its image and audio, made at ingest ("" when none)."""

    id: str
    title: str
    text: str = ""
    image: str | None = None
    audio: str | None = None
    fields: dict = field(default_factory=dict, hash=False, compare=False)
    caption: str = ""
    transcript: str = ""

    def document(self) -> str:
        """The text that is embedded: title and description."""
        return f"{self.title}. {self.text}".strip() if self.text else self.title


@dataclass(frozen=True)
class Interaction:
    """A user touched an item at ``timestamp`` (seconds since the epoch); ``rating`` is optional."""

    user: str
    item: str
    timestamp: float
    rating: float | None = None


@dataclass
class Dataset:
    """A catalog and its interactions; ``source``: where they were read from (for the log), "" when
    not recorded."""

    name: str
    items: list[Item]
    interactions: list[Interaction]
    source: str = ""

    def histories(self) -> dict[str, list[str]]:
        """Per-user item ids ordered by (timestamp, item id) — the order LlamaRec uses."""
        return histories(self.interactions)

    def stats(self) -> dict[str, int]:
        return {
            "users": len({i.user for i in self.interactions}),
            "items": len(self.items),
            "interactions": len(self.interactions),
        }


def item_key(item_id: str) -> tuple:
    """Sort key of an item id: ids of ASCII digits sort numerically (MovieLens) and first, any
    other id as a string. Never converts to int (``'²'.isdigit()`` is True, and ``int`` refuses
    more than 4300 digits), ties such as ``"07"``/``"7"`` go by the id itself."""
    if item_id.isascii() and item_id.isdigit():
        digits = item_id.lstrip("0")
        return (0, len(digits), digits, item_id)
    return (1, 0, item_id, item_id)


def histories(interactions: list[Interaction]) -> dict[str, list[str]]:
    """Group interactions per user, each ordered by (timestamp, item id)."""
    per_user: dict[str, list[Interaction]] = {}
    for it in interactions:
        per_user.setdefault(it.user, []).append(it)
    return {
        u: [x.item for x in sorted(rows, key=lambda x: (x.timestamp, item_key(x.item)))]
        for u, rows in per_user.items()
    }


def item_metadata(item: Item) -> dict:
    """The store metadata of ``item`` (``f_``-prefixed fields; None values kept: the store drops them)."""
    meta = {"title": item.title, "text": item.text, "image": item.image, "audio": item.audio}
    meta.update({f"f_{k}": v for k, v in item.fields.items()})
    return meta


def item_from_metadata(item_id: str, meta: dict) -> Item:
    """The :class:`Item` that store metadata ``meta`` (see :func:`item_metadata`) describes."""
    fields = {k[2:]: v for k, v in meta.items() if k.startswith("f_")}
    return Item(item_id, meta.get("title", item_id), meta.get("text", ""), meta.get("image"), meta.get("audio"), fields,
                caption=meta.get("caption") or "", transcript=meta.get("transcript") or "")
