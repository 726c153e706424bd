"""Typed configuration: dataclasses validated by pydantic, unknown keys rejected; the user-error base.

Every config object in soutui is a plain dataclass; `from_dict` is the one way to
build one from user input (a TOML file, a manifest, `--set key=value`). Validation is
pydantic's (`TypeAdapter` over the dataclass, `extra="forbid"` on it and on every nested
dataclass), so a mistyped key fails loudly, naming the key and the allowed ones, instead
of being silently ignored. `to_toml` writes TOML with tomli-w, which escapes strings.

`UserError` lives here, in the lowest layer, so every layer can raise errors the user
can fix and the CLI can print them as one line without a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import tomli_w

T = TypeVar("T")

_FORBID = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class UserError(Exception):
    """An error the user can fix (a bad file, a wrong key, a locked store).

    The CLI prints these as one line saying what to do (exit 2); any other exception
    is a bug and shows its traceback.
    """


class ConfigError(UserError, ValueError):
    """A configuration value or key is wrong; the message says which and how to fix it."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or must create first) is not there; says how to make it."""


class NotFoundError(UserError, KeyError):
    """A named thing (dataset, table, model) is not where the user said; lists what is there."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def _dataclasses_in(cls: type) -> list[type]:
    """`cls` and every dataclass reachable through its field types (for extra="forbid")."""
    seen: list[type] = []
    todo: list[Any] = [cls]
    while todo:
        tp = todo.pop()
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            if tp in seen:
                continue
            seen.append(tp)
            todo.extend(typing.get_type_hints(tp).values())
        else:
            todo.extend(typing.get_args(tp))
    return seen


@functools.cache
def _adapter(cls: type) -> pydantic.TypeAdapter[Any]:
    for dc in _dataclasses_in(cls):
        if "__pydantic_config__" not in vars(dc):
            dc.__pydantic_config__ = _FORBID  # type: ignore[attr-defined]
    return pydantic.TypeAdapter(cls)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclasses.

    Unknown keys raise ConfigError naming the key and the allowed ones; a wrong type or
    a value that the dataclass's `__post_init__` refuses raises ConfigError too.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table/object, got {type(data).__name__}")
    try:
        return typing.cast(T, _adapter(cls).validate_python(data))
    except pydantic.ValidationError as exc:
        raise ConfigError(_explain(cls, exc, where)) from None


def _explain(cls: type, exc: pydantic.ValidationError, where: str) -> str:
    """One readable line per problem: the dotted key, what is wrong, what is allowed."""
    unknown: dict[tuple[Any, ...], list[str]] = {}
    lines: list[str] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "unexpected_keyword_argument":
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
            continue
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, ValueError) and not loc:
            lines.append(f"{where}: {inner}")  # a __post_init__ check: its message names the key
            continue
        key = ".".join([where, *map(str, loc)])
        msg = str(inner) if isinstance(inner, ValueError) else err["msg"]
        got = "" if err["type"] == "value_error" else f", got {err['input']!r}"
        lines.append(f"{key}: {msg}{got}")
    for loc, keys in unknown.items():
        allowed = sorted(f.name for f in dataclasses.fields(_class_at(cls, loc)))
        key = ".".join([where, *map(str, loc)])
        lines.insert(0, f"{key}: unknown key(s) {sorted(keys)}; allowed keys are {allowed}")
    return "; ".join(lines)


def _class_at(cls: type, loc: tuple[Any, ...]) -> Any:
    """The dataclass that sits at the path `loc` of nested fields under `cls`."""
    here: Any = cls
    for name in loc:
        if isinstance(name, int):  # an index into a list of dataclasses: `here` is already the item type
            continue
        tp = typing.get_type_hints(here)[name]
        here = next((t for t in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(t)), tp)
    return here


def to_dict(obj: Any) -> dict[str, Any]:
    """The inverse of from_dict, for checkpoints and experiment records."""
    return dataclasses.asdict(obj)


def to_toml(data: Any) -> str:
    """A dataclass or dict as TOML (tomli-w: strings escaped); None values are left out (TOML has no null)."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        data = to_dict(data)
    return tomli_w.dumps(_drop_none(data))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_drop_none(v) for v in value]
    return value


def load_toml(cls: type[T], path: str | Path, table: str | None = None) -> T:
    """Read TOML file `path` into dataclass `cls`; a missing or malformed file is a user error.

    With `table`, a file that has that top-level table (like `[serve]` in defaults.toml)
    is read from it and its other tables are left to their own readers; a file without it
    is read whole, as flat keys.
    """
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise MissingFileError(f"config file {path} does not exist; pass the path of a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    if table and isinstance(data.get(table), dict):
        return from_dict(cls, data[table], where=f"{path} [{table}]")
    return from_dict(cls, data, where=str(path))


def home_dir() -> Path:
    """Where soutui keeps its store, caches and runs unless told otherwise ($SOUTUI_HOME)."""
    return Path(os.environ.get("SOUTUI_HOME", Path.cwd() / ".soutui"))
