"""Deterministic parsing of one chat message into intents (no LLM).

``parse(message, index, genres)`` finds trigger phrases ("I loved", "hated", "not a fan of",
"I've seen", "more like", "why", "not that one", "show more", "I'm user 42"); the words after a
trigger that takes titles, up to the next trigger, are read as references: ordinals ("the
second", "#3", "the last one") that point into the last list shown, "it"/"that one" (the item in
focus), or titles. A list of titles is split by preferring spans that resolve: from each word, the
longest span with an exact key in the :class:`~llmrec.agent.titles.TitleIndex` wins, so "Sense and
Sensibility" or "Good, the Bad and the Ugly, The" stay whole; separators (",", "and", "or", "&",
quotes) lie between spans. A stretch no exact span starts goes to the typo/prefix resolver, and is
kept as a title (to be asked back when unresolved) unless it reads as a description ("something
tense", a genre word); the rest of the message is free text: genre words (the catalog's genres and
a few synonyms), negated ones ("no horror") to avoid, other negated words ("not gory") as terms
to steer away from, and the remainder as the free-text query.

A message with no trigger that consists only of titles is read as titles the user likes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llmrec.agent.titles import Resolution, TitleIndex, fold
from llmrec.errors import RequestError

MAX_MESSAGE_CHARS = 4000
"""Longer messages are refused (:class:`RequestError`)."""
MAX_SPAN_TOKENS = 30
"""The longest title span tried, in tokens."""

ORDINALS = {"first": 1, "1st": 1, "top": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
            "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
            "ninth": 9, "9th": 9, "tenth": 10, "10th": 10, "last": -1}
"""Ordinal words -> 1-based positions in the last list shown (-1: its last item)."""
_ORD = r"(?:" + "|".join(k for k in ORDINALS if k not in ("last", "top")) + r")"
_NOUN = r"(?:one|movie|film|pick|item|title|suggestion)"
_ORDINAL = re.compile(rf"(?:the\s+)?({_ORD})(?:\s+{_NOUN})?\b|the\s+(last|top)(?:\s+{_NOUN})?\b|(last|top)\s+{_NOUN}\b"
                      r"|(?:#|number\s+|no\.\s*)(\d{1,3})\b", re.I)
"""An ordinal reference; "last" and "top" only as "the last" or "last one" ("I saw it last week")."""
_PRONOUN = re.compile(r"(?:it|that|this)(?:\s+(?:one|movie|film))?\b|them\b", re.I)

_LIKE = (r"(?:i\s+(?:(?:really|totally|absolutely|also|just|quite|truly|do|did|very\s+much)\s+)*"
         r"(?:love|loved|like|liked|enjoy|enjoyed|adore|adored)|loved|liked|enjoyed|adored"
         r"|(?:i\s*'?\s*m\s+|i\s+am\s+)?(?:a\s+)?(?:big\s+|huge\s+)?fan\s+of"
         r"|my\s+favou?rites?(?:\s+(?:movies?|films?))?(?:\s+(?:is|are|include))?)")
_DISLIKE = (r"(?:i\s+)?(?:(?:really|totally|absolutely|just|truly)\s+)*"
            r"(?:hated|hate|disliked|dislike|loathed|loathe|detested|detest"
            r"|(?:can\s*'?\s*t|cannot|couldn\s*'?\s*t|could\s+not)\s+stand"
            r"|(?:did|do|does)\s*n(?:o|\s*'\s*)?t\s+(?:like|enjoy|love|care\s+for)"
            r"|(?:i\s*'?\s*m\s+|i\s+am\s+|was\s+)?not\s+(?:really\s+)?(?:a\s+)?(?:big\s+|huge\s+)?fan\s+of"
            r"|not\s+into)")
_NOT_SEEN = (r"(?:i\s+)?(?:have\s*n\s*'?\s*t|have\s+not|did\s*n\s*'?\s*t|did\s+not|never)\s+(?:yet\s+)?"
             r"(?:seen|watched|saw|see|watch)")
""""I haven't seen X": neither a like nor an exclusion; the titles are resolved and left out of the profile."""
_SEEN = r"(?:i\s*(?:'\s*ve|\s+have)\s+|i\s+)?(?:already\s+)?(?:seen|watched|saw)"
_EXCLUDE = (r"(?:not|no|skip|drop|remove|hide|exclude)(?=\s+(?:that|this|it|the\s+(?:" + _ORD + r"|last)|" + _ORD + r")\b)"
            r"|(?:skip|drop|remove|hide|exclude)")
_MORE_LIKE = (r"(?:(?:show|give|find)\s+(?:me\s+)?|i\s+want\s+)?(?:(?:some\s+)?more|something|anything|others?|movies?"
              r"|films?|ones?|stuff)\s+(?:like|similar\s+to)|similar\s+to")
_SHOW_MORE = (r"(?:show|give)\s+(?:me\s+)?(?:some\s+)?(?:more|others|other\s+ones)|more\s+(?:please|results"
              r"|recommendations|suggestions|options|picks)|next\s+(?:page|ones?)|what\s+else|anything\s+else"
              r"|some\s+more|keep\s+going")
_WHY = r"why(?:\s+(?:did\s+you\s+(?:recommend|suggest|pick|choose|show)|do\s+you\s+recommend|is|was|recommend))?"
_USER = r"(?:(?:i\s*'?\s*m|i\s+am|this\s+is|as|for)\s+)?user\s*(?:id\s*)?(?:#|no\.?|number)?\s*:?\s*(\w*\d\w*)"

TRIGGERS = [("user", _USER), ("more_like", _MORE_LIKE), ("show_more", _SHOW_MORE), ("why", _WHY),
            ("dislike", _DISLIKE), ("like", _LIKE), ("not_seen", _NOT_SEEN), ("seen", _SEEN), ("exclude", _EXCLUDE)]
_TRIGGER = re.compile("|".join(f"(?P<{k}>\\b(?:{p})\\b)" for k, p in TRIGGERS), re.I)
_TAKES_REFS = {"like", "dislike", "not_seen", "seen", "exclude", "more_like", "why"}
_BARE_MORE = re.compile(r"\s*(?:more|next|others|more\s+please|show\s+more)\s*[.!?]*\s*", re.I)

_TOKEN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")
_SEPARATORS = {",", "and", "or", "&", "+", "/", "plus", '"', "“", "”", "'", "‘", "’", "(", ")", "-", "–", "also"}
_STOPS = {"but", ";", ".", "!", "?", ":", "though", "although", "because", "since", "so", "which", "who"}
_CUES = {"something", "anything", "stuff", "movie", "movies", "film", "films", "ones", "one", "genre", "genres",
         "kind", "type", "with", "without", "not", "no", "nothing", "more", "less", "please", "maybe", "preferably",
         "ideally", "especially", "mood", "feel", "vibe", "like", "recent", "old", "new", "classic", "classics"}
_NEGATION = re.compile(r"\b(?:not|no|nothing|without|avoid|never|except|minus)\s+((?:(?:too|very|so|a|an|the|any|overly"
                       r"|really|that)\s+)*[\w'-]+)", re.I)
_FILLER = re.compile(
    r"\b(?:i\s*'?\s*d\s+like|i\s+would\s+like|i\s+want|i\s*'?\s*m\s+looking\s+for|i\s+am\s+looking\s+for|looking\s+for"
    r"|(?:i\s*'?\s*m\s+)?in\s+the\s+mood\s+for|give\s+me|show\s+me|recommend(?:\s+me)?|suggest(?:\s+me)?|can\s+you"
    r"|could\s+you|please|find\s+me|something|anything|some|a\s+movie|a\s+film|movies|films|stuff|hi|hello|hey"
    r"|thanks|thank\s+you|now|also|and|but|then|ok(?:ay)?|well|maybe|that\s+is|that\s+are|which\s+is)\b", re.I)

_STOPWORDS = {"there", "here", "i", "me", "my", "you", "your", "it", "its", "is", "are", "was", "be", "to", "of",
              "for", "in", "on", "at", "with", "that", "this", "what", "how", "yes", "no", "ok", "a", "an", "the",
              "one", "ones", "so", "very", "really", "just", "good", "great", "nice", "cool", "lol", "hmm", "um"}
"""A query made only of these words says nothing ("hello there")."""

GENRE_SYNONYMS = {"sci fi": "sci-fi", "scifi": "sci-fi", "science fiction": "sci-fi", "romantic": "romance",
                  "romcom": "comedy", "rom com": "comedy", "funny": "comedy", "funnier": "comedy", "comedies": "comedy",
                  "scary": "horror", "horror": "horror", "animated": "animation", "cartoon": "animation",
                  "cartoons": "animation", "kids": "children", "family": "children", "documentaries": "documentary",
                  "thrillers": "thriller", "westerns": "western", "musicals": "musical", "mysteries": "mystery",
                  "noir": "film-noir", "dramas": "drama", "adventures": "adventure", "war movie": "war",
                  "war film": "war"}
"""Words that name a catalog genre (matched after folding; the genre must exist in the catalog)."""


@dataclass(frozen=True)
class Ref:
    """One reference to an item: ``ordinal`` (1-based position in the last list shown, -1 its last
    item), or ``mention`` (the span the user typed and its :class:`~llmrec.agent.titles.Resolution`),
    or neither: "it" / "that one", the item in focus."""

    ordinal: int | None = None
    text: str | None = None
    resolution: Resolution | None = None


@dataclass
class Parsed:
    """The intents of one message. Lists keep the message's order."""

    liked: list[Ref] = field(default_factory=list)
    disliked: list[Ref] = field(default_factory=list)
    excluded: list[Ref] = field(default_factory=list)
    """"not that one", "I've seen it", "seen the first", "skip Heat"."""
    more_like: list[Ref] = field(default_factory=list)
    why: Ref | None = None
    asked_why: bool = False
    show_more: bool = False
    user: str | None = None
    genres: list[str] = field(default_factory=list)
    avoid_genres: list[str] = field(default_factory=list)
    query: str | None = None
    """The free-text query, negated words removed ("tense" of "something tense but not gory")."""
    avoid_terms: list[str] = field(default_factory=list)
    """Negated words that are not genres ("gory")."""

    def empty(self) -> bool:
        return not (self.liked or self.disliked or self.excluded or self.more_like or self.asked_why
                    or self.show_more or self.user or self.genres or self.avoid_genres or self.query
                    or self.avoid_terms)


