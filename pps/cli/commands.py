"""Subcommands beyond run/topo/lab: sweep, search, report, compare, history, check, agent.

Each registers its parser here and maps its name to a cmd_* function in HANDLERS.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the parsers of the subcommands defined in this module."""
    from pps.cli import experiment_cmd

    experiment_cmd.add_parsers(sub)
    HANDLERS.update(experiment_cmd.HANDLERS)
    from pps.cli import check_cmd

    check_cmd.add_parser(sub)
    HANDLERS["check"] = check_cmd.cmd_check
    from pps.cli import search_cmd

    search_cmd.add_parser(sub)
    HANDLERS["search"] = search_cmd.cmd_search
    sub.add_parser("agent", help="serve a run driven from another host over SSH (JSON lines "
                   "on stdin/stdout; started by pps itself)")
    HANDLERS["agent"] = _cmd_agent


def _cmd_agent(args: argparse.Namespace) -> int:
    from pps.run import agent

    return agent.main()
