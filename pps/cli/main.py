"""The `pps` command: one table of subcommands (COMMANDS), each a parser builder and a
cmd_* function, here or in the other pps.cli modules.

Only the CLI prints and chooses exit codes, all from pps.exits: 0 success, 1 a check
failed (loss over the bound, a regression), 2 bad usage, config or input file, 3 the host
cannot do it (privileges, device, kernel feature, port or lab in use), 4 the run failed (a
worker or host died or stalled, the lab or device vanished; what was measured is saved),
128+N stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP; results so far saved).
Options several commands share are defined once, in pps.cli.options.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from pps import __version__
from pps.cli import check_cmd, experiment_cmd, options, search_cmd
from pps.errors import ConfigError, PpsError
from pps.exits import (
    EXIT_BROKEN_PIPE,
    EXIT_CHECK,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
)
from pps.run import stopsignals

DESCRIPTION = """\
pps measures how many small UDP packets per second this host sends and receives, and
where every packet that did not arrive was lost (NIC, backlog, IP, UDP socket).

With no arguments, `pps run` benchmarks loopback: one sender, one receiver, pinned to
separate CPUs, batch 64, 32-byte payloads, for 5 seconds.
"""

EPILOG = """\
examples:
  pps run                                   loopback, defaults
  pps run --set senders.batch=32 --set receivers.count=2
  pps run configs/lab-4q-rps.toml --json    one JSON object on stdout
  pps run --dry-run --root tests/data/topo/mlx5-2socket --set receivers.placement=remote
  pps topo --dev eth0                       CPUs, NUMA nodes, queues -> IRQs -> CPUs
  pps lab up --queues 4 && pps run --set lab.enabled=true && pps lab down
"""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        if wants_json(sys.argv[1:]):  # a script reading stdout gets the error there too
            print_error_json(f"{message} (see {self.prog} --help)", EXIT_USAGE)
        raise SystemExit(EXIT_USAGE)


def wants_json(argv: list[str]) -> bool:
    return any(a in ("--json", "--json-stream") for a in argv)


def print_error_json(message: str, exit_code: int) -> None:
    """What `--json` prints on stdout when a command fails: one object, as iperf3's -J does."""
    from pps.results.store import dumps

    print(dumps({"error": {"message": message, "exit_code": exit_code}}), flush=True)


def build_parser() -> Parser:
    parser = Parser(prog="pps", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"pps {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, command in COMMANDS.items():
        command.add_parser(sub, name)
    return parser


def add_run_parser(sub: argparse._SubParsersAction, name: str) -> None:
    run = sub.add_parser(name, help="run one benchmark (loopback by default)",
                         description=DESCRIPTION, epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add(run, "config", "set", "duration", "out",
                set="override a config key, e.g. senders.batch=32 (repeatable)",
                out="results directory (default results/pps-TIME)")
    options.add(run.add_mutually_exclusive_group(), "json", "json_stream",
                json="print one JSON object on stdout: start, intervals and the summary")
    options.add(run, "csv", "root", "yes")
    run.add_argument("--dry-run", action="store_true", help="print the placement plan; send nothing")


def add_topo_parser(sub: argparse._SubParsersAction, name: str) -> None:
    topo = sub.add_parser(name, help="CPUs, NUMA nodes, NIC queues -> IRQs -> CPUs")
    topo.add_argument("--dev", action="append", metavar="IFACE", help="only this device (repeatable)")
    options.add(topo, "root", "json", root="read a captured tree under DIR")


def add_lab_parser(sub: argparse._SubParsersAction, name: str) -> None:
    lab = sub.add_parser(name, help="network-namespace lab with a multi-queue veth")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=Parser, required=True)
    up = lab_sub.add_parser("up", help="create the lab (idempotent)")
    up.add_argument("--queues", type=int, default=4, help="veth queue count (default 4)")
    up.add_argument("--rps-cpus", metavar="CPUS", help="RPS CPUs for every receive queue, e.g. 0-1")
    up.add_argument("--gro", action="store_true", help="GRO (NAPI mode) on the receiving veth")
    up.add_argument("--backlog", type=int, help="net.core.netdev_max_backlog (host-wide)")
    up.add_argument("--rmem-max", type=int, help="net.core.rmem_max (host-wide)")
    up.add_argument("--qdisc", help="qdisc on the sender's veth (pfifo, fq, ...)")
    down = lab_sub.add_parser("down", help="remove the lab and anything it left")
    down.add_argument("--force", action="store_true",
                      help="remove it even while a run uses it (that run then fails, exit 4)")
    for action in (up, down, lab_sub.add_parser("status", help="show the lab")):
        action.add_argument("--id", default=None,
                            help="lab id (default: one per user, see `pps lab status`)")
        options.add(action, "json")


def add_config_parser(sub: argparse._SubParsersAction, name: str) -> None:
    config = sub.add_parser(name, help="every config key; a config resolved as TOML")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", parser_class=Parser,
                                       required=True)
    keys = config_sub.add_parser("keys", help="every key: type, default, allowed values, meaning")
    options.add(keys, "json", json="a JSON list, one object per key")
    show = config_sub.add_parser("show", help="the config as a run resolves it, as TOML")
    options.add(show, "config", "set")


