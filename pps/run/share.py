"""One host's share of a run across hosts: plan its workers and check it can run them.

The same function serves this host and, through `pps agent`, every other one, so topology,
placement, checks and the busy-port test work per host with the code of a local run.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from pps.config.model import Config
from pps.errors import EnvironmentNotAble
from pps.host import netns as _netns
from pps.host.sockets import ensure_port_free
from pps.host.topology import Topology, read_topology
from pps.plan.placement import Plan, plan_workers
from pps.run.trial import WorkerSpec, worker_specs


@dataclass
class HostShare:
    """What one host runs, as planned there."""

    host: str
    roles: tuple[str, ...]
    netns: str | None
    device: str | None  # the device its counters are read on (in netns when one is set)
    topology: Topology
    plan: Plan
    specs: list[dict[str, Any]]
    checks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What an agent sends back; `from_dict` is not needed: the local side keeps dicts."""
        return {"host": self.host, "roles": list(self.roles), "netns": self.netns,
                "device": self.device, "topology": self.topology.to_dict(),
                "plan": self.plan.to_dict(), "specs": self.specs, "checks": self.checks,
                "notes": self.notes}


def owning_device(address: str) -> str | None:
    """The device that holds `address` in the calling thread's namespace."""
    from pyroute2 import IPRoute

    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    with IPRoute() as ipr:
        for msg in ipr.get_addr(family=family):
            if msg.get_attr("IFA_ADDRESS") == address or msg.get_attr("IFA_LOCAL") == address:
                return ipr.get_links(msg["index"])[0].get_attr("IFLA_IFNAME")
    return None


def counters_device(config: Config, roles: tuple[str, ...], netns: str | None, host: str) -> str:
    """Receivers: the device holding the target address (it must be one of this host's).
    Senders only: the device the route to the target leaves by."""
    from pps.run.pipeline import route_device

    address = config.target.address
    if "receiver" in roles and not ipaddress.ip_address(address).is_loopback:
        device = _netns.call_in(netns, lambda: owning_device(address))
        if device is None:
            where = f"namespace {netns} on host {host}" if netns else f"host {host}"
            raise EnvironmentNotAble(
                f"target.address {address} is not an address of {where}, where the receivers run; "
                "set target.address to the receivers' address")
        return device
    return _netns.call_in(netns, lambda: route_device(address))


def prepare_share(config: Config, host: str, roles: tuple[str, ...], netns: str | None,
                  addresses: dict[str, Any], n_senders: int, root: str = "/") -> HostShare:
    """Plan `roles` on this machine and check it can run them; nothing is started."""
    from pps.host import checks as host_checks
    from pps.host import offload

    offload.probe_kernel_support(config)
    device = counters_device(config, roles, netns, host)
    # A device inside another namespace is not in this namespace's sysfs: plan on CPUs only.
    topology = read_topology(root, devices=[] if netns else [device])
    topology = topology.restricted(os.sched_getaffinity(0))
    plan = plan_workers(topology, config, None if netns else device, roles)
    notes = list(plan.notes)
    if netns:
        notes.append(f"host {host}: workers run in namespace {netns}; placement aligns with CPUs only")
    results = host_checks.checks_for_run(config, topology, plan, plan.device, root)
    failures = host_checks.required_failures(results, config.run.require_checks)
    if failures:
        raise EnvironmentNotAble(f"host {host}: run.require_checks failed: " + "; ".join(failures))
    notes += [f"host {host}: check {r.name}: {r.seen}" for r in host_checks.warnings(results)]
    if "receiver" in roles:
        _netns.call_in(netns, lambda: ensure_port_free(addresses["bind"], config.target.port))
    workers = [WorkerSpec(role=w.role, index=w.index, cpu=w.cpu, netns=netns, host=host)
               for w in plan.workers]
    specs = worker_specs(config, workers, addresses, n_senders)
    return HostShare(host, roles, netns, device, topology, plan, specs,
                     host_checks.results_json(results), notes)
