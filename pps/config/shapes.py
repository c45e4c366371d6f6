"""The shape pps expects of the results files it reads back (run.json, sweep.json and the
Parquet tables), checked once at load so report and compare can trust what they get.

A results directory may have been copied, edited, truncated or written by a newer pps. A
field the readers use that holds the wrong kind of value (a list where a summary goes, a
string where a rate goes, a number too big for a float) is one ConfigError line naming
the file and the field, never a TypeError deep in a plot. Fields nobody reads are not
checked, and every field may be missing or null: older files lack some.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pps.errors import ConfigError

NUMBER, TEXT, OBJECT, ARRAY, ANY = "a number", "a string", "an object", "an array", "anything"
SCALAR = "a string, number or true/false"

_RATES = ("tx_pps", "rx_pps", "tx_packets", "rx_packets", "loss_ratio", "sent", "received")
_LATENCY = ("p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns")

# dotted field -> kind; "a.*" means every value of the object (or item of the array) at "a".
RUN_FIELDS: dict[str, str] = {
    "schema_version": NUMBER, "summary": OBJECT, "config": OBJECT, "host": OBJECT,
    "topology": OBJECT, "checks": ARRAY, "source": TEXT,
    **{f"summary.{k}": NUMBER for k in _RATES},
    "summary.ledger": OBJECT, "summary.ledger.layers": OBJECT, "summary.ledger.layers.*": NUMBER,
    "summary.ledger.drops": OBJECT, "summary.ledger.drops.*": NUMBER,
    "summary.ledger.unaccounted": NUMBER, "summary.latency": OBJECT,
    **{f"summary.latency.{k}": NUMBER for k in _LATENCY},
    **{f"summary.latency_{kind}": OBJECT for kind in ("stack", "app")},
    **{f"summary.latency_{kind}.{k}": NUMBER for kind in ("stack", "app") for k in _LATENCY},
    "summary.failure": TEXT, "summary.warnings": ARRAY, "summary.workers": ARRAY,
    "host.before": OBJECT, "host.after": OBJECT, "host.before.sysctls": OBJECT,
    "topology.devices": ARRAY, "config.sweep": OBJECT,
}

SWEEP_FIELDS: dict[str, str] = {
    "schema_version": NUMBER, "config": OBJECT, "config.sweep": OBJECT, "trials": ARRAY,
    "trials.*": OBJECT, "repetitions": NUMBER,
}
SWEEP_TRIAL_FIELDS: dict[str, str] = {
    "trial": NUMBER, "point": OBJECT, "repetition": NUMBER, "status": TEXT, "reason": TEXT,
    "seconds": NUMBER, "results": TEXT, "point.*": SCALAR,
}

# Columns the report's plots and tables compute with: numbers, or text they compare. Both
# schema versions' names are here (`t` is `t_s` from version 2): tables are checked as read.
TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "samples": {"t_s": NUMBER, "t": NUMBER, "pps": NUMBER, "packets": NUMBER, "role": ANY},
    "workers": {"index": NUMBER, "packets": NUMBER, "user_s": NUMBER, "sys_s": NUMBER, "role": ANY},
    "flows": {"sent": NUMBER, "received": NUMBER, "lost": NUMBER},
    "counters": {"t_s": NUMBER, "t": NUMBER, "delta": NUMBER, "value": NUMBER, "queue": NUMBER,
                 "cpu": NUMBER},
    "latency": {"low_ns": NUMBER, "high_ns": NUMBER, "count": NUMBER},
}


def _is(kind: str, value: Any) -> bool:
    if kind == NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        try:
            return math.isfinite(float(value))  # a 400-digit int does not fit a float
        except OverflowError:
            return False
    if kind == SCALAR:
        return isinstance(value, (str, bool)) or _is(NUMBER, value)
    return {TEXT: str, OBJECT: dict, ARRAY: list}.get(kind, object) in type(value).__mro__


def _values_at(obj: Any, path: list[str], where: str) -> list[tuple[str, Any]]:
    """(dotted name, value) of every value found at `path` under obj; missing parts skipped."""
    found = [(where, obj)]
    for part in path:
        step = []
        for name, value in found:
            if part == "*" and isinstance(value, list):
                step += [(f"{name}[{i}]", v) for i, v in enumerate(value)]
            elif not isinstance(value, Mapping):
                continue
            elif part == "*":
                step += [(f"{name}.{k}", v) for k, v in value.items()]
            elif part in value:
                step.append((f"{name}.{part}" if name else part, value[part]))
        found = step
    return found


def check_fields(obj: Any, fields: Mapping[str, str], where: str) -> None:
    """Every field in `fields` present in obj has its kind (or is null); else ConfigError."""
    for dotted, kind in fields.items():
        for name, value in _values_at(obj, dotted.split("."), ""):
            if value is not None and not _is(kind, value):
                raise ConfigError(f"{where}: {name.lstrip('.')} should be {kind}, "
                                  f"not {_kind_of(value)}")


def _kind_of(value: Any) -> str:
    for kind in (OBJECT, ARRAY, TEXT):
        if _is(kind, value):
            return kind
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, float):
        return f"{value}"
    if isinstance(value, int):
        return "a number too big"
    return type(value).__name__


def check_schema_version(obj: Mapping[str, Any], newest: int, where: str) -> int:
    """The file's schema version; one newer than this pps reads is refused."""
    version = obj.get("schema_version", 1)
    if version is None:
        version = 1
    if not _is(NUMBER, version) or version != int(version) or version < 1:
        raise ConfigError(f"{where}: schema_version should be a whole number from 1, "
                          f"not {_kind_of(version) if not _is(NUMBER, version) else version}")
    if version > newest:
        raise ConfigError(f"{where}: written by a newer pps (schema_version {int(version)}); "
                          f"this pps reads up to {newest}: upgrade pps to read it")
    return int(version)


