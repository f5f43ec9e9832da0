"""The generic catalog format.

Items, one JSON object per line (JSONL)::

    {"id": "42", "title": "...", "text": "...", "image": "poster.jpg", "audio": "clip.ogg", ...}

``id`` and ``title`` are required strings (a numeric id is read as its decimal string; a title
is at most ``title_max_chars`` characters, config ``title_max_chars``, 500 by default, once
stripped); ``text``, ``image`` and ``audio`` are optional; other keys are kept as metadata (scalars only).
Relative media paths are resolved against the JSONL file's folder, into absolute paths (the
store keeps them, and a later ingest from another working directory finds the same files).

Interactions, CSV with a header ``user,item,timestamp[,rating]``; timestamps in seconds.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from llmrec.config import Config
from llmrec.data.types import Dataset, Interaction, Item
from llmrec.errors import CatalogLineError, DataError

_CORE = ("id", "title", "text", "image", "audio")
TITLE_MAX_CHARS: int = Config.default("title_max_chars")
"""The default title cap (config ``title_max_chars``'s default), characters."""
_INT64 = (-(2**63), 2**63 - 1)  # the store keeps integers as int64


def _open(path: Path, what: str):
    """Open a text file for line-by-line reading: UTF-8 with an optional BOM, undecodable bytes
    kept as surrogates so that :func:`_utf8` reports them against their own line.

    Raises:
        DataError: the file is missing, a directory, or cannot be read.
    """
    if not path.exists():
        raise DataError(f"{what} file {path} not found")
    if path.is_dir():
        raise DataError(f"{what} file {path} is a directory")
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as e:
        raise DataError(f"cannot read {what} file {path}: {e}") from e


def _utf8(text: str) -> str:
    """``text`` if it decoded as UTF-8; else ValueError naming the first bad byte's column."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"not valid UTF-8 (undecodable byte at column {e.start + 1})") from None
    return text


def _no_duplicate_keys(pairs):
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise ValueError(f"duplicate key {k!r} in one object")
        seen.add(k)
    return dict(pairs)


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text.strip()!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {text.strip()!r}")
    return v


@dataclass
class LoadReport:
    """What a tolerant load skipped: one :class:`CatalogLineError` per bad line."""

    skipped: list[CatalogLineError] = field(default_factory=list)


def _id(value, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{what} must be a string or an integer, got {type(value).__name__}")
    s = str(value).strip()
    if not s:
        raise ValueError(f"{what} is empty")
    return s


def _title(value, max_chars: int) -> str:
    """The stripped title; ValueError when it is not a non-empty string or is over ``max_chars``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("field 'title' must be a non-empty string")
    title = value.strip()
    if len(title) > max_chars:
        raise ValueError(f"field 'title' is {len(title)} characters long, over the limit of {max_chars} "
                         "(config title_max_chars)")
    return title


def _parse_item(obj, base: Path, title_max_chars: int = TITLE_MAX_CHARS) -> Item:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "id" not in obj:
        raise ValueError("missing required field 'id'")
    iid = _id(obj["id"], "field 'id'")
    title = _title(obj.get("title"), title_max_chars)
    text = obj.get("text", "") or ""
    if not isinstance(text, str):
        raise ValueError("field 'text' must be a string")
    media = {}
    for key in ("image", "audio"):
        v = obj.get(key)
        if v is not None:
            if not isinstance(v, str) or not v:
                raise ValueError(f"field {key!r} must be a path string")
            media[key] = str((base / v) if not Path(v).is_absolute() else Path(v))
    extra = {}
    for k, v in obj.items():
        if k in _CORE:
            continue
        if v is not None and not isinstance(v, (str, int, float, bool)):
            raise ValueError(f"field {k!r} must be a string, number or boolean (metadata), got {type(v).__name__}")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"field {k!r} must be a finite number, got {v}")
        if isinstance(v, int) and not isinstance(v, bool) and not _INT64[0] <= v <= _INT64[1]:
            raise ValueError(f"field {k!r} is an integer outside the 64-bit range the store keeps")
        if v is not None:
            extra[k] = v
    return Item(iid, title, text.strip(), media.get("image"), media.get("audio"), extra)


