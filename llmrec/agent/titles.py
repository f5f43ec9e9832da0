"""Title resolution: what a user types ("the matrix", "hamlet 1996", "godfater") -> catalog items.

Deterministic (no LLM). A catalog title such as ``"Matrix, The (1999)"`` or ``"Seven (a.k.a.
Se7en) (1995)"`` is split into its primary title, its alternate titles (trailing parentheses,
``a.k.a.`` dropped) and its year; each title is indexed under a normalised key: accents and case
folded, ``&`` read as ``and``, a trailing article moved to the front (``", The"``, and the foreign
ones MovieLens uses: ``", Le"``, ``", La"``, ``", Il"``, ``", Das"``, ...), punctuation removed, then
a leading English article dropped. So ``"Matrix, The"``, ``"the matrix"`` and ``"matrix"`` share the
key ``"matrix"``; a title with a moved foreign article is also indexed without it (``"Postino, Il"``:
``"il postino"`` and ``"postino"``).

:meth:`TitleIndex.resolve` tries, in order: the exact key (with the year, when the text ends with one,
as a filter), a typo match (optimal-string-alignment edit distance, via ``rapidfuzz``, within a
budget that grows with the length), and a whole-word prefix of a few titles; several distinct
titles at the same level are *ambiguous* (never settled by popularity), and so are several items
that share one title but not their content (a catalog may hold three films called "Crash": the
chat asks which, by year or id); only entries identical in everything but the id are one film
listed twice. Nothing close is *unknown* with the closest titles as suggestions. Item text is untrusted: it is only compared, never obeyed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from llmrec.data.types import Item, item_key
from llmrec.errors import RequestError
from llmrec.text_safety import display_text

ARTICLES_EN = ("the", "a", "an")
ARTICLES = ARTICLES_EN + ("le", "la", "les", "l'", "il", "lo", "gli", "das", "der", "die", "den", "det",
                          "el", "los", "las", "o", "un", "une", "una", "ein", "eine")
"""Articles MovieLens moves to the end of a title (``"Postino, Il"``); English ones are dropped from keys."""

_TRAILING_ARTICLE = re.compile(r"^(.*\S)\s*,\s*(" + "|".join(re.escape(a) for a in ARTICLES) + r")\s*$")
_TRAILING_GROUP = re.compile(r"\s*\(([^()]*)\)\s*$")
_YEAR_GROUP = re.compile(r"(\d{4})(?:\s*[-–]\s*(?:\d{4})?)?")
_MARKERS = {"v", "tv", "tv series", "tv movie", "video", "mini-series", "miniseries"}
_AKA = re.compile(r"^\s*(?:a\.?\s?k\.?\s?a\.?|aka)\s+", re.I)
_QUERY_YEAR = re.compile(r"^(.*?\S)\s*(?:\(\s*((?:18|19|20)\d\d)\s*\)|,?\s+(?:from\s+|in\s+|of\s+)?((?:18|19|20)\d\d))\s*$",
                         re.I)
_DIGITS = re.compile(r"\d+")

MAX_QUERY_CHARS = 300
"""Longer texts are refused (:class:`RequestError`): no title is that long, and it bounds the work."""
PREFIX_MAX = 8
"""At most this many distinct titles starting with the text (whole words) make it *ambiguous*."""
SUGGESTIONS = 5
"""Closest titles returned with an *unknown* resolution."""


def fold(text: str) -> str:
    """Accents removed (NFKD, combining marks dropped), case folded, ``&`` read as ``and``."""
    s = unicodedata.normalize("NFKD", text)
    s = "".join(c for c in s if not unicodedata.combining(c))
    return s.casefold().replace("&", " and ")


def _words(s: str) -> list[str]:
    s = re.sub(r"\b([ld])['’`]", r"\1 ", s)  # l'uomo -> l uomo, d'artagnan -> d artagnan
    s = re.sub(r"['’`]", "", s)  # schindler's -> schindlers
    return re.sub(r"[\W_]+", " ", s).split()


def normalize(text: str) -> str:
    """The index key of a title or of what a user typed: ``"Matrix, The"`` -> ``"matrix"``,
    ``"The Good, the Bad & the Ugly"`` -> ``"good the bad and the ugly"``, ``"Léon"`` -> ``"leon"``."""
    s = fold(text).strip()
    m = _TRAILING_ARTICLE.match(s)
    if m:
        s = f"{m.group(2)} {m.group(1)}"
    words = [_ROMAN.get(w, w) for w in _words(s)]
    if len(words) > 1 and words[0] in ARTICLES_EN:
        words = words[1:]
    return " ".join(words)


_ROMAN = {"ii": "2", "iii": "3", "iv": "4", "vi": "6", "vii": "7", "viii": "8"}
"""Sequel numerals read as digits ("Godfather: Part II" = "godfather part 2"); i, v, x stay words."""


def split_title(title: str) -> tuple[str, list[str], int | None]:
    """``"Seven (a.k.a. Se7en) (1995)"`` -> ``("Seven", ["Se7en"], 1995)``: the primary title, the
    alternate titles in trailing parentheses (``a.k.a.`` and markers such as ``(V)`` dropped) and the
    year (the last 4-digit group, a range such as ``(1995-1998)`` gives its first year), or None."""
    rest, alternates, year = title.strip(), [], None
    while (m := _TRAILING_GROUP.search(rest)) and m.start() > 0:
        inner = m.group(1).strip()
        if year is None and _YEAR_GROUP.fullmatch(inner):
            year = int(inner[:4])
        elif inner and inner.casefold() not in _MARKERS:
            alternates.insert(0, _AKA.sub("", inner))
        rest = rest[: m.start()]
    return rest.strip() or title.strip(), alternates, year


def title_keys(title: str) -> list[str]:
    """Every key a catalog title is indexed under, the primary title's first (deduplicated)."""
    primary, alternates, _ = split_title(title)
    keys = []
    for part in [primary, *alternates]:
        keys.append(normalize(part))
        m = _TRAILING_ARTICLE.match(fold(part).strip())
        if m and m.group(2) not in ARTICLES_EN:  # "Postino, Il" is also "postino"
            keys.append(normalize(m.group(1)))
    return [k for k in dict.fromkeys(keys) if k]


