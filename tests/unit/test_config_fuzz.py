"""Fuzzing config validation: random TOML-shaped documents, and mutations of the shipped
configs and of a valid built-in one, must either load or raise ConfigError, never anything
else; the CLI turns a mutated file into one line on stderr and exit 2, with no traceback."""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CONFIG_DIR, pps

from pps.config.model import SCHEMA, TABLES, build_config
from pps.errors import ConfigError

CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))
VALID: dict[str, Any] = {
    "target": {"address": "127.0.0.1", "port": 4321},
    "senders": {"count": 2, "batch": 32, "payload": 64, "flows": 4, "cpus": "0", "rate": 1000.0,
                "burst": 64, "raw": False},
    "receivers": {"count": 1, "batch": 64, "placement": "spread", "mode": "block", "gro": False},
    "run": {"duration": 1.0, "warmup": 0.2, "repetitions": 2, "max_loss": 0.01},
    "lab": {"enabled": False, "queues": 4},
    "collect": {"enabled": True},
    "sweep": {"senders.batch": [8, 64], "receivers.placement": ["local", "spread"]},
}
BASES = [VALID] + [tomllib.loads(p.read_text()) for p in CONFIGS]
KEYS = [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]
NAMES = st.sampled_from([*TABLES, *KEYS, *[k.split(".")[1] for k in KEYS], "x", "", "sweep.x",
                         "senders.", ".batch", "ünïcode"]) | st.text(max_size=12)
# Keys without line breaks for the one-line property; CONTROL_NAMES adds them back for the
# "ConfigError and nothing else" property.
ONE_LINE_NAMES = NAMES.filter(lambda n: "\n" not in n and "\r" not in n)

# Values of the kinds TOML can hold (no None: TOML has no null), plus the nasty ones.
SCALARS = (st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=20) | st.sampled_from(["0-3,8", "1-0", "0-", ",", "local", "busy-poll",
                                                    "::1", "127.0.0.1", "999.1.1.1", "-1", "0x10"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(NAMES, inner, max_size=3), max_leaves=8)
DOCS = st.dictionaries(ONE_LINE_NAMES, st.dictionaries(ONE_LINE_NAMES, VALUES, max_size=5) | VALUES,
                       max_size=6)
ANY_DOCS = st.dictionaries(NAMES, st.dictionaries(NAMES, VALUES, max_size=3) | VALUES, max_size=4)


def check(raw: Any, overrides=(), one_line: bool = True) -> None:
    try:
        build_config(raw, overrides, source="fuzz.toml")
    except ConfigError as exc:  # anything else fails the test
        message = str(exc)
        assert message and (not one_line or "\n" not in message), message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCS)
def test_random_documents(raw):
    check(raw)


@settings(max_examples=150, deadline=None)
@given(ANY_DOCS)
def test_random_documents_with_any_names(raw):
    check(raw, one_line=False)


def test_table_name_with_line_break_stays_one_line():
    check({"a\nb": {}})


@st.composite
def mutated(draw) -> dict[str, Any]:
    doc = json.loads(json.dumps(draw(st.sampled_from(BASES))))  # a deep copy
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(doc) or ["senders"]))
        body = doc.setdefault(section, {})
        action = draw(st.sampled_from(["set", "delete", "rename", "add", "replace_table", "typo"]))
        if not isinstance(body, dict) or action == "replace_table":
            doc[section] = draw(VALUES)
        elif action == "set" and body:
            body[draw(st.sampled_from(sorted(body)))] = draw(VALUES)
        elif action == "delete" and body:
            del body[draw(st.sampled_from(sorted(body)))]
        elif action == "rename":
            doc[draw(ONE_LINE_NAMES)] = doc.pop(section)
        elif action == "typo" and body:
            key = draw(st.sampled_from(sorted(body)))
            body[key[:-1] or "x"] = body.pop(key)
        else:
            body[draw(NAMES)] = draw(VALUES)
    return doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(), st.lists(st.tuples(st.sampled_from(KEYS) | NAMES, VALUES), max_size=2))
def test_mutated_configs(raw, overrides):
    check(raw, overrides)


def test_shipped_and_builtin_bases_are_valid():
    for raw in BASES:
        build_config(raw)


# ------------------------------------------------------------------ the CLI on mutated files

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # a basic TOML string is a JSON string for these texts


def to_toml(doc: dict[str, Any]) -> str:
    lines = []
    for section, body in doc.items():
        lines.append(f"[{json.dumps(section)}]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


CLI_CASES = [
    {**VALID, "senders": {**VALID["senders"], "batch": "many"}},
    {**VALID, "receivers": {**VALID["receivers"], "placment": "local"}},
    {**VALID, "sweep": {"senders.batch": [8, 4096]}},
    {**VALID, "run": {**VALID["run"], "duration": float("nan")}},
    {**VALID, "senders": {**VALID["senders"], "cpus": "2-1"}},
    {**VALID, "bogus": {"a": 1}},
]


def test_cli_on_mutated_files(tmp_path):
    for i, doc in enumerate(CLI_CASES):
        path = tmp_path / f"m{i}.toml"
        path.write_text(to_toml(doc))
        assert tomllib.loads(path.read_text())  # the writer makes valid TOML
        for command in (["run", str(path), "--dry-run"], ["sweep", str(path), "--out", str(tmp_path / f"o{i}")]):
            done = pps(*command)
            assert done.returncode == 2, (command, done.stderr)
            assert "Traceback" not in done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert str(path) in done.stderr


def test_cli_bad_flags():
    for args in (["sweep"], ["compare", "a"], ["report"], ["compare", "a", "b", "--threshold", "x"],
                 ["sweep", "c.toml", "--bogus"]):
        done = pps(*args)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