def add_agent_parser(sub: argparse._SubParsersAction, name: str) -> None:
    sub.add_parser(name, help="serve a run driven from another host over SSH (JSON lines "
                   "on stdin/stdout; started by pps itself)")


def _load(args: argparse.Namespace):
    from pps.config.model import load_config

    sets = list(args.set)
    if getattr(args, "duration", None):
        sets.append(f"run.duration={args.duration}")
    return load_config(args.config, sets)


def cmd_run(args: argparse.Namespace) -> int:
    from pps.report import display
    from pps.results.store import check_out_dir, default_dir, dumps
    from pps.run.pipeline import execute, plan_here

    config = _load(args)
    if args.dry_run:  # sends nothing, so any target may be planned for
        _, remote = _local_roles(config)
        topology, plan = plan_here(config, args.root)
        if remote:
            plan = replace(plan, notes=(*plan.notes, f"{remote} planned on their host when the run starts"))
        if args.json:
            print(dumps({"workers": [w.to_dict() for w in plan.workers], "plan": plan.to_dict()}))
        else:
            print(display.plan_text(plan.to_dict()))
        return EXIT_OK
    if config.sweep:
        raise ConfigError(f"{config.source}: has a [sweep] table of {len(config.sweep)} keys; "
                          f"run it with `pps sweep {config.source}`")
    machine = args.json or args.json_stream  # stdout is JSON only; people read stderr
    human = sys.stderr if machine else sys.stdout
    started: dict[str, Any] = {}
    intervals: list[dict[str, Any]] = []

    def on_start(info: dict[str, Any]) -> None:
        started.update(info)
        if args.json_stream:
            print(dumps({"start": info}), flush=True)

    def status(s: dict[str, Any]) -> None:
        if args.json:  # kept only for the one object printed at the end
            intervals.append(s)
        if args.json_stream:
            print(dumps({"interval": s}), flush=True)
        print(display.status_line(s), file=human, flush=True)

    def notice(line: str) -> None:
        print(f"warning: {line}", file=human, flush=True)

    out = check_out_dir(args.out or default_dir())  # before any packet: a bad --out is exit 2
    report = execute(config, out=out, root=args.root, confirmed=args.yes,
                     status=status, csv=args.csv, notice=notice, on_start=on_start)
    for line in report.save_notes:  # written elsewhere than asked: say where
        print(f"pps run: warning: {line}", file=sys.stderr)
    # The summary as JSON (docs/json.md); report.summary is its typed form (pps.results.record).
    summary = report.summary.to_dict()
    code = outcome_code(summary, config.run.max_loss)
    if machine:
        if code == EXIT_FAILED:
            summary["error"] = {"message": f"run failed: {summary['failure']} (results saved)",
                                "exit_code": code}
        if args.json:
            start = started or {"config": report.record.config, "plan": report.record.plan.to_dict()}
            summary = {"start": start, "intervals": intervals, **summary}
        print(dumps(summary))
    else:
        print(display.run_summary(summary))
    return code


def _local_roles(config) -> tuple[tuple[str, ...], str]:
    """The roles this host runs, and a phrase naming those planned elsewhere."""
    from pps.config.hosts import LOCAL, roles_by_host

    hosts = roles_by_host(config)
    remote = [f"{r}s on host {h}" for h, roles in hosts.items() if h != LOCAL for r in roles]
    return hosts.get(LOCAL, ()), " and ".join(remote)


def outcome_code(summary: dict[str, Any], max_loss: float | None) -> int:
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED  # main() makes it 128 + the signal that stopped the run
    if summary.get("failure"):
        print(f"pps: error: run failed: {summary['failure']} (results saved)", file=sys.stderr)
        return EXIT_FAILED
    if max_loss is not None and summary["loss_ratio"] * 100 > max_loss:  # max_loss is percent
        print(f"pps: loss {summary['loss_ratio']:.4%} is over run.max_loss {max_loss:g}%",
              file=sys.stderr)
        return EXIT_CHECK
    return EXIT_OK


