"""One host's share of a run: plan its workers and check it can run them.

Every host prepares its share with this function: this host, the lab (this host, with each
role in its namespace) and, through `pps agent`, every other host. So topology, device,
placement, checks, the kernel probe and the busy-port test follow one set of rules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from pps.config.model import Config
from pps.errors import EnvironmentNotAble
from pps.host import checks as host_checks
from pps.host import netns as _netns
from pps.host import offload, xdp_path
from pps.host.sockets import ensure_port_free
from pps.host.topology import Topology
from pps.plan.placement import Plan
from pps.plan.resolve import resolve
from pps.run.trial import WorkerSpec, worker_specs


@dataclass(frozen=True)
class Wire:
    """What every host's workers share about the wire: where senders send, where receivers
    listen, the run's random key (from which flow ids are derived), and the source ports
    pps.plan.flowpick chose (None: ephemeral)."""

    destinations: tuple[str, ...]
    bind: str
    run_key: int
    source_ports: list[list[int | None]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"destinations": list(self.destinations), "bind": self.bind,
                "run_key": self.run_key, "source_ports": self.source_ports}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Wire:
        return cls(tuple(d["destinations"]), d["bind"], int(d["run_key"]), d.get("source_ports"))


@dataclass(frozen=True)
class Seats:
    """Where this host's workers sit among the run's: their first index of each role, and
    how many senders the whole run has (flow ids and the rate are split over all of them)."""

    sender_base: int = 0
    receiver_base: int = 0
    n_senders: int = 0


@dataclass
class HostShare:
    """What one host runs, as planned there."""

    host: str
    roles: tuple[str, ...]
    netns: dict[str, str | None]  # role -> the namespace its workers run in
    device: str | None  # the device its counters are read on
    device_netns: str | None  # ... and the namespace that device is in
    topology: Topology
    plan: Plan
    specs: list[dict[str, Any]]
    checks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """What an agent sends back; the caller keeps it as a dict."""
        return {"host": self.host, "roles": list(self.roles), "netns": self.netns,
                "device": self.device, "device_netns": self.device_netns,
                "topology": self.topology.to_dict(), "plan": self.plan.to_dict(),
                "specs": self.specs, "checks": self.checks, "notes": self.notes}


def prepare_share(config: Config, host: str, roles: tuple[str, ...], netns: dict[str, str | None],
                  wire: Wire, seats: Seats, *, root: str = "/", lab_device: str | None = None,
                  label: str | None = None) -> HostShare:
    """Plan `roles` on this machine and check it can run them; nothing is started. `label`
    prefixes this host's notes (a run across hosts says which host a note is about)."""
    offload.probe_kernel_support(config)  # no UDP_SEGMENT/UDP_GRO/SO_BUSY_POLL: exit 3
    r = resolve(config, roles, root=root, netns=netns, host=host, lab_device=lab_device)
    say = (lambda text: f"host {label}: {text}") if label else (lambda text: text)
    notes = [say(n) for n in r.plan.notes]
    # A device in another namespace is not in this sysfs: the host checks skip it.
    checked_device = None if r.device_netns else r.plan.device
    results = host_checks.checks_for_run(config, r.topology, r.plan, checked_device, root)
    failures = host_checks.required_failures(results, config.run.require_checks)
    if failures:
        raise EnvironmentNotAble(say("run.require_checks failed: " + "; ".join(failures)))
    check_notes = [f"check {c.name}: {c.seen}" + (f" (fix: {c.advice})" if c.advice else "")
                   for c in host_checks.warnings(results)]
    if "receiver" in roles:
        _netns.call_in(netns.get("receiver"),
                       lambda: ensure_port_free(wire.bind, config.target.port))
    # Indices count across hosts, so flow ids and receivers' histograms stay unique.
    base = {"sender": seats.sender_base, "receiver": seats.receiver_base}
    plan = replace(r.plan, workers=tuple(replace(w, index=base[w.role] + w.index)
                                         for w in r.plan.workers))
    workers = [WorkerSpec(role=w.role, index=w.index, cpu=w.cpu, netns=netns.get(w.role),
                          host=host) for w in plan.workers]
    specs = worker_specs(config, workers, wire.to_dict(), seats.n_senders or None)
    notes += [say(n) for n in xdp_paths(config, roles, netns, r.device, wire, specs)]
    return HostShare(host, roles, dict(netns), r.device, r.device_netns, r.topology, plan,
                     specs, host_checks.results_json(results), notes + [say(n) for n in check_notes])