def check_run(run: dict[str, Any], newest: int, where: str) -> None:
    check_schema_version(run, newest, where)
    check_fields(run, RUN_FIELDS, where)


def check_sweep(sweep: dict[str, Any], newest: int, where: str) -> None:
    check_schema_version(sweep, newest, where)
    check_fields(sweep, SWEEP_FIELDS, where)
    _check_config_keys(((sweep.get("config") or {}).get("sweep") or {}), f"{where}: config.sweep")
    for i, entry in enumerate(sweep.get("trials") or []):
        check_fields(entry, SWEEP_TRIAL_FIELDS, f"{where}: trials[{i}]")
        _check_config_keys(entry.get("point") or {}, f"{where}: trials[{i}].point")


def _check_config_keys(table: Mapping[str, Any], where: str) -> None:
    """Sweep keys become table columns next to trial, status and source: a key that is not a
    dotted config key (section.name) could take one of their places."""
    for key in table:
        if "." not in key:
            raise ConfigError(f"{where}: {key[:40]!r} is not a config key like senders.batch")


def check_table(df: Any, name: str, where: str) -> None:
    """The columns the report computes with hold numbers where numbers are expected."""
    from pandas.api.types import is_numeric_dtype

    columns = list(df.columns)
    if len(set(map(str, columns))) != len(columns) or not all(isinstance(c, str) for c in columns):
        raise ConfigError(f"{where}: column names should be distinct strings")
    for column, kind in TABLE_COLUMNS.get(name, {}).items():
        if column not in df.columns or kind != NUMBER:
            continue
        if not _numbers_only(df[column], is_numeric_dtype):
            raise ConfigError(f"{where}: column {column!r} should hold numbers, "
                              f"not {df[column].dtype}")


def _numbers_only(series: Any, is_numeric_dtype: Any) -> bool:
    """A numeric column, or one of numbers and nulls that Parquet kept as objects (a column
    that was all None in some trial has no numeric type to keep)."""
    if is_numeric_dtype(series):
        return True
    values = series.dropna()
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
