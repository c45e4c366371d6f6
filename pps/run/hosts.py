"""The hosts of a run, each behind one interface: prepare its share, drive its group of
workers, stream its counters, tell what it is, close.

- `LocalHost` is this machine. In the lab it is still this machine, with each role in the
  lab's namespace for it. `pps agent` serves a LocalHost to a remote caller.
- `RemoteHost` is another machine, whose agent is reached over SSH: the same calls, as
  requests (pps.run.remote).

The pipeline (pps.run.pipeline) sees only this interface, so a run here, in the lab and
across hosts is one run.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pps.config.hosts import LOCAL, HostSpec
from pps.config.model import Config
from pps.counters import collectors
from pps.counters.hosts import HostCounters, local_counters, remote_counters
from pps.errors import EnvironmentNotAble
from pps.host import metadata
from pps.host import netns as _netns
from pps.native_xsk import XdpProgram
from pps.run.group import LocalGroup
from pps.run.protocol import agent_config, needed_capabilities
from pps.run.remote import HostSession, RemoteGroup
from pps.run.share import HostShare, Seats, Wire, prepare_share, use_source_ports


class LocalHost:
    """This machine's share of a run. `netns` puts a role's workers in a namespace (the
    lab's, or a host's `netns`); `lab` is the RunLab whose receiving veth is the device."""

    def __init__(self, name: str = LOCAL, *, root: str = "/", lab: Any | None = None,
                 netns: str | None = None) -> None:
        self.name = name
        self.root = root
        self.lab = lab
        self.netns = ({"sender": lab.sender_ns, "receiver": lab.receiver_ns} if lab is not None
                      else {"sender": netns, "receiver": netns})
        self.share: HostShare | None = None
        self.group: LocalGroup | None = None
        self.xdp: XdpProgram | None = None
        self.counters: HostCounters | None = None
        self.info: dict[str, Any] = {}
        self._close_counters = None

    def connect(self, config: Config) -> None:
        """Nothing to reach: this host is here."""

    def prepare(self, config: Config, roles: tuple[str, ...], wire: Wire, seats: Seats,
                label: str | None = None) -> dict[str, Any]:
        lab_device = self.lab.receiver_dev if self.lab is not None else None
        share = prepare_share(config, self.name, roles, self.netns, wire, seats, root=self.root,
                              lab_device=lab_device, label=label)
        self.share = share
        self.xdp = attach_xdp(config, share.specs, self.netns.get("receiver"))
        self.group = LocalGroup(share.specs, host=self.name,
                                pass_fds=(self.xdp.map_fd,) if self.xdp else ())
        self.info = {"before": metadata.host(self.root)}
        return share.to_dict()

    def use_source_ports(self, ports: list[list[int | None]] | None) -> None:
        use_source_ports(self.share.specs, ports)

    def open_counters(self, config: Config,
                      sources: Collection[str] = collectors.SOURCES) -> HostCounters:
        """This host's counters, streamed here (pps.counters.stream), readers opened once."""
        scopes = self.scopes(config)
        self.counters, self._close_counters = local_counters(
            self.name, scopes, collectors.device_drivers(scopes), sources)
        return self.counters

    def scopes(self, config: Config) -> list[collectors.Scope]:
        share, port = self.share, (config.target.port,)
        if self.lab is not None:
            return [collectors.Scope(self.lab.sender_ns, (self.lab.sender_dev,)),
                    collectors.Scope(self.lab.receiver_ns, (self.lab.receiver_dev,), port)]
        device = share.device or "lo"
        ns = share.device_netns if share.device_netns else share.netns.get(share.roles[0])
        return [collectors.Scope(ns, (device,), port if "receiver" in share.roles else ())]

    def finish(self) -> None:
        self.info["after"] = metadata.host(self.root)

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
        if self.xdp is not None:  # after the receivers: their sockets leave the map first
            self.xdp.close()
        if self._close_counters is not None:
            self._close_counters()


def attach_xdp(config: Config, specs: list[dict[str, Any]], netns: str | None) -> XdpProgram | None:
    """pps's XDP program on the receiving device, when receivers.socket = xdp: the run's
    port into the XSKMAP, whose descriptor every receiver inherits. It is held by this
    process through a BPF link, so it goes when the host closes or this process dies."""
    receivers = [w for w in specs if w["role"] == "receiver" and "xdp" in w]
    if not receivers:
        return None
    first = receivers[0]["xdp"]
    generic = first["attach"] == "generic"
    try:
        program = _netns.call_in(netns, lambda: XdpProgram(
            first["ifindex"], config.target.port, first["queues"], generic))
    except OSError as exc:
        raise EnvironmentNotAble(f"{first['device']}: {exc.strerror or exc}"
                                 + ("" if generic else "; xdp.attach = \"generic\" works on any device")) from None
    for spec in receivers:
        spec["xdp"]["map_fd"] = program.map_fd
    return program


class RemoteHost:
    """Another machine, served by its agent over SSH."""

    def __init__(self, spec: HostSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self.session = HostSession(spec)
        self.share: dict[str, Any] | None = None
        self.group: RemoteGroup | None = None
        self.counters: HostCounters | None = None
        self.drivers: dict[tuple[str | None, str], str] = {}
        self.info: dict[str, Any] = {"ssh": spec.to_dict()}

    def connect(self, config: Config) -> None:
        """Start its agent and check it (version, the capabilities this run needs)."""
        self.info["hello"] = self.session.connect()
        self.session.require(needed_capabilities(config, self.spec))

    def prepare(self, config: Config, roles: tuple[str, ...], wire: Wire, seats: Seats,
                label: str | None = None) -> dict[str, Any]:
        reply = self.session.request(
            "prepare", timeout_s=120, config=agent_config(config), host=self.name,
            roles=list(roles), netns=self.spec.netns, wire=wire.to_dict(),
            seats={"sender_base": seats.sender_base, "receiver_base": seats.receiver_base,
                   "n_senders": seats.n_senders})
        self.share = reply["share"]
        self.group = RemoteGroup(self.session, self.share["specs"])
        self.drivers = {(ns, dev): d for ns, dev, d in reply["drivers"]}
        self.info["before"] = reply["meta"]
        return self.share

    def open_counters(self, config: Config,
                      sources: Collection[str] = collectors.SOURCES) -> HostCounters:
        """Its agent streams every source there; `sources` choose only this host's."""
        self.counters = remote_counters(self.session, self.drivers)
        return self.counters

    def finish(self) -> None:
        self.info["after"] = self.group.meta_after if self.group is not None else None

    def close(self) -> None:
        self.session.close()
