"""Every config key, listed from the schema itself, and a resolved config written back as TOML.

`pps config keys` and the key table in docs/config-keys.md come from here, so what the docs
say a key is and what the loader accepts cannot drift apart (a test compares them).
"""

from __future__ import annotations

import json
import math
from typing import Any

from pps.config.hosts import HOST_KEYS
from pps.config.model import SCHEMA, Config
from pps.config.values import Key

TYPE_NAMES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string",
              "cpus": "CPU list", "strlist": "list of strings", "address": "IP address",
              "hosts": "host name or list"}


def _allowed(key: Key) -> str:
    if key.choices:
        return " | ".join(key.choices)
    if key.low is not None or key.high is not None:
        return f"{_number(key.low)} .. {_number(key.high)}"
    if key.kind == "cpus":
        return "kernel syntax, e.g. 0-3,8"
    return ""


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if float(value).is_integer() and abs(value) >= 1 << 20 and math.log2(value).is_integer():
        return f"2^{int(math.log2(value))}"
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def rows() -> list[dict[str, Any]]:
    """One dict per key: key, type, default, allowed, meaning. Host keys are per host."""
    out = []
    for section, keys in SCHEMA.items():
        for name, key in keys.items():
            default = list(key.default) if isinstance(key.default, tuple) else key.default
            if section == "lab" and name == "id":
                default = "lab-USER"  # computed per user; the literal would be this machine's
            out.append({"key": f"{section}.{name}", "type": TYPE_NAMES[key.kind]
                        + (" or none" if key.nullable else ""), "default": default,
                        "allowed": _allowed(key), "meaning": key.help})
    for name, meaning in HOST_KEYS.items():
        out.append({"key": f"hosts.NAME.{name}", "type": "per host", "default": None,
                    "allowed": "", "meaning": meaning})
    out.append({"key": "sweep.KEY", "type": "list", "default": None, "allowed": "",
                "meaning": "values of KEY (any key above) to run one after another"})
    return out


def _shown_default(value: Any) -> str:
    if value is None:
        return "-"
    return json.dumps(value) if not isinstance(value, str) else value


def markdown() -> str:
    """The key table as Markdown, as docs/config-keys.md holds it."""
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for r in rows():
        cells = [f"`{r['key']}`", r["type"], f"`{_shown_default(r['default'])}`",
                 r["allowed"].replace("|", "\\|"), r["meaning"].replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def text() -> str:
    """The key table for a terminal: key, default, type and allowed values, then meaning."""
    out = []
    for r in rows():
        allowed = f"; {r['allowed']}" if r["allowed"] else ""
        out.append(f"{r['key']:26} {_shown_default(r['default']):>12}  ({r['type']}{allowed})")
        out.append(f"{'':28}{r['meaning']}")
    return "\n".join(out)


# ------------------------------------------------------------------------ config as TOML

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def to_toml(config: Config) -> str:
    """The resolved config as TOML that `pps run` loads back to the same config. A key with
    no value (none) is shown as a comment: TOML has no null."""
    tables = config.to_dict()
    lines: list[str] = [f"# resolved from {config.source}"]

    def table(header: str, body: dict[str, Any]) -> None:
        lines.extend(["", f"[{header}]"])
        for name, value in body.items():
            lines.append(f"# {name} = (none)" if value is None else f"{name} = {_toml_value(value)}")

    for section in SCHEMA:
        table(section, tables[section])
    if tables.get("sweep"):
        table("sweep", tables["sweep"])
    for name, body in (tables.get("hosts") or {}).items():
        table(f"hosts.{json.dumps(name)}" if not name.isidentifier() else f"hosts.{name}", body)
    return "\n".join(lines) + "\n"