def check_message(message) -> str:
    """The message, checked. Raises RequestError: not a string, empty or blank, or too long."""
    if not isinstance(message, str):
        raise RequestError(f"a message must be a string, got {type(message).__name__}")
    if not message.strip():
        raise RequestError("a message must not be empty")
    if len(message) > MAX_MESSAGE_CHARS:
        raise RequestError(f"a message is at most {MAX_MESSAGE_CHARS} characters, got {len(message)}")
    return message


def ordinal_of(text: str) -> int | None:
    """The position an ordinal at the start of ``text`` names ("the second one" -> 2), or None."""
    m = _ORDINAL.match(text.strip())
    if not m:
        return None
    word = m.group(1) or m.group(2) or m.group(3)
    return ORDINALS[word.lower()] if word else int(m.group(4))


def parse(message: str, index: TitleIndex, genres: list[str] | tuple[str, ...] = ()) -> Parsed:
    """Parse one message (see the module docstring).

    Args:
        message: what the user wrote (untrusted; only matched, never executed).
        index: the catalog's titles.
        genres: the catalog's genre names ("Sci-Fi", "Children's", ...), for genre words.
    Returns:
        :class:`Parsed`.
    Raises:
        RequestError: ``message`` is not a string, is blank, or is longer than :data:`MAX_MESSAGE_CHARS`.
    """
    text = check_message(message)
    out = Parsed()
    free: list[str] = []
    triggers = _triggers(text, index)
    if not triggers:
        if _BARE_MORE.fullmatch(text):
            out.show_more = True
            return out
        refs, rest = _refs(text, index)
        if refs and all(r.resolution is not None and r.resolution.how == "exact" for r in refs) \
                and not rest.strip(" \t\n.,;:!?"):
            out.liked = refs  # a bare list of titles: titles the user likes
            return out
        _free_text(text, out, genres)
        return out
    free.append(text[: triggers[0][1].start()])
    for n, (kind, m) in enumerate(triggers):
        end = triggers[n + 1][1].start() if n + 1 < len(triggers) else len(text)
        region = text[m.end():end]
        if kind == "user":
            out.user = re.search(r"(\w*\d\w*)\s*$", m.group(0)).group(1)
            free.append(region)
        elif kind == "show_more":
            out.show_more = True
            free.append(region)
        elif kind in _TAKES_REFS:
            refs, rest = _refs(region, index)
            _last_title_for_it(refs, out)
            if kind == "not_seen":
                pass
            elif kind == "why":
                out.asked_why = True
                out.why = refs[0] if refs else None
            else:
                {"like": out.liked, "dislike": out.disliked, "seen": out.excluded, "exclude": out.excluded,
                 "more_like": out.more_like}[kind].extend(refs)
            # "I don't like musicals": a dislike that names no title is a negation ("no musicals")
            free.append(f"no {rest}" if kind == "dislike" and not refs and rest.strip() else rest)
    _free_text(" ".join(free), out, genres)
    return out


