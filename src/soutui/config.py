"""Typed configuration: dataclasses built from dicts/TOML that reject unknown keys.

Every config object in soutui is a plain dataclass; `from_dict` is the one way to
build one from user input, and it fails loudly on a mistyped key instead of
silently ignoring it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message says which and how to fix it."""


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from `data`, recursing into nested dataclasses.

    Unknown keys raise ConfigError naming the key and the allowed ones.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table/object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; allowed keys are {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where) if len(args) == 1 else value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        seq = [_coerce(inner, v, where) for v in value]
        return tuple(seq) if origin is tuple else seq
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    if typing.get_origin(tp) is typing.Literal and value not in typing.get_args(tp):
        raise ConfigError(f"{where}: must be one of {typing.get_args(tp)}, got {value!r}")
    return value


def to_dict(obj: Any) -> dict[str, Any]:
    """The inverse of from_dict, for checkpoints and experiment records."""
    return dataclasses.asdict(obj)


def load_toml(cls: type[T], path: str | Path) -> T:
    with open(path, "rb") as fh:
        return from_dict(cls, tomllib.load(fh), where=str(path))


def home_dir() -> Path:
    """Where soutui keeps its store, caches and runs unless told otherwise ($SOUTUI_HOME)."""
    return Path(os.environ.get("SOUTUI_HOME", Path.cwd() / ".soutui"))