def cmd_topo(args: argparse.Namespace) -> int:
    from pps.host.topo_view import describe, format_topology, topology_json
    from pps.results.store import dumps

    topology, info = describe(args.root, args.dev)
    print(dumps(topology_json(topology, info)) if args.json else format_topology(topology, info))
    return EXIT_OK


def cmd_lab(args: argparse.Namespace) -> int:
    from pps.config.model import build_config
    from pps.lab import bed as lab
    from pps.lab import owner as lab_owner
    from pps.results.store import dumps

    args.id = args.id or lab_owner.default_id()
    if args.lab_command == "up":
        raw = {"lab": {"id": args.id, "queues": args.queues, "gro": args.gro}}
        for key, value in (("rps_cpus", args.rps_cpus), ("backlog", args.backlog),
                           ("rmem_max", args.rmem_max), ("qdisc", args.qdisc)):
            if value is not None:
                raw["lab"][key] = value
        options = build_config(raw, source="pps lab up").lab
        spec = lab.LabSpec(id=options.id, queues=options.queues, rps_cpus=options.rps_cpus,
                           gro=options.gro, backlog=options.backlog, rmem_max=options.rmem_max,
                           qdisc=options.qdisc)
        with lab_owner.held(spec.id, purpose="up"):  # never reshape a lab under a running run
            made, created = lab.lab_up(spec)
        status = lab.lab_status(made.id)
        if args.json:
            print(dumps({"created": created, **status}))
        else:
            print(("created" if created else "already up, reused") + f" lab {made.id!r}")
            print(lab.format_status(status))
    elif args.lab_command == "down":
        removed = lab.lab_down(args.id, force=args.force)
        if args.json:
            print(dumps({"removed": removed}))
        else:
            print("\n".join(f"removed {r}" for r in removed) or f"no lab {args.id!r}: nothing to remove")
    else:
        status = lab.lab_status(args.id)
        print(dumps(status) if args.json else lab.format_status(status))
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    from pps.config import keys as config_keys
    from pps.results.store import dumps

    if args.config_command == "keys":
        print(dumps(config_keys.rows()) if args.json else config_keys.text())
    else:
        print(config_keys.to_toml(_load(args)), end="")
    return EXIT_OK


def cmd_agent(args: argparse.Namespace) -> int:
    from pps.run import agent

    return agent.main()


@dataclass(frozen=True)
class Command:
    """A subcommand: what adds its parser (under the table's name) and what runs it."""

    add_parser: Callable[[argparse._SubParsersAction, str], None]
    run: Callable[[argparse.Namespace], int]


# Every subcommand, in the order `pps --help` lists them.
COMMANDS: dict[str, Command] = {
    "run": Command(add_run_parser, cmd_run),
    "topo": Command(add_topo_parser, cmd_topo),
    "lab": Command(add_lab_parser, cmd_lab),
    "config": Command(add_config_parser, cmd_config),
    "sweep": Command(experiment_cmd.add_sweep_parser, experiment_cmd.cmd_sweep),
    "report": Command(experiment_cmd.add_report_parser, experiment_cmd.cmd_report),
    "compare": Command(experiment_cmd.add_compare_parser, experiment_cmd.cmd_compare),
    "history": Command(experiment_cmd.add_history_parser, experiment_cmd.cmd_history),
    "check": Command(check_cmd.add_parser, check_cmd.cmd_check),
    "search": Command(search_cmd.add_parser, search_cmd.cmd_search),
    "agent": Command(add_agent_parser, cmd_agent),
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    if args.command is None:  # bare `pps` runs the default loopback benchmark
        args = parser.parse_args(["run", *(argv if argv is not None else sys.argv[1:])])
    handler = COMMANDS[command].run
    stopsignals.install()  # SIGTERM and SIGHUP stop a run as Ctrl-C does
    try:
        code = handler(args)
    except PpsError as exc:
        print(f"pps {command}: error: {exc}", file=sys.stderr)
        if wants_json(argv if argv is not None else sys.argv[1:]):
            print_error_json(str(exc), exc.exit_code)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"pps {command}: stopped by {stopsignals.name(stopsignals.received()) or 'SIGINT'}",
              file=sys.stderr)
        return stopsignals.exit_code()
    except BrokenPipeError:  # the reader went away: say nothing more, on a stdout that works
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    # A command that was stopped and saved what it had reports the signal that stopped it.
    return stopsignals.exit_code() if code == EXIT_INTERRUPTED or stopsignals.received() else code


if __name__ == "__main__":
    sys.exit(main())
