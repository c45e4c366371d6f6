"""The options several commands share, each defined once here; `add` puts them on a parser.

A command may give a shared option its own help text (what its --out holds and defaults to,
an example for its --set), passed as `add(parser, "out", out="...")`; the flag, type,
default and meaning stay the ones defined here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0: {text!r}")
    return value


# name -> (flags, argparse keywords): the option as most commands have it.
SHARED: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "config": (("config",), {
        "nargs": "?", "help": "experiment file (TOML); default: loopback"}),
    "set": (("--set",), {
        "action": "append", "default": [], "metavar": "KEY=VALUE",
        "help": "override a config key (repeatable)"}),
    "duration": (("--duration",), {
        "type": positive_float, "metavar": "S", "help": "measurement seconds"}),
    "out": (("--out",), {
        "type": Path, "metavar": "DIR", "help": "results directory"}),
    "json": (("--json",), {
        "action": "store_true", "help": "print one JSON object on stdout"}),
    "json_stream": (("--json-stream",), {
        "action": "store_true",
        "help": "print one JSON line per interval as it happens, then the summary"}),
    "csv": (("--csv",), {
        "action": "store_true", "help": "also write tables as CSV"}),
    "root": (("--root",), {
        "default": "/", "metavar": "DIR", "help": "read sysfs/procfs under DIR"}),
    "yes": (("--yes",), {
        "action": "store_true", "help": "allow a target that is not loopback or lab"}),
    "threshold": (("--threshold",), {
        "action": "append", "default": [], "metavar": "PCT|METRIC=PCT",
        "help": "smallest change that counts, in percent: PCT sets the rates (rx_pps, "
                "ndr_pps, pdr_pps; default 5), METRIC=PCT one metric (loss_pct in percentage "
                "points, default 1; p99_ns 20; rx_cpu_ns 10), METRIC=off reports it without "
                "judging; repeatable"}),
}


def add(parser: argparse.ArgumentParser | argparse._ActionsContainer, *names: str,
        **helps: str) -> None:
    """Add the shared options `names` to `parser` (or to a group of it), in that order.
    helps[name] replaces that option's help text for this command."""
    unknown = set(helps) - set(names)
    if unknown:
        raise ValueError(f"help for options not added: {sorted(unknown)}")
    for name in names:
        flags, keywords = SHARED[name]
        keywords = dict(keywords)
        if name in helps:
            keywords["help"] = helps[name]
        if isinstance(keywords.get("default"), list):
            keywords["default"] = []  # each parser its own list
        parser.add_argument(*flags, **keywords)
