"""One configuration value checked against its declared Key, and the one-line messages
that say what was wrong with it.

Values come from files and flags nobody checked: a 4,000-digit integer, a string with a
newline, a list nested a thousand deep. Messages show them through `show`, which is always
one short line and never fails (Python refuses to print an integer of more than 4,300
digits, and repr of a deeply nested list recurses).
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pps.config.cpulist import parse_cpulist
from pps.errors import ConfigError

SHOWN_CHARS = 60


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default, check and meaning."""

    kind: str  # "int", "float", "bool", "str", "cpus", "strlist", "address", "hosts"
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False


def show(value: Any) -> str:
    """repr(value) cut to one short line, for error messages."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # a huge int, a deep list
        text = f"<{type(value).__name__} too big to show>"
    if len(text) > SHOWN_CHARS:
        text = text[:SHOWN_CHARS] + "..."
    return text


def convert(where: str, dotted: str, key: Key, value: Any) -> Any:
    """Check one value against its Key and return it in canonical form."""
    if value is None:
        if key.nullable:
            return None
        raise ConfigError(f"{where}: a value is required ({key.help})")
    return _CONVERTERS[key.kind](where, dotted, key, value)


def _bool(where: str, dotted: str, key: Key, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {show(value)}")
    return value


def _number(where: str, dotted: str, key: Key, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {show(value)}")
    if key.kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
        raise ConfigError(f"{where}: expected a whole number, got {show(value)}")
    value = int(value) if key.kind == "int" else float(value)
    if value != value:  # NaN
        raise ConfigError(f"{where}: expected a number, got nan")
    if (key.low is not None and value < key.low) or (key.high is not None and value > key.high):
        raise ConfigError(f"{where}: {show(value)} is out of range {fmt(key.low)}..{fmt(key.high)}")
    return value


def _str(where: str, dotted: str, key: Key, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a non-empty string, got {show(value)}")
    if key.choices and value not in key.choices:
        hint = did_you_mean(value, key.choices)
        raise ConfigError(f"{where}: {show(value)} is not one of {', '.join(key.choices)}{hint}")
    return value


def _cpus(where: str, dotted: str, key: Key, value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        if any(v < 0 for v in value):
            raise ConfigError(f"{where}: CPU numbers are 0 or more, got {show(value)}")
        value = ",".join(show(v) for v in value)  # show: a huge number fails parse, not str()
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a CPU list like \"0-3,8\", got {show(value)}")
    try:
        cpus = parse_cpulist(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if not cpus:
        raise ConfigError(f"{where}: the CPU list is empty")
    return cpus


def _address(where: str, dotted: str, key: Key, value: Any) -> str:
    return check_address(where, value)


def _strlist(where: str, dotted: str, key: Key, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of strings, got {show(value)}")
    if dotted == "target.addresses":
        return tuple(check_address(where, v) for v in value)
    return tuple(value)


def _hosts(where: str, dotted: str, key: Key, value: Any) -> str | tuple[str, ...]:
    """One host name, or a list of them (each runs `count` workers of the role). One name,
    alone or in a list of one, is kept as a plain string: most runs have one host."""
    names = [value] if isinstance(value, str) else value
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names \
            or not all(isinstance(v, str) and v for v in names):
        raise ConfigError(f"{where}: expected a host name or a list of them, got {show(value)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: {show(value)} names a host twice")
    return names[0] if len(names) == 1 else tuple(names)


_CONVERTERS = {"bool": _bool, "int": _number, "float": _number, "str": _str, "cpus": _cpus,
               "address": _address, "strlist": _strlist, "hosts": _hosts}


def check_address(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected an IP address, got {show(value)}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(f"{where}: {show(value)} is not an IPv4 or IPv6 address") from None


def fmt(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else str(x)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    if len(word) > 100:  # no key is that long, and difflib's time grows with the length
        return ""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {show(close[0])}?)" if close else ""