def _triggers(text: str, index: TitleIndex) -> list[tuple[str, re.Match]]:
    """The trigger phrases of ``text`` (kind, match), in order, without those inside a title of a list:
    a trigger after one that takes titles is dropped when an exact title span covers it, starting at
    the beginning of that trigger's list or right after a separator ("I liked heat, drop zone and
    alien": "drop" is in "Drop Zone"; "my favorite year", "thin line between love and hate")."""
    found = [(m.lastgroup, m) for m in _TRIGGER.finditer(text)]
    if len(found) < 2:
        return found
    toks = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    kept = [found[0]]
    for kind, m in found[1:]:
        prev_kind, prev = kept[-1]
        if prev_kind in _TAKES_REFS and _covered(text, toks, prev.end(), m, index):
            continue
        kept.append((kind, m))
    return kept


def _covered(text: str, toks, start: int, m: re.Match, index: TitleIndex) -> bool:
    """Whether an exact title span that starts at a list boundary at or after character ``start``
    (the first token, or one right after a separator) reaches past the end of match ``m``."""
    first = next((n for n, t in enumerate(toks) if t[1] >= start), len(toks))
    at = next((n for n, t in enumerate(toks) if t[1] >= m.start()), len(toks))  # the trigger's first token
    for n in range(max(first, at - MAX_SPAN_TOKENS + 1), at + 1):
        if n != first and toks[n - 1][0].lower() not in _SEPARATORS:
            continue
        span = _longest_exact(text, toks, n, index)
        if span and toks[span[0]][2] >= m.end():
            return True
    return False


