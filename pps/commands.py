"""Subcommands beyond run/topo/lab: sweep, search, report, compare, check.

Each registers its parser here and maps its name to a cmd_* function in HANDLERS.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the parsers of the subcommands defined in this module."""
    from . import experiment_cmd

    experiment_cmd.add_parsers(sub)
    HANDLERS.update(experiment_cmd.HANDLERS)
    from . import check_cmd

    check_cmd.add_parser(sub)
    HANDLERS["check"] = check_cmd.cmd_check
    from . import search_cmd

    search_cmd.add_parser(sub)
    HANDLERS["search"] = search_cmd.cmd_search
