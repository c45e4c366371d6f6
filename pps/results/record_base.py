"""The base of run.json's typed objects (pps.results.record): a dataclass that is also a
mutable mapping of its JSON keys, converts plain dicts to its typed fields, keeps keys it
does not know in `extra`, and writes its keys in field order (OPTIONAL ones only when set).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Self


OPTIONAL = {"optional": True}  # field metadata: the key is left out of the JSON when None


@dataclass(kw_only=True, eq=True)
class Record(MutableMapping):
    """A JSON object with typed fields, that also reads and writes like a dict of its keys."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ typed <-> JSON

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """The object of a parsed JSON object: known keys converted to their field's type,
        unknown ones kept in `extra`. Values of an unexpected kind are kept as they are:
        results.store checks the fields readers use before this is called."""
        hints = _hints(cls)
        known, extra = {}, {}
        for key, value in data.items():
            if key in hints:
                known[key] = _convert(hints[key], value)
            else:
                extra[key] = value
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: plain dicts, lists and scalars, keys in field order."""
        out: dict[str, Any] = {}
        for f in _fields(type(self)):
            value = getattr(self, f.name)
            if value is None and f.metadata.get("optional"):
                continue
            out[f.name] = _plain(value)
        for key, value in self.extra.items():
            out.setdefault(key, _plain(value))
        return out

    # ------------------------------------------------------------------ the mapping view

    def _present(self, key: str) -> bool:
        f = _field_map(type(self)).get(key)
        if f is None:
            return key in self.extra
        return not (f.metadata.get("optional") and getattr(self, key) is None)

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or not self._present(key):
            raise KeyError(key)
        return getattr(self, key) if key in _field_map(type(self)) else self.extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        hints = _hints(type(self))
        if key in hints:
            setattr(self, key, _convert(hints[key], value))
        else:
            self.extra[key] = value

    def __delitem__(self, key: str) -> None:
        if not self._present(key):
            raise KeyError(key)
        if key in _field_map(type(self)):
            setattr(self, key, None)
        else:
            del self.extra[key]

    def __iter__(self) -> Iterator[str]:
        for f in _fields(type(self)):
            if self._present(f.name):
                yield f.name
        yield from (k for k in self.extra if k not in _field_map(type(self)))

    def __len__(self) -> int:
        return sum(1 for _ in self)


@cache
def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.name != "extra")


@cache
def _field_map(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in _fields(cls)}


@cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in _fields(cls)}


def _convert(hint: Any, value: Any) -> Any:
    """A JSON value as the type `hint` says, where it has that shape; else unchanged."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                converted = _convert(arg, value)
                if converted is not value or _is_plain_match(arg, value):
                    return converted
        return value
    if isinstance(hint, type) and issubclass(hint, Record):
        if isinstance(value, hint):
            return value
        return hint.from_dict(value) if isinstance(value, Mapping) else value
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v) for v in value]
    if origin is dict and isinstance(value, Mapping):
        _key, item = typing.get_args(hint) or (Any, Any)
        return {k: _convert(item, v) for k, v in value.items()}
    return value


def _is_plain_match(hint: Any, value: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and isinstance(value, origin)


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def classes_under(root: type[Record]) -> list[type[Record]]:
    """Every object type under `root` (run.json: RunRecord), root first (docs/json.md)."""
    seen: list[type[Record]] = []

    def visit(cls: type[Record]) -> None:
        if cls in seen:
            return
        seen.append(cls)
        for hint in _hints(cls).values():
            for t in _record_types(hint):
                visit(t)
    visit(root)
    return seen


def _record_types(hint: Any) -> list[type[Record]]:
    if isinstance(hint, type) and issubclass(hint, Record):
        return [hint]
    return [t for arg in typing.get_args(hint) for t in _record_types(arg)]