def typed_title(title: str) -> str:
    """A catalog title as a user types it: ``"Matrix, The (1999)"`` -> ``"matrix"``,
    ``"Postino, Il (1994)"`` -> ``"il postino"``, ``"Seven (a.k.a. Se7en) (1995)"`` -> ``"seven"``
    (the primary title, lower case, no year, no leading English article)."""
    primary = split_title(title)[0].strip().lower()
    m = _TRAILING_ARTICLE.match(primary)
    if m:
        primary = m.group(1) if m.group(2) in ARTICLES_EN else f"{m.group(2)} {m.group(1)}"
    words = primary.split()
    if len(words) > 1 and words[0] in ARTICLES_EN:
        words = words[1:]
    return " ".join(words)


def year_of(item: Item) -> int | None:
    """The year in the item's title, else its ``year`` field (an integer, or a string of 4 digits,
    from 1800 to 2099), else None."""
    year = split_title(item.title)[2]
    if year is not None:
        return year
    v = item.fields.get("year")
    if isinstance(v, str) and re.fullmatch(r"\s*\d{4}\s*", v):
        v = int(v)
    return v if isinstance(v, int) and not isinstance(v, bool) and 1800 <= v <= 2099 else None


def _content(item: Item) -> tuple:
    """What an item shows besides its id: entries with equal content are one film listed twice."""
    return (item.title, item.text, item.image, item.audio, sorted(item.fields.items(), key=lambda kv: kv[0]))


