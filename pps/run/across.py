"""One `pps run` whose senders or receivers run on other hosts, driven over SSH.

Connect to every host and check its agent (version, privileges) -> plan each host's share
there -> one trial over all of them -> one set of tables, one ledger, one results directory.
Nothing is sent before every host has said yes; whatever happens, every connection is
closed, and with it every remote worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pps.config.hosts import LOCAL, HostSpec, roles_by_host
from pps.config.model import Config
from pps.counters import collectors
from pps.counters.hosts import HostCounters, HostsSampler, local_counters, remote_counters
from pps.host import metadata, selfpin
from pps.run.group import LocalGroup
from pps.run.remote import HostSession, RemoteGroup
from pps.run.share import prepare_share
from pps.run.trial import Trial


class _AsDict:
    """A merged plan or topology, for build_report, which only asks for to_dict()."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        return self.data


def needed_capabilities(config: Config, host: HostSpec) -> dict[str, str]:
    """What the user on `host` must be allowed, for this run."""
    needs = {}
    if host.netns:
        needs["sys_admin"] = f"to enter namespace {host.netns}"
    if config.receivers.rcvbuf or config.senders.sndbuf:
        needs["net_admin"] = "to set socket buffers past rmem_max/wmem_max"
    if config.receivers.mode == "busy-poll":
        needs["net_admin"] = "for SO_BUSY_POLL"
    return needs


def agent_config(config: Config) -> dict[str, Any]:
    """The config as an agent builds it: its roles run locally there; it knows no hosts."""
    raw = config.to_dict()
    raw.pop("hosts", None)
    raw["senders"]["host"] = raw["receivers"]["host"] = LOCAL
    raw["sweep"] = {}
    return {section: {k: v for k, v in body.items() if v is not None}
            for section, body in raw.items()}


def execute_across_hosts(config: Config, *, out: Path | None, root: str, status, csv: bool,
                         notice) -> Any:
    from pps.results.run_report import RunReport, build_report, save
    from pps.run.pipeline import _addresses

    hosts = roles_by_host(config)
    cross = config.senders.host != config.receivers.host
    warnings: list[str] = []
    if cross and config.run.latency:
        warnings.append(f"one-way latency is not reported: senders on host {config.senders.host} "
                        f"and receivers on host {config.receivers.host} do not share a clock")
        config = config.with_values({"run.latency": False})
    if cross and config.run.timestamps == "kernel":
        warnings.append("run.timestamps = kernel is ignored: it splits one-way latency, which "
                        "senders and receivers on different hosts cannot measure")
        config = config.with_values({"run.timestamps": "user"})
    addresses = _addresses(config, None)
    sessions: dict[str, HostSession] = {}
    shares: dict[str, dict[str, Any]] = {}
    groups: list[Any] = []
    parts: list[HostCounters] = []
    info: dict[str, dict[str, Any]] = {}
    closers: list[Any] = []
    try:
        for name, roles in hosts.items():
            if name == LOCAL:
                share = prepare_share(config, LOCAL, roles, None, addresses, config.senders.count, root)
                shares[name] = share.to_dict()
                groups.append(LocalGroup(share.specs))
                scope = collectors.Scope(None, (share.device,),
                                         (config.target.port,) if "receiver" in roles else ())
                counters, close = local_counters(name, [scope], collectors.device_drivers([scope]))
                closers.append(close)
                parts.append(counters)
                info[name] = {"before": metadata.host(root)}
                continue
            spec = config.host(name)
            session = sessions[name] = HostSession(spec)
            hello = session.connect()
            session.require(needed_capabilities(config, spec))
            reply = session.request("prepare", timeout_s=120, config=agent_config(config), host=name,
                                    roles=list(roles), netns=spec.netns, addresses=addresses,
                                    n_senders=config.senders.count)
            shares[name] = reply["share"]
            groups.append(RemoteGroup(session, reply["share"]["specs"]))
            drivers = {(ns, dev): d for ns, dev, d in reply["drivers"]}
            parts.append(remote_counters(session, drivers))
            info[name] = {"ssh": spec.to_dict(), "hello": hello, "before": reply["meta"]}
        for share in shares.values():
            warnings += share["notes"]
        if notice is not None:
            for line in warnings:
                notice(line)
        recv = shares[config.receivers.host]
        sampler = None
        if config.collect.enabled:
            sampler = HostsSampler(parts, (config.senders.host, shares[config.senders.host]["netns"]),
                                   (config.receivers.host, recv["netns"]), recv["device"])
        local_cpus = [w["cpu"] for w in shares[LOCAL]["plan"]["workers"]] if LOCAL in shares else []
        with selfpin.off_worker_cpus(local_cpus) as orchestrator:
            outcome = Trial(config, groups=groups, sampler=sampler, status=status).run()
    finally:
        for session in sessions.values():
            session.close()
        for close in closers:
            close()
    for g in groups:
        info[g.host]["after"] = getattr(g, "meta_after", None) or (
            metadata.host(root) if g.host == LOCAL else None)
    plan = {"hosts": {n: s["plan"] for n, s in shares.items()},
            "workers": [{**w, "host": n} for n, s in shares.items() for w in s["plan"]["workers"]]}
    topology = {n: s["topology"] for n, s in shares.items()}
    hosts_info = {n: {**info[n], "roles": list(hosts[n]), "checks": shares[n]["checks"],
                      "device": shares[n]["device"], "netns": shares[n]["netns"],
                      **({} if n == LOCAL else {"agent": shares[n].get("agent")})}
                  for n in hosts}
    report: RunReport = build_report(
        config, outcome, plan=plan, topology=topology, hosts=hosts_info, warnings=warnings,
        sampler=sampler, lab_info=None, orchestrator=orchestrator,
        checks=shares[config.receivers.host]["checks"].get("checks", []))
    if out is not None:
        save(report, out, csv)
    return report
