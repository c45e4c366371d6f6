"""`pps check`: run the host checks for a config's target device and planned CPUs, print them.

Warnings never fail `pps check` (exit 0): it advises. A bad --root or config is exit 2, a
missing device exit 3, raised as pps.errors types for the CLI to print.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os

from pps.cli import options
from pps.errors import ConfigError, PlacementError
from pps.exits import EXIT_OK


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="what on this host will spoil the measurement, and the fix",
                       description="Read-only checks of this host (or a captured tree) against "
                       "a config: IRQ balancing, CPU frequency and idle states, netfilter, "
                       "RSS, queues, rings, socket buffer limits, NUMA, CPU load. Warnings "
                       "come with the command that fixes them; nothing is changed.")
    options.add(p, "config", "set",
                set="override a config key, e.g. receivers.rcvbuf=8388608 (repeatable)")
    p.add_argument("--dev", metavar="IFACE", help="device to check (default: the target's route)")
    options.add(p, "root", "json", root="read a captured tree under DIR")


def gather(args: argparse.Namespace):
    """Config, topology and plan for the checks -> (Context, plan note or None). Device and
    CPUs come from the resolver every run uses (pps.plan.resolve)."""
    from pps.config.hosts import LOCAL, roles_by_host
    from pps.config.model import load_config
    from pps.host.checks import Context
    from pps.host.checks.base import is_live
    from pps.plan.placement import plan_workers
    from pps.plan.resolve import read_share

    if not os.path.isdir(args.root) or not os.path.isdir(
            os.path.join(args.root, "sys/devices/system/cpu")):
        raise ConfigError(f"--root {args.root}: not a directory holding "
                          "sys/devices/system/cpu (a captured tree or /)")
    config = load_config(args.config, args.set)
    address = config.target.address
    if not (args.dev or config.target.device or is_live(args.root)
            or ipaddress.ip_address(address).is_loopback):
        raise ConfigError(f"--root {args.root}: the route to {address} on a captured tree is "
                          "unknown; name the device with --dev")
    roles = roles_by_host(config).get(LOCAL) or ("sender", "receiver")
    # The lab's veth lives in its own namespace: the host's checks do not read it.
    topology, device, _ = read_share(config, roles, root=args.root, device=args.dev,
                                     cpus_only=config.lab.enabled and not args.dev)
    note = None
    try:
        plan = plan_workers(topology, config, device, roles)
    except PlacementError as exc:  # still worth checking the host; CPU checks cover all CPUs
        plan, note = None, f"no placement plan ({exc}); CPU checks cover every online CPU"
    return Context(args.root, topology, device, config, plan), note


def cmd_check(args: argparse.Namespace) -> int:
    from pps.config.cpulist import format_cpulist
    from pps.host.checks import format_report, results_json, run_checks

    ctx, note = gather(args)
    results = run_checks(ctx)
    cpus = format_cpulist(ctx.planned_cpus())
    if args.json:
        print(json.dumps({**results_json(results), "root": args.root, "device": ctx.device,
                     "cpus": list(ctx.planned_cpus()), "note": note}))
        return EXIT_OK
    planned = "planned" if ctx.plan is not None else "all online"
    header = f"pps check: {args.root}, device {ctx.device or 'none'}, {planned} CPUs {cpus}"
    print(format_report(results, header + (f"\nnote: {note}" if note else "")), end="")
    return EXIT_OK