def _last_title_for_it(refs: list[Ref], out: Parsed) -> None:
    """ "I watched Alien and loved it": "it" is the title named just before in the same message."""
    named = [r for r in out.liked + out.disliked + out.excluded + out.more_like if r.resolution is not None]
    for i, r in enumerate(refs):
        if r.ordinal is None and r.resolution is None and named:
            refs[i] = named[-1]


def _refs(region: str, index: TitleIndex) -> tuple[list[Ref], str]:
    """References at the start of ``region``: ordinals, pronouns and titles with separators between;
    returns them and the rest of the region (free text). A title must reach past an ordinal or a
    pronoun at the same place to win over it ("the first wives club", but "it" is not "It (2017)")."""
    toks = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(region)]
    refs: list[Ref] = []
    i = 0
    while i < len(toks):
        word = toks[i][0].lower()
        span = _longest_exact(region, toks, i, index)
        if word in _STOPS and not (span and span[0] > i):  # "so i married an axe murderer" is a title
            break
        short = _ORDINAL.match(region, toks[i][1]) or _PRONOUN.match(region, toks[i][1])
        if span and (not short or toks[span[0]][2] > short.end()):
            j, res = span
            refs.append(Ref(text=region[toks[i][1]:toks[j][2]], resolution=res))
            i = j + 1
        elif short:
            refs.append(Ref(ordinal=ordinal_of(short.group(0))) if short.re is _ORDINAL else Ref())
            i = next((n for n, t in enumerate(toks) if t[1] >= short.end()), len(toks))
        elif word in _SEPARATORS:
            i += 1
        else:
            got = _loose(region, toks, i, index, first=not refs)
            if got is None:
                break
            j, res = got
            refs.append(Ref(text=region[toks[i][1]:toks[j][2]], resolution=res))
            i = j + 1
    return refs, (region[toks[i][1]:] if i < len(toks) else "")


