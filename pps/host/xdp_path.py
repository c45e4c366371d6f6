"""Where AF_XDP frames go, as this host's kernel says: an AF_XDP sender builds whole
Ethernet frames, so it needs what the stack would otherwise work out for each packet (the
device the route leaves by, the source address, the next hop's MAC); a receiver needs the
device's index and its RX queue count, one AF_XDP socket per queue.

Everything is read over netlink in the role's namespace, before any worker starts. No ARP is
sent: a next hop with no neighbour entry is a clear error (the lab's entries are permanent).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from pps.errors import EnvironmentNotAble
from pps.host import netns as _netns

NUD_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE NOARP PERMANENT


@dataclass(frozen=True)
class SendPath:
    device: str
    ifindex: int
    tx_queues: int
    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "ifindex": self.ifindex, "tx_queues": self.tx_queues,
                "src_mac": self.src_mac, "dst_mac": self.dst_mac, "src_ip": self.src_ip,
                "dst_ip": self.dst_ip}


@dataclass(frozen=True)
class ReceivePath:
    device: str
    ifindex: int
    rx_queues: int


def send_path(destination: str, netns: str | None) -> SendPath:
    """The route, source address and next-hop MAC from `netns` to `destination` (IPv4)."""
    if ipaddress.ip_address(destination).version != 4:
        raise EnvironmentNotAble(f"AF_XDP frames are IPv4; {destination} is not")

    def ask() -> SendPath:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            try:
                route = ipr.route("get", dst=destination)[0]
            except Exception as exc:  # netlink: no route
                raise EnvironmentNotAble(f"no route to {destination}: {exc}") from None
            index = route.get_attr("RTA_OIF")
            link = ipr.get_links(index)[0]
            name = link.get_attr("IFLA_IFNAME")
            if name == "lo" or not link.get_attr("IFLA_ADDRESS"):
                raise EnvironmentNotAble(f"the route to {destination} leaves by {name}, which has "
                                         "no Ethernet address for AF_XDP frames")
            hop = route.get_attr("RTA_GATEWAY") or destination
            mac = _neighbour(ipr, index, hop)
            if mac is None:
                raise EnvironmentNotAble(
                    f"no neighbour entry for {hop} on {name}: an AF_XDP sender sends no ARP; "
                    f"reach {hop} once (ping) so the kernel learns its MAC")
            return SendPath(name, index, int(link.get_attr("IFLA_NUM_TX_QUEUES") or 1),
                            link.get_attr("IFLA_ADDRESS"), mac,
                            route.get_attr("RTA_PREFSRC"), destination)
    return _netns.call_in(netns, ask)


def _neighbour(ipr: Any, index: int, address: str) -> str | None:
    for entry in ipr.get_neighbours(ifindex=index, dst=address):
        if entry["state"] & NUD_VALID and entry.get_attr("NDA_LLADDR"):
            return entry.get_attr("NDA_LLADDR")
    return None


def receive_path(device: str, netns: str | None) -> ReceivePath:
    """The receiving device's index and RX queue count, in `netns`."""
    def ask() -> ReceivePath:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            links = ipr.link_lookup(ifname=device)
            if not links:
                raise EnvironmentNotAble(f"device {device} not found for the XDP program")
            link = ipr.get_links(links[0])[0]
            return ReceivePath(device, links[0], int(link.get_attr("IFLA_NUM_RX_QUEUES") or 1))
    return _netns.call_in(netns, ask)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))
