"""`pps search CONFIG [--out DIR] [--json]`: the NDR / PDR search as a subcommand."""

from __future__ import annotations

import argparse
import sys

from pps.cli import options
from pps.exits import EXIT_CHECK, EXIT_INTERRUPTED, EXIT_OK


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(
        name, help="find the no-drop (NDR) and partial-drop (PDR) rates",
        description="Bisect the offered rate (senders.rate) to find the highest rate received "
                    "with no drop (NDR) and with a loss ratio within search.loss_bound (PDR), "
                    "within search.budget seconds and to search.precision; final trials are "
                    "repeated search.confirm times.")
    options.add(p, "config", "set", set="override a config key, e.g. search.budget=60 (repeatable)")
    # Not the shared --duration (a positive number): here 0 leaves the config's run.duration,
    # as it always has; unify when that may change.
    p.add_argument("--duration", type=float, metavar="S", help="measurement seconds per trial")
    options.add(p, "out", "json", "yes", out="results directory (default results/search-TIME)")


def cmd_search(args: argparse.Namespace) -> int:
    from pps.config.model import load_config
    from pps.experiments.search import format_result, trial_table
    from pps.experiments.search_run import run_search
    from pps.results.store import check_out_dir, default_dir, dumps

    sets = list(args.set)
    if args.duration:
        sets.append(f"run.duration={args.duration}")
    config = load_config(args.config, sets)
    out = check_out_dir(args.out or default_dir("search"))  # before the first trial: exit 2
    shown: list = []

    def progress(trial) -> None:
        # One line per trial as it ends; on stderr with --json, stdout being the contract.
        text = trial_table([trial]).splitlines()
        print(text[-1] if shown else "\n".join(text), file=sys.stderr if args.json else sys.stdout,
              flush=True)
        shown.append(trial)

    result = run_search(config, out, confirmed=args.yes, progress=progress)
    out = result.out or out  # a rescue directory when the search could not be saved where asked
    for note in result.notes:
        print(f"pps search: warning: {note}", file=sys.stderr)
    if args.json:
        print(dumps({**result.to_dict(), "results_dir": str(out), "notes": result.notes}))
    else:
        print()
        print(format_result(result).split("\n\n", 1)[-1])
        print(f"results in {out}")
    if result.status == "interrupted":
        return EXIT_INTERRUPTED
    if result.ndr.rate is None and result.pdr.rate is None:
        print("pps search: no rate passed, not even search.min_rate", file=sys.stderr)
        return EXIT_CHECK
    return EXIT_OK

