"""Field types shared by the config groups: the coercions the YAML file and the environment need
(numbers and paths as text, comma-separated lists, ``auto`` for an unset boolean) and the small checks
several keys share. Pydantic does the casting; these only say what it may accept."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

REPO_ROOT = Path(__file__).resolve().parents[2]

SECRET_MASK = "<hidden>"
"""What :meth:`Config.summary` and :meth:`Config.write` show for a set secret key."""

SECRET = {"secret": True}
"""``json_schema_extra`` of a secret field (never printed or written by llmrec): :func:`secret_keys`."""


def _no_bool(v: Any) -> Any:
    # YAML's `k: true` is not a number, though Python's bool is an int.
    if isinstance(v, bool):
        raise ValueError(f"cannot read {v!r} as a number (a boolean)")
    return v


def _to_str(v: Any) -> Any:
    # A YAML number or a Path given by the program for a text key, as today: its text.
    return str(v) if isinstance(v, (int, float, os.PathLike)) else v


def _split(v: Any) -> Any:
    """The environment's spelling of a list: comma-separated, brackets and quotes optional."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [x.strip().strip("'\"") for x in text.split(",") if x.strip()]
    return v


def _int_list(v: Any) -> Any:
    # Text is cast here; any other value is left for the stage that reads the key to check
    # (llmrec.retrieval.train.check_config names what is wrong with sasrec_seeds).
    if isinstance(v, str):
        try:
            return [int(x) for x in _split(v)]
        except ValueError:
            raise ValueError(f"cannot read {v!r} as a list of integers") from None
    return v


def _auto(v: Any) -> Any:
    return None if isinstance(v, str) and v.strip().lower() in ("auto", "null", "none") else v


Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
Str = Annotated[str, BeforeValidator(_to_str)]
PathT = Annotated[Path, BeforeValidator(_no_bool), AfterValidator(lambda p: p.expanduser())]
StrList = Annotated[list[Str], BeforeValidator(_split)]
IntList = Annotated[Any, BeforeValidator(_int_list)]
"""A list of integers (env: comma-separated); only text is cast, the stage reading it checks the rest."""
Auto = Annotated[bool | None, BeforeValidator(_auto)]
"""A boolean, or null / ``auto`` (the environment's spelling) for "decide from the data"."""

_PLUGIN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_DEVICE = re.compile(r"auto|cpu|mps|(cuda|xpu)(:\d+)?")


def is_plugin(text: str) -> bool:
    """``module:Class`` (a dotted import path)."""
    return bool(_PLUGIN.fullmatch(text))


def check_device(v: str) -> str:
    if not _DEVICE.fullmatch(v):
        raise ValueError(f"must be auto, cpu, cuda, cuda:N, mps or xpu, got {v!r}")
    return v


def check_subset(v: list[str], allowed: tuple[str, ...]) -> list[str]:
    """Each of ``allowed`` at most once."""
    if any(m not in allowed for m in v) or len(set(v)) != len(v):
        raise ValueError(f"must list {', '.join(allowed[:-1])} and/or {allowed[-1]} once each, got {v!r}")
    return v


def default_home() -> Path:
    return Path(os.environ.get("LLMREC_HOME", "").strip() or Path.home() / ".cache" / "llmrec")


def default_ml_latest_small() -> str:
    # The shared data folder that sits beside a checkout of this repository.
    return str(REPO_ROOT.parent / "shared" / "data" / "ml-latest-small")


def default_posters() -> str:
    return str(REPO_ROOT.parent / "shared" / "data" / "posters")

