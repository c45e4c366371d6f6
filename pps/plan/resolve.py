"""Which device and which CPUs: the one resolver, for `run`, `check`, `search`, `sweep`, the
agent and `run --dry-run`.

A host's share of a run (its roles, and the namespace each role runs in) comes down to:
- the device its counters are read on, and whose RX queues queue-aligned placement uses:
  `target.device` wherever it is set; otherwise, for a host that only receives, the device
  holding the target address (traffic arrives from elsewhere); otherwise the device the
  route to the target leaves by (lo, when senders and receivers share a host);
- the CPUs its workers may use: the topology read under `root`, restricted on a live host
  to the CPUs this process may run on (taskset, cpuset);
- the plan of its workers on those CPUs.

A device inside another namespace (the lab's receiving veth, a host's `netns`) is not in
this namespace's sysfs: it is read through a sysfs mounted in that namespace, so its queues
and their RPS CPUs are known there too, and `local`, `sibling` and `remote` work in the lab.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, replace

from pps.config.model import Config
from pps.errors import EnvironmentNotAble
from pps.host import netns as _netns
from pps.host.topology import Device, Topology, read_device, read_topology
from pps.plan.placement import Plan, plan_workers

ROLES = ("sender", "receiver")


@dataclass(frozen=True)
class Resolved:
    """What one host's share runs on."""

    topology: Topology
    device: str | None     # None: no device (a captured tree with none named)
    device_netns: str | None
    plan: Plan


def is_live(root: str) -> bool:
    return os.path.realpath(root) == "/"


def route_device(address: str, netns: str | None = None) -> str:
    """The device the route to `address` leaves by (lo for loopback), in `netns`."""
    if ipaddress.ip_address(address).is_loopback:
        return "lo"

    def ask() -> str:
        from pyroute2 import IPRoute

        try:
            with IPRoute() as ipr:
                routes = ipr.route("get", dst=address)
                index = routes[0].get_attr("RTA_OIF")
                return ipr.get_links(index)[0].get_attr("IFLA_IFNAME")
        except Exception as exc:  # netlink says no route, or no such family
            raise EnvironmentNotAble(f"no route to {address}: {exc}") from None
    return _netns.call_in(netns, ask)


def owning_device(address: str, netns: str | None = None) -> str | None:
    """The device that holds `address` in `netns`, or None."""
    def ask() -> str | None:
        from pyroute2 import IPRoute

        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        with IPRoute() as ipr:
            for msg in ipr.get_addr(family=family):
                if address in (msg.get_attr("IFA_ADDRESS"), msg.get_attr("IFA_LOCAL")):
                    return ipr.get_links(msg["index"])[0].get_attr("IFLA_IFNAME")
        return None
    return _netns.call_in(netns, ask)


def share_device(config: Config, roles: tuple[str, ...], netns: dict[str, str | None],
                 host: str, lab_device: str | None = None) -> tuple[str, str | None]:
    """(device, the namespace it is in) for a host running `roles`, each in its namespace."""
    receive_ns = netns.get("receiver")
    if lab_device is not None:
        return lab_device, receive_ns
    if config.target.device:
        return config.target.device, receive_ns if "receiver" in roles else netns.get("sender")
    address = config.target.address
    only_receives = "sender" not in roles
    if only_receives and not ipaddress.ip_address(address).is_loopback:
        # Receivers on several hosts: each holds one of the target addresses.
        for candidate in config.target.all_addresses:
            device = owning_device(candidate, receive_ns)
            if device is not None:
                return device, receive_ns
        where = f"namespace {receive_ns} on host {host}" if receive_ns else f"host {host}"
        raise EnvironmentNotAble(
            f"target.address {address} is not an address of {where}, where the receivers run; "
            "set target.address to the receivers' address")
    ns = receive_ns if "receiver" in roles else netns.get("sender")
    return route_device(address, ns), ns


def device_in(netns: str | None, device: str) -> Device:
    """A device read in its own namespace's sysfs (queues, their RPS and IRQ CPUs)."""
    if netns is None:
        return read_device("/", device)
    from pps.lab.kernel import private_sysfs

    return _netns.call_in(netns, lambda: private_sysfs(lambda: read_device("/", device)))


def read_share(config: Config, roles: tuple[str, ...] = ROLES, *, root: str = "/",
               netns: dict[str, str | None] | None = None, host: str = "local",
               lab_device: str | None = None, device: str | None = None,
               cpus_only: bool = False) -> tuple[Topology, str | None, str | None]:
    """(topology, device, the device's namespace) of one host's share. `device` overrides
    the choice (check --dev); on a captured tree (`root` not "/") no route is asked: the
    device is target.device, lo for a loopback target, or none; `cpus_only` reads no device
    (the lab of a dry run, which makes no lab)."""
    device_ns = None
    if cpus_only:
        device = None
    elif device is None and is_live(root):
        device, device_ns = share_device(config, roles, netns or {}, host, lab_device)
    elif device is None:
        loopback = ipaddress.ip_address(config.target.address).is_loopback
        device = config.target.device or ("lo" if loopback else None)
    topology = read_topology(root, devices=[] if device_ns or not device else [device])
    if device_ns is not None:  # the device lives in another namespace: read it there
        topology = replace(topology, devices={device: device_in(device_ns, device)})
    if is_live(root):
        topology = topology.restricted(os.sched_getaffinity(0))
    return topology, device, device_ns


def resolve(config: Config, roles: tuple[str, ...] = ROLES, *, root: str = "/",
            netns: dict[str, str | None] | None = None, host: str = "local",
            lab_device: str | None = None, device: str | None = None,
            cpus_only: bool = False) -> Resolved:
    """Topology, device and plan of one host's share (see read_share)."""
    topology, device, device_ns = read_share(config, roles, root=root, netns=netns, host=host,
                                             lab_device=lab_device, device=device,
                                             cpus_only=cpus_only)
    return Resolved(topology, device, device_ns, plan_workers(topology, config, device, roles))
