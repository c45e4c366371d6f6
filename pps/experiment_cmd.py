"""The experiment subcommands: `pps sweep`, `pps report`, `pps compare`.

Parsers and cmd_* functions only; the work is in sweep.py, report.py and compare.py. These
functions are the only place the experiment code prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .errors import ConfigError

EXIT_OK, EXIT_CHECK, EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 4, 130


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="run every point of a config's [sweep] table, repeated",
                           description="Run the cross product of the [sweep] table, each point "
                           "run.repetitions times; every trial is saved under DIR/trials.")
    sweep.add_argument("config", help="experiment file (TOML) with a [sweep] table")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (repeatable)")
    sweep.add_argument("--out", type=Path, metavar="DIR", help="sweep directory (default results/sweep-TIME)")
    sweep.add_argument("--resume", action="store_true",
                       help="finish the pending trials of the sweep in --out")
    sweep.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    sweep.add_argument("--yes", action="store_true", help="allow a target that is not loopback or lab")

    report = sub.add_parser("report", help="Markdown summary and PNG plots of results directories")
    report.add_argument("results", nargs="+", type=Path, metavar="RESULTS_DIR")
    report.add_argument("--out", type=Path, metavar="DIR",
                        help="where report.md and the plots go (default: RESULTS_DIR/report)")

    compare = sub.add_parser("compare", help="compare two results directories; exit 1 on a regression")
    compare.add_argument("baseline", type=Path, metavar="BASELINE_DIR")
    compare.add_argument("current", type=Path, metavar="CURRENT_DIR")
    compare.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                         help="smallest change that counts, in percent (default 5)")
    compare.add_argument("--force", action="store_true",
                         help="compare even when the hosts or configs differ in ways that matter")
    compare.add_argument("--json", action="store_true", help="print one JSON object on stdout")


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
        from .display import rate

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
        from .display import rate

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
    from .config import load_config
    from .results import default_dir, dumps
    from .sampling import CounterSampler
    from .sweep import run_sweep

    config = load_config(args.config, args.set)
    if args.resume and args.out is None:
        raise ConfigError("--resume needs --out DIR, the sweep to continue")
    out = args.out or default_dir("sweep")
    show = RichProgress(sys.stderr) if sys.stderr.isatty() else PlainProgress(sys.stderr)
    started = time.monotonic()
    try:
        result = run_sweep(config, out, resume=args.resume, progress=show,
                           sampler_factory=CounterSampler.for_run, confirmed=args.yes)
    finally:
        show.close()
    counts = result.statuses
    if args.json:
        runs = result.runs.astype(object).where(result.runs.notna(), None)
        print(dumps({"results_dir": str(out), "statuses": counts, "interrupted": result.interrupted,
                     "failures": result.failures, "runs": runs.to_dict(orient="records")}))
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
    from .report import write_report

    out = args.out or (args.results[0] / "report")
    written = write_report(args.results, out)
    print(f"report: {written['markdown']}")
    for png in written["plots"]:
        print(f"plot:   {png}")
    for note in written["notes"]:
        print(f"note:   {note}", file=sys.stderr)
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_dirs, format_text
    from .results import dumps

    result = compare_dirs(args.baseline, args.current, args.threshold, force=args.force)
    if args.json:
        print(dumps(result))
    else:
        print(format_text(result))
    if result["refused"]:
        what = ", ".join(d["what"] for d in result["differences"])
        print(f"pps compare: error: the runs differ ({what}); pass --force to compare anyway",
              file=sys.stderr)
        return EXIT_USAGE
    return EXIT_CHECK if result["verdict"] == "regression" else EXIT_OK


HANDLERS = {"sweep": cmd_sweep, "report": cmd_report, "compare": cmd_compare}