def xdp_paths(config: Config, roles: tuple[str, ...], netns: dict[str, str | None],
              device: str | None, wire: Wire, specs: list[dict[str, Any]]) -> list[str]:
    """What AF_XDP workers need from this host's kernel, into their specs: a sender's route,
    MACs and TX queue; a receiver's device and RX queue. Returns notes for the run."""
    s, r, x = config.senders, config.receivers, config.xdp
    notes = []
    common = {"ring": x.ring, "zerocopy": x.zerocopy}
    if "sender" in roles and s.socket == "xdp":
        path = xdp_path.send_path(wire.destinations[0], netns.get("sender"))
        _zerocopy_or_refuse(x.zerocopy, path.device, path.ifindex, netns.get("sender"))
        for spec in (w for w in specs if w["role"] == "sender"):
            spec["xdp"] = {**common, **path.to_dict(), "queue": spec["index"] % path.tx_queues}
    if "receiver" in roles and r.socket == "xdp":
        path = xdp_path.receive_path(device, netns.get("receiver"))
        mine = [w for w in specs if w["role"] == "receiver"]
        if len(mine) > path.rx_queues:
            raise EnvironmentNotAble(
                f"receivers.socket = xdp takes one receiver per RX queue, and {path.device} has "
                f"{path.rx_queues}; set receivers.count to {path.rx_queues} or fewer")
        if len(mine) < path.rx_queues:
            notes.append(f"{path.device} has {path.rx_queues} RX queues and {len(mine)} AF_XDP "
                         "receivers: packets on the other queues go to the stack, where no "
                         "socket listens (NoPorts)")
        _zerocopy_or_refuse(x.zerocopy, path.device, path.ifindex, netns.get("receiver"))
        for spec in mine:
            spec["xdp"] = {**common, "device": path.device, "ifindex": path.ifindex,
                           "queue": spec["index"] % path.rx_queues, "queues": path.rx_queues,
                           "attach": x.attach}
    return notes


def _zerocopy_or_refuse(wanted: str, device: str, ifindex: int, netns: str | None) -> None:
    """xdp.zerocopy = on where the driver has no zero-copy: exit 3 before anything starts
    (a worker's bind would fail mid-start otherwise). Tried on queue 0 with a small socket."""
    if wanted != "on":
        return
    from pps.native_xsk import Xsk, XskParams

    def probe() -> None:
        with Xsk(XskParams(ifindex, 0, ring=64, zerocopy="on", tx=True)):
            pass
    try:
        _netns.call_in(netns, probe)
    except OSError as exc:
        raise EnvironmentNotAble(f"xdp.zerocopy = on: {device} takes no zero-copy AF_XDP socket "
                                 f"({os.strerror(exc.errno) if exc.errno else exc}); "
                                 "use xdp.zerocopy = auto, which falls back to copy mode") from None


def use_source_ports(specs: list[dict[str, Any]], ports: list[list[int | None]] | None) -> None:
    """The source ports pps.plan.flowpick chose, per sender index and flow, into the specs."""
    for spec in specs:
        if spec["role"] != "sender":
            continue
        mine = ports[spec["index"]] if ports and spec["index"] < len(ports) else None
        for f, flow in enumerate(spec["flows"]):
            flow["source_port"] = mine[f] if mine else None
