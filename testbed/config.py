"""Load nested frozen dataclasses from TOML tables, validated once, with errors that name the key path.

A field's help text and its bounds live in its metadata (`help_field(default, help, ge=..., gt=...,
le=..., lt=...)`); unknown keys, wrong types, non-finite numbers, values out of bounds and values
outside a Literal are rejected with the dotted path and what is allowed, in one place (from_dict),
so a config class's __post_init__ keeps only rules that tie keys together. One field of a
table may be marked ``metadata={"tables": True}`` (a dict of sub-tables): it takes the table's
other sub-tables by name, as ``[policies.<name>]`` does, and is written back flat.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from testbed.errors import ConfigError, did_you_mean

T = TypeVar("T")


BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b), "le": ("<=", lambda v, b: v <= b),
          "lt": ("<", lambda v, b: v < b)}


def help_field(default: Any, help: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
               lt: float | None = None, **kw: Any) -> Any:
    """A dataclass field with help text (shown by ``testbed keys``) and optional bounds on its value."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    return dataclasses.field(default=default, metadata={"help": help, **bounds}, **kw)


def bounds_text(metadata: Any) -> str:
    """The field's bounds as text: an interval such as "in [0, 1)" when both ends are bounded, else
    e.g. ">= 0" ("" if none)."""
    lo = next(((k, metadata[k]) for k in ("ge", "gt") if k in metadata), None)
    hi = next(((k, metadata[k]) for k in ("le", "lt") if k in metadata), None)
    if lo and hi:
        return f"in {'[' if lo[0] == 'ge' else '('}{lo[1]:g}, {hi[1]:g}{']' if hi[0] == 'le' else ')'}"
    return " and ".join(f"{BOUNDS[k][0]} {metadata[k]:g}" for k in BOUNDS if k in metadata)


def _check_bounds(metadata: Any, value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for k, (_, ok) in BOUNDS.items():
        if k in metadata and not ok(value, metadata[k]):
            raise ConfigError(path, f"must be {bounds_text(metadata)}, got {value!r}")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (tuple, list):
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a table, got {type(value).__name__}")
        return from_dict(tp, value, path)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(path, f"{value!r} is not allowed; allowed: {_type_name(tp)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _coerce(arg, value, path)
            except ConfigError:
                continue
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, f"expected {_type_name(tp)}, got {type(value).__name__}")
        (inner, *_rest) = get_args(tp)
        return tuple(_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a table, got {type(value).__name__}")
        _k, vt = get_args(tp)
        return {str(k): _coerce(vt, v, f"{path}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(path, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _tables_field(cls: type) -> str | None:
    return next((f.name for f in dataclasses.fields(cls) if f.metadata.get("tables")), None)  # type: ignore[arg-type]


def from_dict(cls: type[T], data: dict[str, Any], path: str = "") -> T:
    """Build dataclass `cls` from a TOML table, rejecting unknown keys by their path."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)  # type: ignore[arg-type]
              if not f.metadata.get("internal")}
    tables = _tables_field(cls)
    kwargs: dict[str, Any] = {tables: {}} if tables else {}
    for key, value in data.items():
        sub = f"{path}.{key}" if path else key
        if tables and key not in fields and isinstance(value, dict):
            kwargs[tables][key] = value
            continue
        if key not in fields or key == tables:
            allowed = ", ".join(sorted(n for n in fields if n != tables))
            extra = f", or a table per {fields[tables].metadata['tables_of']}" if tables else ""
            hint = did_you_mean(key, (n for n in fields if n != tables))
            raise ConfigError(sub, f"unknown key{hint}; allowed here: {allowed}{extra}")
        kwargs[key] = _coerce(hints[key], value, sub)
        _check_bounds(fields[key].metadata, kwargs[key], sub)
    missing = [n for n, f in fields.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{path}.{missing[0]}" if path else missing[0], "required key is missing")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(path or cls.__name__, str(exc)) from None


def to_dict(obj: Any) -> Any:
    """Inverse of from_dict: a plain dict of TOML-writable values (sub-tables written back flat)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        tables = _tables_field(type(obj))
        if tables:
            out.update({k: v for k, v in out.pop(tables).items() if v})
        return out
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning a missing file or a syntax error into a one-line ConfigError."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("", f"file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    except OSError as exc:
        raise ConfigError("", f"{path}: cannot read: {exc.strerror or exc}") from None


def field_help(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key path, type, default, help) for every leaf field, for documentation and the CLI."""
    rows: list[tuple[str, str, str, str]] = []
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += field_help(tp, key + ".")  # type: ignore[arg-type]
            continue
        if f.metadata.get("internal") or f.metadata.get("tables"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        bounds = bounds_text(f.metadata)
        text = f.metadata.get("help", "") + (f" ({bounds})" if bounds else "")
        rows.append((key, _type_name(tp), repr(default), text))
    return rows


def json_schema(cls: type, title: str = "") -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of dataclass `cls` as TOML holds it: types, defaults, help as
    descriptions, bounds, allowed values; unknown keys refused. Editors check a TOML file against
    it while it is typed (e.g. Taplo / Even Better TOML's `#:schema` directive)."""
    hints = get_type_hints(cls)
    props: dict[str, Any] = {}
    tables = _tables_field(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.metadata.get("internal") or f.name == tables:
            continue
        node = _schema_of(hints[f.name])
        if f.metadata.get("help"):
            node["description"] = f.metadata["help"]
        for k, key in (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"), ("lt", "exclusiveMaximum")):
            if k in f.metadata:
                node[key] = f.metadata[k]
        if f.default is not dataclasses.MISSING and not dataclasses.is_dataclass(f.default):
            node["default"] = json.loads(json.dumps(to_dict(f.default)))
        props[f.name] = node
    out: dict[str, Any] = {"type": "object", "properties": props}
    out["additionalProperties"] = {"type": "object"} if tables else False
    if title:
        out = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **out}
    return out


def _schema_of(tp: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return json_schema(tp)
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema_of(a) for a in get_args(tp)]}
    if origin in (tuple, list):
        return {"type": "array", "items": _schema_of(get_args(tp)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(get_args(tp)[1])}
    return {float: {"type": "number"}, int: {"type": "integer"}, bool: {"type": "boolean"},
            str: {"type": "string"}}.get(tp, {})
