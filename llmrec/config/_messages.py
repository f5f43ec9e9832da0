"""ConfigError messages from pydantic's validation errors, and values as the summary line prints them."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from llmrec.config._types import SECRET_MASK
from llmrec.config.sources import Layout
from llmrec.errors import ConfigError


def show(v: Any) -> str:
    """A value as :meth:`Config.summary` prints it: paths as strings, lists comma-separated."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) if v else "[]"
    return "null" if v is None else str(v)


_RULES = {"greater_than_equal": ">= {ge}", "greater_than": "> {gt}", "less_than_equal": "<= {le}",
          "less_than": "< {lt}", "finite_number": "a finite number", "literal_error": "{expected}"}


def config_error(e: ValidationError, lay: Layout, secrets: frozenset[str]) -> ConfigError:
    """Pydantic's errors as one ConfigError naming each key (nested and flat name) and its rule."""
    unknown, lines = [], []
    for err in e.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        group = loc[0] if len(loc) > 1 and loc[0] in lay.groups else None
        if err["type"] == "extra_forbidden":
            unknown.append(".".join(loc[:2]))
            continue
        flat = lay.flat_name(group, loc[1]) if group and loc[1] in lay.groups[group].model_fields else None
        name = f"{group}.{loc[1]}' (flat '{flat}')" if flat else (f"{loc[0]}'" if loc else None)
        value = SECRET_MASK if (flat or (loc or [""])[0]) in secrets else err.get("input")
        ctx = err.get("ctx") or {}
        if err["type"] == "value_error":
            rule = str(ctx.get("error", err["msg"]))
        elif value is None:
            rule = "needs a value, got null"
        elif err["type"] in _RULES:
            rule = f"must be {_RULES[err['type']].format(**ctx)}, got {value!r}"
        else:
            rule = f"cannot read {value!r}: {err['msg']}"
        sep = " " if rule.startswith(("must", "is ", "needs")) else ": "
        lines.append(f"config key '{name}{sep}{rule}" if name else rule)
    if unknown:
        known = [*lay.top, *lay.groups, *lay.flat, *lay.dotted.values()]
        hints = [m for u in unknown for m in difflib.get_close_matches(u, known, n=1)]
        lines.insert(0, f"unknown config key(s): {', '.join(sorted(unknown))}"
                        + (f" (did you mean {', '.join(map(repr, hints))}?)" if hints else "")
                        + f"; known: {', '.join(sorted(lay.top))}, and the groups {', '.join(sorted(lay.groups))} "
                          "(group.key, or the flat group_key)")
    return ConfigError("; ".join(lines))