@dataclass(frozen=True)
class Resolution:
    """The outcome of :meth:`TitleIndex.resolve`.

    ``kind``: ``matched`` (``item`` is the one meant; ``duplicates`` holds other catalog entries that
    show exactly the same (title, text, media, fields; e.g. ml-100k lists some films twice)),
    ``ambiguous`` (``candidates``: two or more distinct items, oldest first, then by id: different
    titles or years, or items that share a title but differ in content; ask the user), or
    ``unknown`` (``candidates``: up to
    :data:`SUGGESTIONS` closest titles, best first, possibly none). ``how``: ``exact``, ``typo``,
    ``prefix`` or ``none``. ``year``: the year the text gave, if any.
    """

    kind: str
    query: str
    item: Item | None = None
    candidates: tuple[Item, ...] = ()
    duplicates: tuple[Item, ...] = ()
    how: str = "none"
    year: int | None = None

    @property
    def matched(self) -> bool:
        return self.kind == "matched"


class TitleIndex:
    """Resolves typed titles against a catalog.

    Args:
        items: the catalog (any iterable of :class:`~llmrec.data.types.Item`); titles are data, not
            instructions, and are indexed as they are shown (:func:`llmrec.text_safety.display_text`:
            ``"Clear\x1b[2JScreen"`` is ``"clearscreen"``).
    """

    def __init__(self, items: Iterable[Item]):
        self.items: list[Item] = list(items)
        self._year = [year_of(it) for it in self.items]
        by_key: dict[str, list[int]] = {}
        for n, it in enumerate(self.items):
            for key in title_keys(display_text(it.title)):  # as shown: a user types what they see
                by_key.setdefault(key, []).append(n)
        self._by_key = by_key
        self._keys = list(by_key)
        self._by_squash: dict[str, list[str]] = {}
        for key in self._keys:
            self._by_squash.setdefault(key.replace(" ", ""), []).append(key)

    def __len__(self) -> int:
        return len(self.items)

    def exact(self, text: str) -> Resolution | None:
        """The resolution of ``text`` by its exact key (a trailing year filters), or None when no
        title has that key. A year no title of that key has gives ``unknown`` with those titles as
        suggestions (the text names a title, just not that year's).

        Raises:
            RequestError: ``text`` is not a string, or longer than :data:`MAX_QUERY_CHARS`.
        """
        for key, year in self._readings(text):
            if key in self._by_key:
                return self._decide(text, [(n, key) for n in self._by_key[key]], year, "exact")
            squashed = self._by_squash.get(key.replace(" ", ""))
            if key and squashed:  # punctuation left out: "iq" is "I.Q.", "20000 leagues" is "20,000 Leagues"
                return self._decide(text, [(n, k) for k in squashed for n in self._by_key[k]], year, "exact")
        return None

    def resolve(self, text: str) -> Resolution:
        """Resolve what a user typed to a catalog item (see the module docstring for the order).

        Returns a :class:`Resolution`; text with no letters or digits is ``unknown`` with no candidates.

        Raises:
            RequestError: ``text`` is not a string, or longer than :data:`MAX_QUERY_CHARS`.
        """
        got = self.exact(text)
        if got is not None:
            return got
        readings = self._readings(text)
        if not readings[-1][0]:
            return Resolution("unknown", text)
        key, year = readings[-1]
        return self._prefix(text, key, year) or self._typo(text, key, year) or self._unknown(text, key, year)

    # ---------------------------------------------------------------- internals
    def _readings(self, text: str) -> list[tuple[str, int | None]]:
        """(key, year) readings of the text: the whole text as a title first (``"1984"``, ``"Hamlet 2"``),
        then with a trailing year split off; a parenthesised year is always a year."""
        if not isinstance(text, str):
            raise RequestError(f"a title must be a string, got {type(text).__name__}")
        if len(text) > MAX_QUERY_CHARS:
            raise RequestError(f"a title is at most {MAX_QUERY_CHARS} characters, got {len(text)}")
        m = _QUERY_YEAR.match(text.strip())
        if not m:
            return [(normalize(text), None)]
        split = (normalize(m.group(1)), int(m.group(2) or m.group(3)))
        return [split] if m.group(2) else [(normalize(text), None), split]

    def _decide(self, text: str, hits: list[tuple[int, str]], year: int | None, how: str) -> Resolution:
        """Items ``hits`` (row, the key it matched by) that share a key, a year and their whole
        content (:func:`_content`) are one film listed twice (duplicates); two or more such groups
        are ambiguous, whatever their popularity (several items under one title, differing in
        year, text or metadata, are asked about, never merged)."""
        if year is not None:
            same = [(n, k) for n, k in hits if self._year[n] == year]
            if not same:
                near = sorted(hits, key=lambda h: (abs((self._year[h[0]] or 0) - year), self._year[h[0]] or 0))
                return Resolution("unknown", text, candidates=self._distinct(near)[:SUGGESTIONS], how=how, year=year)
            hits = same
        groups: dict[tuple, list[int]] = {}
        for n, k in sorted(hits, key=lambda h: (self._year[h[0]] or 0, item_key(self.items[h[0]].id))):
            groups.setdefault((k, self._year[n], repr(_content(self.items[n]))), []).append(n)
        rows = list(dict.fromkeys(g[0] for g in groups.values()))  # one row may match by two keys
        if len(rows) == 1:
            rest = dict.fromkeys(n for g in groups.values() for n in g if n != rows[0])
            return Resolution("matched", text, self.items[rows[0]], duplicates=tuple(self.items[n] for n in rest),
                              how=how, year=year)
        return Resolution("ambiguous", text, candidates=tuple(self.items[n] for n in rows), how=how, year=year)

    def _distinct(self, hits: Iterable[tuple[int, str]]) -> tuple[Item, ...]:
        """One item per (key, year), in the given order."""
        seen, out = set(), []
        for n, k in hits:
            if (k, self._year[n]) not in seen and self.items[n] not in out:
                seen.add((k, self._year[n]))
                out.append(self.items[n])
        return tuple(out)

    def _typo(self, text: str, key: str, year: int | None) -> Resolution | None:
        """Titles within the edit budget (1 edit up to 7 characters, 2 up to 14, then 3; none under 4),
        each word within its own (1 edit in 3-5 letters, 2 from 6; a different word count: 1 edit in
        all), whose numbers are the text's (a typo never turns "Alien 2" into "Alien 3")."""
        budget = 0 if len(key) < 4 else 1 if len(key) <= 7 else 2 if len(key) <= 14 else 3
        if not budget:
            return None
        found = process.extract(key, self._keys, scorer=OSA.distance, score_cutoff=budget, limit=50)
        digits = _DIGITS.findall(key)
        found = [(k, d) for k, d, _ in found if _DIGITS.findall(k) == digits and _words_close(key, k)]
        if not found:
            return None
        best = min(d for _, d in found)
        hits = [(n, k) for k, d in found if d == best for n in self._by_key[k]]
        return self._decide(text, hits, year, "typo")

    def _prefix(self, text: str, key: str, year: int | None) -> Resolution | None:
        """Titles that start with the text's words (at least 4 characters): one is a match, up to
        :data:`PREFIX_MAX` are ambiguous."""
        if len(key) < 4:
            return None
        hits = [(n, k) for k in self._keys if k.startswith(key + " ") for n in self._by_key[k]]
        if year is not None:
            hits = [(n, k) for n, k in hits if self._year[n] == year]
        if not hits or len({(k, self._year[n]) for n, k in hits}) > PREFIX_MAX:
            return None
        return self._decide(text, hits, None, "prefix")

    def _unknown(self, text: str, key: str, year: int | None) -> Resolution:
        found = [k for k, _, _ in process.extract(key, self._keys, scorer=fuzz.WRatio, limit=4 * SUGGESTIONS)]
        found.sort(key=lambda k: not k.startswith(key + " "))  # titles that start with the text first
        hits = [(n, k) for k in found for n in self._by_key[k]]
        return Resolution("unknown", text, candidates=self._distinct(hits)[:SUGGESTIONS], year=year)


def _words_close(typed: str, key: str) -> bool:
    a, b = typed.split(), key.split()
    if len(a) != len(b):
        return OSA.distance(typed.replace(" ", ""), key.replace(" ", "")) <= 1
    return all(OSA.distance(x, y) <= (0 if len(x) <= 2 else 1 if len(x) <= 5 else 2) for x, y in zip(a, b, strict=True))
