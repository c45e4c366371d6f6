"""One `pps run`, end to end, over a list of hosts:

    config -> hosts (this one, the lab on it, others over SSH) -> each host's share
    (topology, device, plan, checks, kernel probe, port test) -> one trial over every
    host's group -> one sampler's counters -> one report -> the results directory.

A run on loopback is a run across one host. The CLI, sweeps and searches call `execute`;
nothing here prints. Nothing is sent before every host has said yes; whatever happens,
every host is closed (and with it every worker), then the lab is removed if the run made it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pps.config.hosts import LOCAL, roles_by_host
from pps.config.model import Config
from pps.counters import collectors
from pps.counters.hosts import label
from pps.counters.sampler import CounterSampler
from pps.errors import ConfigError
from pps.host import netns, offload, selfpin
from pps.lab.session import LabSession
from pps.plan import flowpick
from pps.plan.placement import Plan
from pps.plan.resolve import resolve
from pps.results.run_report import RunReport, build_report, save
from pps.run import stopsignals
from pps.run.hosts import LocalHost, RemoteHost
from pps.run.share import Seats, Wire
from pps.run.trial import Trial

ProgressFn = Callable[[dict[str, Any]], None]
NoticeFn = Callable[[str], None]
Host = LocalHost | RemoteHost


def check_target_allowed(config: Config, confirmed: bool) -> None:
    """Loopback and the lab are always fine (the lab picks its own addresses); any other
    target, even one in the benchmarking range, is a real load on a real network: --yes."""
    if config.lab.enabled:
        return
    for address in config.target.all_addresses:
        if not ipaddress.ip_address(address).is_loopback and not confirmed:
            raise ConfigError(
                f"target {address} is not loopback and not the lab: this sends a real load onto "
                "a real network; pass --yes if you mean it")


def plan_here(config: Config, root: str = "/") -> tuple[Any, Plan]:
    """(topology, plan) of this host's share, sending nothing (`run --dry-run`). A dry run
    makes no lab, so a lab's queues are unknown to it: its plan aligns with CPUs only."""
    roles = roles_by_host(config).get(LOCAL, ())
    r = resolve(config, roles, root=root, cpus_only=config.lab.enabled)
    return r.topology, r.plan


def wire_for(config: Config, lab: Any | None) -> Wire:
    """Where senders send and receivers listen, and the run's random key."""
    run_key = secrets.randbits(32)
    if lab is not None:
        return Wire((lab.receiver_addr,), lab.receiver_addr, run_key)
    targets = config.target.all_addresses
    # Several destination addresses: receivers listen on all of them.
    bind = targets[0] if len(targets) == 1 else ("::" if ":" in targets[0] else "0.0.0.0")
    return Wire(tuple(targets), bind, run_key)


def one_clock_rules(config: Config) -> tuple[Config, list[str]]:
    """Hosts do not share a clock: one-way latency and kernel stamps are off, and said so."""
    if config.one_clock:
        return config, []
    warnings = []
    if config.run.latency:
        warnings.append(f"one-way latency is not reported: {offload.not_one_clock(config)}")
        config = config.with_values({"run.latency": False})
    if config.run.timestamps == "kernel":
        warnings.append("run.timestamps = kernel is ignored: it splits one-way latency, which "
                        "senders and receivers on different hosts cannot measure")
        config = config.with_values({"run.timestamps": "user"})
    return config, warnings


def seats_for(config: Config, roles: dict[str, tuple[str, ...]]) -> dict[str, Seats]:
    """Each host's first worker index of each role: indices (and so flow ids, histograms by
    receiver) are unique across hosts."""
    n_senders = config.senders.count * len(config.senders.hosts)
    out = {}
    for name, host_roles in roles.items():
        out[name] = Seats(
            sender_base=config.senders.hosts.index(name) * config.senders.count
            if "sender" in host_roles else 0,
            receiver_base=config.receivers.hosts.index(name) * config.receivers.count
            if "receiver" in host_roles else 0,
            n_senders=n_senders)
    return out


@dataclass
class _Prepared:
    hosts: dict[str, Host]
    shares: dict[str, dict[str, Any]]
    warnings: list[str]
    pick: flowpick.Pick | None


def execute(config: Config, *, out: Path | None, root: str = "/", confirmed: bool = False,
            status: ProgressFn | None = None, csv: bool = False,
            notice: NoticeFn | None = None, on_start: ProgressFn | None = None,
            counter_sources: Collection[str] = collectors.SOURCES,
            sampler_hook: Callable[[CounterSampler], Any] | None = None) -> RunReport:
    """Run one trial of `config` and save it under `out` (None: keep it in memory).
    `on_start` is told what is about to run (host, resolved config, plan) before the first
    packet; `status` then gets one record per display interval; `notice` each warning known
    before the run. `counter_sources` limits this host's collectors and `sampler_hook` may
    wrap the run's sampler (bench/sampling_cost.py uses both)."""
    check_target_allowed(config, confirmed)
    config, warnings = one_clock_rules(config)
    # Once the trial is over, what it measured is written whatever signal arrives. The
    # hosts close before the lab goes: LabSession leaves last.
    with contextlib.ExitStack() as finishing, LabSession(config) as lab, \
            contextlib.ExitStack() as open_hosts:
        prep = _prepare(config, root, lab, open_hosts, warnings + (lab.warnings if lab else []))
        if notice is not None:
            for line in prep.warnings:
                notice(line)
        sampler = None
        if config.collect.enabled:
            sampler = _sampler(config, prep, lab, counter_sources)
            if sampler_hook is not None:
                sampler = sampler_hook(sampler)
        local = prep.hosts.get(LOCAL)
        if on_start is not None:
            on_start({"host": local.info["before"] if local else None,
                      "config": config.to_dict(), "plan": _plan_dict(prep.shares)})
        groups = [h.group for h in prep.hosts.values()]
        local_cpus = [w["cpu"] for w in prep.shares[LOCAL]["plan"]["workers"]] if local else []
        watch = vanish_watch(lab, local.share.device if local else None)
        with selfpin.off_worker_cpus(local_cpus) as orchestrator:
            outcome = Trial(config, groups=groups, sampler=sampler, status=status,
                            watch=watch).run()
        finishing.enter_context(stopsignals.deferred())
        for host in prep.hosts.values():
            host.finish()
        report = build_report(
            config, outcome, plan=_plan_dict(prep.shares), topology=_topology_dict(prep.shares),
            hosts=_hosts_info(prep, roles_by_host(config)), warnings=prep.warnings,
            sampler=sampler, lab_info=lab.describe() if lab else None,
            checks=_run_checks(config, prep.shares), orchestrator=orchestrator)
        if prep.pick is not None:
            flowpick.record(report, prep.pick)
        if out is not None:
            save(report, out, csv)
    return report


