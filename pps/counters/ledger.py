"""The drop ledger: every packet the senders handed to the kernel, accounted for by layer.

    sent = received + send + nic + backlog + ip + udp + unaccounted

Each term is a counter total over the run window (pps.counters.table.totals), named by its source.
Only counters that can concern the run's packets are taken: send-side ones in the sender's
namespace, receive-side ones in the receiver's (on loopback both are the root namespace).
Counters that count the same packet twice are counted once:
  * UdpInErrors already includes RcvbufErrors, MemErrors and InCsumErrors (net/ipv4/udp.c
    increments both), so only its remainder is added, as "UdpInErrors(other)";
  * softnet flow_limit_count is a subset of softnet dropped (enqueue_to_backlog), shown only;
  * a socket's drops column repeats its RcvbufErrors, shown only;
  * a device's NIC drops come from the driver map when its driver is known, else from link
    rx_missed_errors + rx_fifo_errors: never both (ixgbe shows the same counter in each);
  * link rx_dropped is never added: enqueue_to_backlog bumps it together with softnet dropped;
  * a veth's tx_dropped and softnet dropped count the same backlog drop on the non-NAPI veth
    path, so the larger of the two is taken.
A counter shared with other traffic (the root namespace's, the global softnet_stat) is flagged.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field

import pandas as pd

from pps.counters.collectors.nic import NIC_DROPS

# veth counts an XDP redirect that fails (the XSK had no room) in its rx_queue_N_drops: the
# same packets as the socket's rx_dropped + rx_ring_full (equal, packet for packet, in the
# lab with xdp.ring = 64: 313,610 each).
XSK_IN_DRIVER_DROPS = frozenset({"veth"})
# In the order a packet meets them; xdp only when receivers.socket = xdp.
LAYERS = ("send", "nic", "xdp", "backlog", "ip", "udp")

# (source, UDP send drops, IP output discards): for a UDP datagram the kernel counts one
# failed transmit in both (net/ipv4/ip_output.c ip_send_skb, net/ipv4/udp.c udp_send_skb),
# so only the UDP one is added; IP's is shown.
SEND_SNMP = (("snmp", "UdpSndbufErrors", "IpOutDiscards"),
             ("snmp6", "Udp6SndbufErrors", "Ip6OutDiscards"))
IP_RECV = (("snmp", "IpInDiscards"), ("snmp", "IpInHdrErrors"), ("snmp", "IpInAddrErrors"),
           ("netstat", "IpExtInNoRoutes"), ("netstat", "IpExtInTruncatedPkts"),
           ("netstat", "IpExtInCsumErrors"), ("snmp6", "Ip6InDiscards"),
           ("snmp6", "Ip6InHdrErrors"), ("snmp6", "Ip6InAddrErrors"),
           ("snmp6", "Ip6InNoRoutes"), ("snmp6", "Ip6InTruncatedPkts"))
# (source, prefix): the UDP receive counters and the parts of InErrors (Udp6 has no MemErrors
# before Linux 5.x; a missing counter totals 0).
UDP_RECV = (("snmp", "Udp"), ("snmp6", "Udp6"))
UDP_PARTS = ("RcvbufErrors", "MemErrors", "InCsumErrors")
GENERIC_NIC = ("rx_missed_errors", "rx_fifo_errors")


@dataclass(frozen=True)
class Row:
    layer: str
    source: str
    counter: str
    count: int
    netns: str | None = None
    device: str | None = None
    shared: bool = False
    counted: bool = True  # False: shown for information, already inside another row
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.source}.{self.counter}"


@dataclass
class Ledger:
    sent: int
    received: int
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return sum(r.count for r in self.rows if r.counted)

    @property
    def unaccounted(self) -> int:
        return self.sent - self.received - self.dropped

    @property
    def unaccounted_ratio(self) -> float:
        return self.unaccounted / self.sent if self.sent else 0.0

    def layers(self) -> dict[str, int]:
        out = dict.fromkeys(LAYERS, 0)
        for r in self.rows:
            if r.counted:
                out[r.layer] += r.count
        return out

    def drops(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            if r.counted:
                out[r.key] = out.get(r.key, 0) + r.count
        return out

    def biggest(self) -> Row | None:
        rows = [r for r in self.rows if r.counted and r.count > 0]
        return max(rows, key=lambda r: r.count) if rows else None

    def to_dict(self) -> dict:
        return {
            "sent": self.sent, "received": self.received, "drops": self.drops(),
            "layers": self.layers(), "unaccounted": self.unaccounted,
            "unaccounted_ratio": self.unaccounted_ratio,
            "shared": sorted({r.key for r in self.rows if r.shared and r.counted}),
            "notes": list(self.notes),
        }

    def format_text(self) -> str:
        """A short table: non-zero drops, biggest first, the shared ones flagged."""
        pct = (lambda n: f"{100 * n / self.sent:6.2f}%") if self.sent else (lambda n: "     -")
        lost = self.sent - self.received
        lines = [f"drop ledger: sent {self.sent:,}  received {self.received:,}  "
                 f"lost {lost:,} ({pct(lost).strip()})",
                 f"  {'layer':<8} {'counter':<34} {'count':>12} {'of sent':>8}"]
        shown = sorted((r for r in self.rows if r.counted and r.count),
                       key=lambda r: -r.count)
        for r in shown:
            where = f" [{r.device}]" if r.device else ""
            flag = "  (shared with other traffic)" if r.shared else ""
            lines.append(f"  {r.layer:<8} {(r.key + where):<34} {r.count:>12,} {pct(r.count):>8}{flag}")
        if not shown:
            lines.append("  (no drop counter moved)")
        lines.append(f"  {'':<8} {'unaccounted':<34} {self.unaccounted:>12,} "
                     f"{pct(self.unaccounted):>8}")
        top = self.biggest()
        if top is not None:
            lines.append(f"biggest drop: {top.key} in the {top.layer} layer, {top.count:,} "
                         f"packets ({pct(top.count).strip()} of sent)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _sel(tot: pd.DataFrame, netns: str | None, source: str | None = None) -> pd.DataFrame:
    ns = tot["netns"].isna() if netns is None else tot["netns"] == netns
    df = tot[ns]
    return df if source is None else df[df["source"] == source]


def _value(tot: pd.DataFrame, netns: str | None, source: str, name: str,
           device: str | None = None) -> int | None:
    """Total of a counter (summed over queues/CPUs); None when the series does not exist."""
    df = _sel(tot, netns, source)
    df = df[df["name"] == name]
    if device is not None:
        df = df[df["device"] == device]
    return None if df.empty else int(df["delta"].sum())


def _labels(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _adder(led: Ledger):
    def add(layer: str, source: str, counter: str, count: int | None, netns: str | None,
            device: str | None = None, is_shared: bool = False, counted: bool = True,
            note: str = "") -> None:
        if count is not None:
            led.rows.append(Row(layer, source, counter, count, netns, device, is_shared,
                                counted, note))
    return add


def _send_rows(totals: pd.DataFrame, send_netns: str | None, devices: Mapping, tx_share: bool,
               led: Ledger) -> int:
    """The send side's rows, read in one senders' namespace; returns its veth tx drops."""
    add = _adder(led)
    link_tx = _sel(totals, send_netns, "link")
    veth_tx = 0
    for dev in sorted(set(link_tx["device"].dropna())):
        n = _value(totals, send_netns, "link", "tx_dropped", dev)
        if devices.get((send_netns, dev)) == "veth":
            veth_tx += n or 0
            add("send", "link", "tx_dropped", n, send_netns, dev, tx_share, counted=False,
                note="veth: same drop as softnet dropped; see backlog row")
        else:
            add("send", "link", "tx_dropped", n, send_netns, dev, tx_share)
    for source, sndbuf, outdiscards in SEND_SNMP:
        n = _value(totals, send_netns, source, sndbuf)
        if n is not None and veth_tx and source == "snmp":
            # veth_xmit hands a backlog drop back as NET_XMIT_DROP, so the sender counts it
            # too; it died in the backlog, and is counted there.
            add("send", source, sndbuf, max(n - veth_tx, 0), send_netns, is_shared=tx_share,
                note="minus the veth backlog drops it also counted")
        else:
            add("send", source, sndbuf, n, send_netns, is_shared=tx_share)
        add("send", source, outdiscards, _value(totals, send_netns, source, outdiscards),
            send_netns, is_shared=tx_share, counted=False,
            note="for UDP the same event as SndbufErrors (ip_send_skb and udp_send_skb)")

    return veth_tx


def _xsk_rows(xsk: Mapping[str, int], netns: str | None, led: Ledger) -> None:
    """Packets the XDP program steered to an AF_XDP socket that had no room for them."""
    add = _adder(led)
    add("xdp", "xsk", "rx_dropped", xsk.get("rx_dropped"), netns,
        note="no free frame in the fill ring, or a frame too large")
    add("xdp", "xsk", "rx_ring_full", xsk.get("rx_ring_full"), netns,
        note="the RX ring was full: the receiver fell behind")
    add("xdp", "xsk", "rx_fill_ring_empty_descs", xsk.get("rx_fill_ring_empty_descs"), netns,
        counted=False, note="times the fill ring was found empty; its drops are in rx_dropped")


def _receive_rows(totals: pd.DataFrame, recv_netns: str | None, recv_host: str | None,
                  devices: Mapping, rx_share: bool, veth_tx: int, led: Ledger,
                  xsk_drops: int = 0) -> None:
    """NIC, backlog, IP and UDP rows of one receivers' namespace (veth_tx: the senders'
    veth drops, which are backlog drops on the receiving side; xsk_drops: packets the
    AF_XDP sockets had no room for, already in the xdp layer)."""
    add = _adder(led)
    _nic_rows(led, totals, recv_netns, devices, rx_share, add, xsk_drops)

    softnet = _value(totals, recv_host, "softnet", "dropped")
    if softnet is not None or veth_tx:
        count = max(softnet or 0, veth_tx)
        note = "max of softnet dropped and veth tx_dropped" if veth_tx else ""
        add("backlog", "softnet", "dropped", count, recv_host, is_shared=True, note=note)
    add("backlog", "softnet", "flow_limit_count", _value(totals, recv_host, "softnet",
        "flow_limit_count"), recv_host, is_shared=True, counted=False, note="included in dropped")

    for source, name in IP_RECV:
        add("ip", source, name, _value(totals, recv_netns, source, name), recv_netns,
            is_shared=rx_share)
    for source, prefix in UDP_RECV:
        add("udp", source, prefix + "NoPorts", _value(totals, recv_netns, source,
            prefix + "NoPorts"), recv_netns, is_shared=rx_share)
        parts = 0
        for part in UDP_PARTS:
            n = _value(totals, recv_netns, source, prefix + part)
            parts += n or 0
            add("udp", source, prefix + part, n, recv_netns, is_shared=rx_share)
        inerr = _value(totals, recv_netns, source, prefix + "InErrors")
        if inerr is not None:
            add("udp", source, prefix + "InErrors(other)", max(inerr - parts, 0), recv_netns,
                is_shared=rx_share, note="InErrors minus RcvbufErrors, MemErrors, InCsumErrors")
    socks = _sel(totals, recv_netns, "socket")
    socks = socks[socks["name"] == "drops"]
    if not socks.empty:
        add("udp", "socket", "drops", int(socks["delta"].sum()), recv_netns, counted=False,
            note="the sockets' own drop count; inside the Udp rows")



def build_ledger(sent: int, received: int, totals: pd.DataFrame,
                 send_netns: str | None | Sequence[str | None],
                 recv_netns: str | None | Sequence[str | None],
                 devices: Mapping[tuple[str | None, str], str] | None = None,
                 shared: Collection[str | None] = (None,),
                 recv_host: str | None | Sequence[str | None] = None,
                 xsk: Mapping[str, int] | None = None,
                 xsk_tx: Mapping[str, int] | None = None) -> Ledger:
    """The ledger of one run.

    totals: per-series totals over the run window (pps.counters.table.totals). devices:
    (netns, device) -> driver name, to pick the driver map's NIC drop counters (from
    pps.counters.collectors.device_drivers); a device not in it falls back to link counters.
    send_netns, recv_netns: the namespace label (or labels, when a role spans hosts) whose
    counters the senders' and the receivers' side are read from.
    shared: namespaces whose counters other traffic also moves (default: the root one).
    recv_host: the label (or labels, one per receiving host, in recv_netns's order) under
    which a receiving host's host-wide counters (softnet_stat) are filed: None on one host;
    the host's root label in a run across hosts.
    xsk: the AF_XDP receivers' XDP_STATISTICS, summed, when receivers.socket = xdp;
    xsk_tx: the AF_XDP senders' (senders.socket = xdp).
    """
    devices = devices or {}
    led = Ledger(sent, received)
    senders, receivers = _labels(send_netns), _labels(recv_netns)
    hosts = _labels(recv_host)
    hosts = hosts * len(receivers) if len(hosts) == 1 else hosts
    veth_tx = sum(_send_rows(totals, label, devices, label in shared, led) for label in senders)
    if xsk_tx is not None:
        add = _adder(led)
        add("send", "xsk", "tx_invalid_descs", xsk_tx.get("tx_invalid_descs"), senders[0],
            note="frames the kernel refused from the TX ring")
        add("send", "xsk", "tx_ring_empty_descs", xsk_tx.get("tx_ring_empty_descs"), senders[0],
            counted=False, note="times the TX ring was found empty: the sender, not the wire, "
                                "set the pace")
    xsk_drops = 0
    if xsk is not None:
        _xsk_rows(xsk, receivers[0], led)
        xsk_drops = (xsk.get("rx_dropped") or 0) + (xsk.get("rx_ring_full") or 0)
    for label, host in zip(receivers, hosts):
        _receive_rows(totals, label, host, devices, label in shared, veth_tx, led, xsk_drops)
    tx_share = any(label in shared for label in senders)
    rx_share = any(label in shared for label in receivers)

    if rx_share or tx_share:
        led.notes.append("root-namespace counters are shared with other traffic on this host")
    led.notes.append("softnet_stat is host-wide: its drops may include other traffic")
    resets = totals[totals["resets"] > 0] if "resets" in totals else totals.iloc[0:0]
    for _, r in resets.iterrows():
        led.notes.append(f"{r['source']}.{r['name']} reset {r['resets']} time(s) in the window; "
                         "counted from 0 (the value after the reset)")
    return led


def _nic_rows(led: Ledger, totals: pd.DataFrame, netns: str | None,
              devices: Mapping[tuple[str | None, str], str], is_shared: bool, add,
              xsk_drops: int = 0) -> None:
    """NIC drops of each receive-namespace device: driver map, or link counters as fallback.
    A driver that counts a failed XDP redirect as its own drop (XSK_IN_DRIVER_DROPS) has
    the AF_XDP sockets' drops taken out of that row: they are in the xdp layer."""
    ethtool = _sel(totals, netns, "ethtool")
    names = set(_sel(totals, netns, "link")["device"].dropna()) | set(ethtool["device"].dropna())
    for dev in sorted(names):
        driver = devices.get((netns, dev))
        groups = NIC_DROPS.get(driver, ()) if driver else ()
        have = set(ethtool.loc[ethtool["device"] == dev, "name"])
        used = False
        for group in groups:
            name = next((n for n in group if n in have), None)
            if name is not None:
                used = True
                n = _value(totals, netns, "ethtool", name, dev)
                if xsk_drops and n is not None and driver in XSK_IN_DRIVER_DROPS \
                        and group is groups[0]:
                    add("nic", "ethtool", name, max(n - xsk_drops, 0), netns, dev, is_shared,
                        note=f"{driver} driver map, minus the AF_XDP drops it also counted")
                    continue
                add("nic", "ethtool", name, n, netns, dev, is_shared, note=f"{driver} driver map")
        if used:
            continue
        for name in GENERIC_NIC:
            add("nic", "link", name, _value(totals, netns, "link", name, dev), netns, dev,
                is_shared)
        if driver is None and have:
            led.notes.append(f"{dev}: driver unknown, NIC drops taken from link stats only")