def load_items_jsonl(path: str | Path, skip_bad: bool = False, report: LoadReport | None = None,
                     title_max_chars: int = TITLE_MAX_CHARS) -> list[Item]:
    """Read a JSONL catalog.

    UTF-8 with or without a BOM; LF or CRLF line ends. Nothing is written: a caller that refuses
    bad input does so before storing anything.

    Raises:
        CatalogLineError: ``file:line: reason`` for the first malformed line (invalid JSON or
            UTF-8, not an object, wrong field types, non-finite numbers, a key twice, a title over
            ``title_max_chars`` characters) or duplicate id (with ``skip_bad``, such lines go to
            ``report.skipped`` and the rest is read).
        DataError: the file is missing, a directory, unreadable, or holds no item.
    """
    path = Path(path)
    report = report if report is not None else LoadReport()
    items, seen = [], {}
    with _open(path, "catalog") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(_utf8(line), object_pairs_hook=_no_duplicate_keys)
                item = _parse_item(obj, path.absolute().parent, title_max_chars)
                if item.id in seen:
                    raise ValueError(f"duplicate item id {item.id!r} (first on line {seen[item.id]})")
            except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
                if isinstance(e, RecursionError):
                    reason = "JSON nested too deeply"
                elif isinstance(e, json.JSONDecodeError):  # its own line number would count from 1 again
                    reason = f"invalid JSON: {e.msg} (column {e.colno})"
                else:
                    reason = str(e)
                err = CatalogLineError(path, n, reason)
                if not skip_bad:
                    raise err from None
                report.skipped.append(err)
                continue
            seen[item.id] = n
            items.append(item)
    if not items:
        raise DataError(f"catalog file {path} holds no valid item")
    return items


def load_interactions_csv(
    path: str | Path, known_items: set[str] | None = None, skip_bad: bool = False, report: LoadReport | None = None
) -> list[Interaction]:
    """Read ``user,item,timestamp[,rating]`` rows.

    UTF-8 with or without a BOM; LF or CRLF line ends. Timestamps and ratings must be finite
    numbers (a timestamp before 1970 is negative, and valid).

    Raises:
        CatalogLineError: a malformed row (wrong column count, invalid UTF-8 or CSV, a timestamp
            or rating that is not a finite number), or an item id not in ``known_items``
            (with ``skip_bad``: recorded in ``report.skipped``).
        DataError: missing, unreadable or directory file; missing header.
    """
    path = Path(path)
    report = report if report is not None else LoadReport()
    out = []
    with _open(path, "interactions") as f:
        reader = csv.reader(f)
        try:
            header = [_utf8(h).strip() for h in next(reader, [])]
        except (ValueError, csv.Error) as e:
            raise CatalogLineError(path, 1, f"unreadable header: {e}") from None
        if header[:3] != ["user", "item", "timestamp"] or header[3:] not in ([], ["rating"]):
            raise CatalogLineError(path, 1, f"header must be user,item,timestamp[,rating], got {','.join(header)}")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                row, bad = None, e
            n = reader.line_num
            if row is not None and (not row or not any(c.strip() for c in row)):
                continue
            try:
                if row is None:
                    raise ValueError(f"malformed CSV: {bad}")
                for c in row:
                    _utf8(c)
                if len(row) != len(header):
                    raise ValueError(f"expected {len(header)} columns, got {len(row)}")
                user, item = _id(row[0], "user"), _id(row[1], "item")
                if known_items is not None and item not in known_items:
                    raise ValueError(f"item {item!r} is not in the catalog")
                ts = _number(row[2], "timestamp")
                rating = _number(row[3], "rating") if len(row) > 3 and row[3].strip() else None
            except ValueError as e:
                err = CatalogLineError(path, n, str(e))
                if not skip_bad:
                    raise err from None
                report.skipped.append(err)
                continue
            out.append(Interaction(user, item, ts, rating))
    return out


def load_catalog(
    items_path: str | Path, interactions_path: str | Path | None = None, skip_bad: bool = False,
    title_max_chars: int = TITLE_MAX_CHARS,
) -> tuple[Dataset, LoadReport]:
    """Load a JSONL catalog and its optional interactions CSV (see the module docstring); raises
    what :func:`load_items_jsonl` and :func:`load_interactions_csv` raise."""
    report = LoadReport()
    items = load_items_jsonl(items_path, skip_bad, report, title_max_chars)
    inter = []
    if interactions_path:
        inter = load_interactions_csv(interactions_path, {i.id for i in items}, skip_bad, report)
    return Dataset(Path(items_path).stem, items, inter), report
