"""The experiment subcommands: `pps sweep`, `pps report`, `pps compare`, `pps history`.

Parser builders and cmd_* functions only (pps.cli.main.COMMANDS names them); the work is in
pps.experiments and pps.report. These functions are the only place the experiment code prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from pps.cli import options
from pps.errors import ConfigError
from pps.exits import EXIT_CHECK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE


def add_sweep_parser(sub: argparse._SubParsersAction, name: str) -> None:
    sweep = sub.add_parser(name, help="run every point of a config's [sweep] table, repeated",
                           description="Run the cross product of the [sweep] table, each point "
                           "run.repetitions times; every trial is saved under DIR/trials.")
    sweep.add_argument("config", help="experiment file (TOML) with a [sweep] table")
    options.add(sweep, "set", "out", out="sweep directory (default results/sweep-TIME)")
    sweep.add_argument("--resume", action="store_true",
                       help="finish the pending trials of the sweep in --out")
    options.add(sweep, "json", "yes")


def add_report_parser(sub: argparse._SubParsersAction, name: str) -> None:
    report = sub.add_parser(name, help="Markdown and HTML summary and PNG plots of runs, sweeps and searches")
    report.add_argument("results", nargs="+", type=Path, metavar="RESULTS_DIR")
    options.add(report, "out",
                out="where report.md, report.html and the plots go (default: RESULTS_DIR/report)")


def add_compare_parser(sub: argparse._SubParsersAction, name: str) -> None:
    compare = sub.add_parser(
        name, help="compare a baseline with one or more results directories; exit 1 on a regression",
        description="Compare every metric (rx_pps, loss_pct, p99_ns, rx_cpu_ns; for searches "
        "ndr_pps, pdr_pps and their p99) of each CURRENT_DIR with BASELINE_DIR: one table, a "
        "column per current directory. Thresholds are percent: of the baseline for rates, "
        "latency and CPU time, percentage points for loss. Exit 1 when any is a regression.")
    compare.add_argument("baseline", type=Path, metavar="BASELINE_DIR")
    compare.add_argument("current", type=Path, nargs="+", metavar="CURRENT_DIR")
    options.add(compare, "threshold")
    compare.add_argument("--allow", action="append", default=[], metavar="WHAT",
                         help="accept this difference between the hosts or configs, by the name "
                         "compare prints (host.kernel, 'nic.*.driver'); repeatable")
    compare.add_argument("--force", action="store_true",
                         help="compare even when the hosts or configs differ in ways that matter")
    options.add(compare, "json")


def add_history_parser(sub: argparse._SubParsersAction, name: str) -> None:
    history = sub.add_parser(
        name, help="trend of runs, sweeps or searches over time; exit 1 when the newest regressed",
        description="Order the directories by their recorded start time, judge each point against "
        "the points before it, and write OUT/trend.parquet, trend.csv and trend.png.")
    history.add_argument("results", nargs="+", type=Path, metavar="RESULTS_DIR")
    options.add(history, "out", "threshold",
                out="where the trend table and plot go (default results/history-TIME)")
    history.add_argument("--window", type=int, default=5, metavar="N",
                         help="judge each point against at most N earlier points that did not "
                         "regress (default 5)")
    history.add_argument("--keep-order", action="store_true",
                         help="take the directories in the order given, not by start time")
    history.add_argument("--force", action="store_true",
                         help="make a history of directories whose hosts or configs differ "
                         "beyond the kernel and NIC driver")
    options.add(history, "json")


# ----------------------------------------------------------------------------- progress

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PlainProgress:
    """One line per finished trial, for logs and pipes."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __call__(self, e: dict[str, Any]) -> None:
        from pps.report.display import rate

        if e["event"] == "start":
            line = f"sweep: {e['done']}/{e['total']} trials done, about {_duration(e['eta_s'])} to go"
        elif e["event"] == "trial":
            line = (f"[{e['done']}/{e['total']}] trial {e['trial']:04d} {e['label']}: "
                    f"{e['status']}, rx {rate(e['rx_pps'] or 0).strip()}; "
                    f"{_duration(e['eta_s'])} left")
        else:
            return
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichProgress:
    """A live bar on a terminal: trials done / total, time left, the last point's rx pps."""

    def __init__(self, stream: Any) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[eta]} left  last: {task.fields[last]}"),
                                 console=Console(file=stream), transient=False)
        self.task = None
        self.progress.start()

    def __call__(self, e: dict[str, Any]) -> None:
        from pps.report.display import rate

        if self.task is None:
            self.task = self.progress.add_task("sweep", total=e["total"], eta="?", last="-")
        fields: dict[str, Any] = {"completed": e["done"]}
        if e.get("eta_s") is not None:
            fields["eta"] = _duration(e["eta_s"])
        if e["event"] == "begin":
            fields["description"] = f"trial {e['trial']:04d} {e['label']}"
        if e["event"] == "trial":
            fields["last"] = f"{e['label']} rx {rate(e['rx_pps'] or 0).strip()} ({e['status']})"
        self.progress.update(self.task, **fields)

    def close(self) -> None:
        self.progress.stop()


