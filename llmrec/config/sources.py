"""Where :meth:`Config.load` reads keys from, as pydantic-settings sources: the YAML file (the library's
YAML source), the ``LLMREC_*`` environment and the overrides (CLI flags). pydantic-settings merges them
by precedence and pydantic casts and checks the values; this module only maps names: every key has a
nested name (``sasrec.seeds``; env ``LLMREC_SASREC__SEEDS``) and, inside a group, the old flat name
(``sasrec_seeds``; env ``LLMREC_SASREC_SEEDS``), still read. Each source records which keys it set (the
config's :meth:`~Config.sources`) and which it got in the flat form (:func:`warn_flat`)."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings, InitSettingsSource, YamlConfigSettingsSource

from llmrec.config.groups import Group
from llmrec.errors import ConfigError


class Layout:
    """Where each key of a settings class lives.

    Attributes:
        top: the plain top-level keys. groups: group name -> its model. flat: flat name -> (group, key)
        for every grouped key. order: every key's flat name, in field order. dotted: flat name ->
        ``group.key``. secrets: flat names of the fields marked ``json_schema_extra={"secret": True}``.
    """

    def __init__(self, cls: type[BaseModel]):
        self.top: list[str] = []
        self.groups: dict[str, type[Group]] = {}
        self.flat: dict[str, tuple[str, str]] = {}
        self.order: list[str] = []
        for name, info in cls.model_fields.items():
            model = info.annotation
            if isinstance(model, type) and issubclass(model, Group):
                self.groups[name] = model
                for key in model.model_fields:
                    flat = f"{model.FLAT_PREFIX or name}_{key}"
                    if flat in cls.model_fields or flat in self.flat:
                        raise TypeError(f"flat config key {flat!r} is ambiguous")
                    self.flat[flat] = (name, key)
                    self.order.append(flat)
            else:
                self.top.append(name)
                self.order.append(name)
        self.dotted = {f: f"{g}.{k}" for f, (g, k) in self.flat.items()}
        infos = {k: cls.model_fields[k] for k in self.top}
        infos.update({f: self.groups[g].model_fields[k] for f, (g, k) in self.flat.items()})
        self.secrets = frozenset(k for k, info in infos.items() if (info.json_schema_extra or {}).get("secret"))
        self._flat_of = {gk: f for f, gk in self.flat.items()}

    def where(self, name: Any) -> tuple[str | None, str] | None:
        """(group, key) of a flat, dotted or top-level name ((None, key) for a top-level one); None: unknown."""
        if not isinstance(name, str):
            return None
        if name in self.flat:
            return self.flat[name]
        if name in self.top:
            return None, name
        group, dot, key = name.partition(".")
        if dot and group in self.groups and key in self.groups[group].model_fields:
            return group, key
        return None

    def flat_name(self, group: str | None, key: str) -> str:
        return key if group is None else self._flat_of[(group, key)]

    def nest(self, values: dict) -> tuple[dict, dict[str, str], list[str]]:
        """``values`` keyed by top-level, flat, dotted or group names (a group's value a mapping) ->
        (the nested mapping pydantic validates, {flat name: the name it was given as}, the flat names used).
        Unknown names are kept as they are, for pydantic to refuse.

        Raises:
            ConfigError: one key given twice under two names (``sasrec_seeds`` and ``sasrec.seeds``).
        """
        out: dict[Any, Any] = {}
        given: dict[str, str] = {}
        flat_used: list[str] = []

        def put(group: str, key: str, value: Any, as_given: str) -> None:
            flat = self._flat_of[(group, key)]
            if flat in given and given[flat] != as_given:
                raise ConfigError(f"config key {self.dotted[flat]!r} is given twice: as {given[flat]!r} and as "
                                  f"{as_given!r}")
            if isinstance(out.setdefault(group, {}), dict):  # else not a mapping: pydantic says so
                out[group][key] = value
            given[flat] = as_given

        for name, value in values.items():
            name = str(name)  # YAML's `1: 2`: an unknown key, named
            if name in self.groups:
                if isinstance(value, BaseModel):
                    value = dict(value)
                if not isinstance(value, dict):
                    out[name] = value
                    continue
                out.setdefault(name, {})
                for key, v in value.items():
                    key = str(key)
                    if key in self.groups[name].model_fields:
                        put(name, key, v, f"{name}.{key}")
                    elif isinstance(out[name], dict):
                        out[name][key] = v
                continue
            where = self.where(name)
            if where is None or where[0] is None:
                out[name] = value
                if where is not None:
                    given[name] = name
                continue
            put(where[0], where[1], value, name)
            if name in self.flat:
                flat_used.append(name)
        return out, given, flat_used


@functools.cache
def layout(cls: type[BaseModel]) -> Layout:
    return Layout(cls)


class FileSource(YamlConfigSettingsSource):
    """The YAML file (``--config FILE`` or ``LLMREC_CONFIG``), through pydantic-settings' YAML source.

    Raises:
        ConfigError: the file is missing, unreadable, not UTF-8, not YAML, nested too deeply, or not a
            mapping.
    """

    def __init__(self, settings_cls: type[BaseSettings], path: str | Path):
        self.path = path
        self.layout = layout(settings_cls)
        self.label = f"file {path}"
        self.provided: dict[str, str] = {}
        self.flat_used: list[str] = []
        super().__init__(settings_cls, yaml_file=Path(path))

    def _read_files(self, files: Any, deep_merge: bool = False) -> dict[str, Any]:
        return self._read_file(Path(self.path))  # the library skips a missing file: here it is an error

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        try:
            loaded = yaml.safe_load(Path(file_path).read_text(encoding="utf-8")) or {}
        except RecursionError:
            raise ConfigError(f"cannot read config file {self.path}: nested too deeply") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config file {self.path}: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {self.path} must hold a mapping of keys to values")
        nested, given, self.flat_used = self.layout.nest(loaded)
        self.provided = dict.fromkeys(given, self.label)
        return nested


class EnvSource(InitSettingsSource):
    """``LLMREC_<KEY>`` for a top-level key, ``LLMREC_<GROUP>__<KEY>`` for a grouped one, or its old flat
    form ``LLMREC_<GROUP>_<KEY>`` (the nested one wins when both are set). Upper case, as given: an empty
    value was dropped by :meth:`Config.load` (unset). Lists: comma-separated (``_types.StrList``)."""

    def __init__(self, settings_cls: type[BaseSettings], env: dict[str, str]):
        lay = layout(settings_cls)
        data: dict[str, Any] = {}
        self.provided: dict[str, str] = {}
        self.flat_used: list[str] = []
        self.names: dict[str, str] = {}  # flat name -> the nested variable's name
        for flat in lay.order:
            group, key = lay.flat.get(flat, (None, flat))
            flat_var = f"LLMREC_{flat.upper()}"
            nested_var = flat_var if group is None else f"LLMREC_{group.upper()}__{key.upper()}"
            self.names[flat] = nested_var
            var = nested_var if nested_var in env else flat_var if flat_var in env else None
            if var is None:
                continue
            (data if group is None else data.setdefault(group, {}))[key] = env[var]
            self.provided[flat] = f"env {var}"
            if var != nested_var:
                self.flat_used.append(flat)
        super().__init__(settings_cls, data)


class OverridesSource(InitSettingsSource):
    """The ``overrides`` of :meth:`Config.load` (CLI flags), any name form, ``None`` values dropped. The
    program's own, so a flat name here is not warned about."""

    def __init__(self, settings_cls: type[BaseSettings], overrides: dict[str, Any]):
        nested, given, _ = layout(settings_cls).nest({k: v for k, v in overrides.items() if v is not None})
        self.provided = dict.fromkeys(given, "flag")
        self.flat_used: list[str] = []
        super().__init__(settings_cls, nested)


def warn_flat(settings_cls: type[BaseSettings], sources: list[FileSource | EnvSource]) -> None:
    """One ``FutureWarning`` (shown by default, once per message) naming every flat key a file or the
    environment gave, with its nested name; none when there is none."""
    lay = layout(settings_cls)
    parts = []
    for source in sources:
        if not source.flat_used:
            continue
        old, new = source.flat_used, [lay.dotted[f] for f in source.flat_used]
        where = source.label if isinstance(source, FileSource) else "environment: " + ", ".join(
            f"{source.provided[f].removeprefix('env ')} -> {source.names[f]}" for f in old)
        one = len(old) == 1
        parts.append(f"config key{'' if one else 's'} {', '.join(map(repr, old))} {'is' if one else 'are'} "
                     f"deprecated: use {', '.join(map(repr, new))} ({where})")
    if parts:
        warnings.warn("; ".join(parts), FutureWarning, stacklevel=3)