def _prepare(config: Config, root: str, lab: Any | None, open_hosts: contextlib.ExitStack,
             warnings: list[str]) -> _Prepared:
    """Reach every host, then have each prepare its share; nothing starts before all say yes."""
    roles = roles_by_host(config)
    hosts: dict[str, Host] = {}
    for name in roles:
        host = LocalHost(root=root, lab=lab) if name == LOCAL else RemoteHost(config.host(name))
        hosts[name] = host
        open_hosts.callback(host.close)
    for host in hosts.values():
        host.connect(config)
    wire, seats = wire_for(config, lab), seats_for(config, roles)
    several = len(hosts) > 1
    shares = {name: host.prepare(config, roles[name], wire, seats[name],
                                 label=name if several else None)
              for name, host in hosts.items()}
    for share in shares.values():
        warnings += share["notes"]
    pick = None
    if not several:  # source ports are picked by probing, from one host to itself
        local = hosts.get(LOCAL)
        if local is not None:
            pick = flowpick.pick(config, local.share.plan, wire.to_dict(), lab)
            local.use_source_ports(pick.ports())
    elif config.senders.pick_ports == "auto":
        warnings.append("senders.pick_ports = auto picks ports by probing the receivers from "
                        "the senders' host, which needs both on one host; across hosts the "
                        "source ports are the kernel's (ephemeral)")
    return _Prepared(hosts, shares, warnings, pick)


def _sampler(config: Config, prep: _Prepared, lab: Any | None,
             sources: Collection[str]) -> CounterSampler:
    """One sampler over every host's counters, labelled so the ledger reads the senders'
    side where the senders run and the rest where the receivers run."""
    parts = [h.open_counters(config, sources) for h in prep.hosts.values()]
    if lab is not None:
        return CounterSampler(parts, [lab.sender_ns], [lab.receiver_ns], [None], lab.receiver_dev,
                              notes=("the lab's namespaces have their own snmp counters: "
                                     "its UDP and IP rows are exact",))

    def where(role: str) -> list[str | None]:
        return [label(name, prep.shares[name]["netns"][role])
                for name in getattr(config, role + "s").hosts]
    receivers = config.receivers.hosts
    return CounterSampler(parts, where("sender"), where("receiver"),
                          [label(name, None) for name in receivers],
                          prep.shares[receivers[0]]["device"])


def _plan_dict(shares: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One host's plan as it is; several hosts' as {"hosts": each plan, "workers": all}."""
    if set(shares) == {LOCAL}:
        return shares[LOCAL]["plan"]
    return {"hosts": {n: s["plan"] for n, s in shares.items()},
            "workers": [{**w, "host": n} for n, s in shares.items() for w in s["plan"]["workers"]]}


def _topology_dict(shares: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if set(shares) == {LOCAL}:
        return shares[LOCAL]["topology"]
    return {n: s["topology"] for n, s in shares.items()}


def _hosts_info(prep: _Prepared, roles: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, host in prep.hosts.items():
        share = prep.shares[name]
        info = {**host.info, "roles": list(roles[name]), "checks": share["checks"],
                "device": share["device"], "netns": share["netns"]}
        if name != LOCAL:
            info["agent"] = share.get("agent")
        out[name] = info
    return out


def _run_checks(config: Config, shares: dict[str, dict[str, Any]]) -> list[Any]:
    """The checks of the receivers' (first) host: the host whose tuning the run measures."""
    return shares[config.receivers.hosts[0]]["checks"].get("checks", [])


def vanish_watch(lab: Any | None, device: str | None) -> Callable[[], str | None]:
    """A check, cheap enough for every liveness tick (one stat per path), that the lab's
    namespaces and the measured device still exist: a run whose lab is pulled away (`pps
    lab down --force`) or whose NIC disappears would otherwise count zeros as a result."""
    if lab is not None:
        paths = {os.path.join(netns.NETNS_RUN_DIR, ns): f"lab {lab.id!r} (netns {ns})"
                 for ns in (lab.sender_ns, lab.receiver_ns)}
    elif device and device != "lo":
        paths = {f"/sys/class/net/{device}": f"device {device}"}
    else:
        paths = {}

    def gone() -> str | None:
        for path, what in paths.items():
            if not os.path.exists(path):
                return f"{what} vanished during the run"
        return None
    return gone