def cmd_sweep(args: argparse.Namespace) -> int:
    from pps.config.model import load_config
    from pps.experiments.sweep import run_sweep
    from pps.results.store import check_out_dir, default_dir, dumps

    config = load_config(args.config, args.set)
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out DIR, the sweep to continue")
    out = args.out or default_dir("sweep")
    if not args.resume:  # with --resume, run_sweep reads sweep.json first and says what is wrong
        check_out_dir(out)  # before the first trial: a bad --out is exit 2, nothing measured
    show = RichProgress(sys.stderr) if sys.stderr.isatty() else PlainProgress(sys.stderr)
    started = time.monotonic()
    try:
        result = run_sweep(config, out, resume=args.resume, progress=show,
                           confirmed=args.yes)
    finally:
        show.close()
    counts = result.statuses
    out = result.out  # a rescue directory when the sweep could not be saved where asked
    for note in result.notes:
        print(f"pps sweep: warning: {note}", file=sys.stderr)
    if args.json:
        runs = result.runs.astype(object).where(result.runs.notna(), None)
        print(dumps({"results_dir": str(out), "statuses": counts, "interrupted": result.interrupted,
                     "failures": result.failures, "notes": result.notes,
                     "runs": runs.to_dict(orient="records")}))
    else:
        print(f"sweep {out}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
              + f" in {_duration(time.monotonic() - started)}")
        for failure in result.failures:
            print(f"failed: {failure}")
        if not result.runs.empty:
            print(f"next: pps report {out}")
    if result.interrupted:
        print(f"pps sweep: interrupted; finished trials are saved. Continue with: "
              f"pps sweep {args.config} --out {out} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.failures else EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from pps.report.build import write_report

    out = args.out or (args.results[0] / "report")
    written = write_report(args.results, out)
    print(f"report: {written['markdown']}")
    print(f"html:   {written['html']}")
    for png in written["plots"]:
        print(f"plot:   {png}")
    for note in written["notes"]:
        print(f"note:   {note}", file=sys.stderr)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from pps.experiments.compare import compare_dirs
    from pps.experiments.regression_metrics import parse_thresholds
    from pps.report.compare_text import format_text
    from pps.results.store import dumps

    result = compare_dirs(args.baseline, list(args.current), parse_thresholds(args.threshold),
                          force=args.force, allow=args.allow)
    if args.json:
        print(dumps(result))
    else:
        print(format_text(result))
    if result["refused"]:
        what = ", ".join(sorted({d["what"] for s in result["sides"] for d in s["differences"]}))
        print(f"pps compare: error: the runs differ ({what}); pass --allow WHAT for a difference "
              "under test, or --force to compare anyway", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_CHECK if result["verdict"] == "regression" else EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from pps.experiments.history import build_history, format_text, to_json, write_history
    from pps.experiments.regression_metrics import parse_thresholds
    from pps.results.store import default_dir, dumps

    history = build_history(args.results, parse_thresholds(args.threshold), window=args.window,
                            force=args.force, keep_order=args.keep_order)
    written = write_history(history, args.out or default_dir("history"))
    if args.json:
        print(dumps(to_json(history, written)))
    else:
        print(format_text(history, written))
    return EXIT_CHECK if history.newest_regressed else EXIT_OK