def _longest_exact(region: str, toks, i: int, index: TitleIndex):
    """(last token, resolution) of the longest span from token ``i`` with an exact title key, or None.

    A span may end in dots attached to its last word when a separator or the end follows them
    ("sunset blvd., heat", "when harry met sally..."). A span whose last word is a year after a
    separator ("heat, 2001") is not read as that title of that year when the year matches none."""
    if not toks[i][0][0].isalnum():
        return None
    for j in range(min(len(toks), i + MAX_SPAN_TOKENS) - 1, i - 1, -1):
        if toks[j][0] == ".":
            nxt = toks[j + 1][0].lower() if j + 1 < len(toks) else None
            if j == i or toks[j][1] != toks[j - 1][2] or nxt == "." or (nxt is not None and nxt not in _SEPARATORS):
                continue
        elif not (toks[j][0][0].isalnum() or toks[j][0] in ")!?"):
            continue
        res = index.exact(region[toks[i][1]:toks[j][2]])
        if res is None:
            continue
        if res.kind == "unknown" and res.year is not None and j - 1 > i and toks[j - 1][0].lower() in _SEPARATORS:
            continue
        return j, res
    return None


def _loose(region: str, toks, i: int, index: TitleIndex, first: bool):
    """A title with no exact key at token ``i``: the stretch up to the next stop, then up to the next
    separator, through the typo/prefix resolver. A stretch with a cue word ("something", "movies",
    a genre word) is a description, not a title. An unresolved stretch is kept as a title (to ask
    back) only when it is the first reference or an exact title follows it; else it ends the titles
    (None: free text)."""
    stop = next((n for n in range(i, len(toks)) if toks[n][0].lower() in _STOPS), len(toks))
    sep = next((n for n in range(i, stop) if toks[n][0].lower() in _SEPARATORS), stop)
    for j in dict.fromkeys((stop - 1, sep - 1)):
        words = [t[0].lower() for t in toks[i:j + 1]]
        if j < i or any(w in _CUES or fold(w) in GENRE_SYNONYMS for w in words):
            continue
        res = index.resolve(region[toks[i][1]:toks[j][2]])
        if res.kind != "unknown":
            return j, res
        if j == sep - 1:
            nxt = next((n for n in range(sep, stop) if toks[n][0].lower() not in _SEPARATORS), None)
            if first or (nxt is not None and _longest_exact(region, toks, nxt, index)):
                return j, res
    return None


def _genre_key(word: str) -> str:
    """ "Children's" and "childrens" -> "children"; "Sci-Fi" -> "sci-fi"."""
    return fold(word).strip(" '").replace("'s", "").replace("'", "")


def _free_text(text: str, out: Parsed, genres) -> None:
    """Genre words, negations and the query from the text no trigger took."""
    names = {_genre_key(g): g for g in genres}
    syn = {k: v for k, v in GENRE_SYNONYMS.items() if v in names}

    def genre_of(word: str) -> str | None:
        w = _genre_key(word)
        w = syn.get(w, w)
        return names.get(w) or (names.get(w[:-1]) if w.endswith("s") else None)

    def negated(m: re.Match) -> str:
        words = m.group(1).split()
        g = genre_of(words[-1])
        if g:
            out.avoid_genres.append(g)
        else:
            out.avoid_terms.append(words[-1].lower())
        return " "

    s = _NEGATION.sub(negated, text)
    for phrase in sorted(syn, key=len, reverse=True):
        if " " in phrase and re.search(rf"\b{re.escape(phrase)}\b", fold(s)):
            out.genres.append(names[syn[phrase]])
    for w in re.findall(r"[\w'-]+", s):
        g = genre_of(w)
        if g and g not in out.genres and g not in out.avoid_genres:
            out.genres.append(g)
    query = re.sub(r"^(?:(?:a|an|the)\s+)+", "", " ".join(_FILLER.sub(" ", s).split()).strip(" ,.;:!?-"), flags=re.I)
    out.query = query if set(re.findall(r"[^\W\d_][\w'-]*", query.lower())) - _STOPWORDS else None
    out.genres = list(dict.fromkeys(out.genres))
    out.avoid_genres = list(dict.fromkeys(out.avoid_genres))
