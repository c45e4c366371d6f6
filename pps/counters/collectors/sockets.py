"""Per-socket drops of the run's UDP sockets: the `drops` column of /proc/net/udp and udp6.

A socket's drops (sk_drops) counts every datagram the kernel discarded for it, mostly a full
receive buffer, so it overlaps UdpRcvbufErrors: the ledger shows it but never adds it.
Each socket is one series: device = "udp:PORT:INODE" (or "udp6:..."), names drops, rx_queue.
"""

from __future__ import annotations

from collections.abc import Collection

from pps.counters.collectors.base import Reading


def parse(text: str, proto: str = "udp", ports: Collection[int] = (),
          inodes: Collection[int] = ()) -> list[Reading]:
    out: list[Reading] = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 13:
            continue
        port = int(f[1].rpartition(":")[2], 16)
        inode = int(f[9])
        if ports and port not in ports:
            continue
        if inodes and inode not in inodes:
            continue
        tx_queue, _, rx_queue = f[4].partition(":")
        device = f"{proto}:{port}:{inode}"
        out.append(Reading("socket", "drops", int(f[12]), device=device))
        out.append(Reading("socket", "rx_queue", int(rx_queue, 16), device=device))
    return out


def read_here(ports: Collection[int] = (), inodes: Collection[int] = ()) -> list[Reading]:
    out: list[Reading] = []
    for proto in ("udp", "udp6"):
        try:
            with open(f"/proc/thread-self/net/{proto}") as f:
                out += parse(f.read(), proto, ports, inodes)
        except FileNotFoundError:
            if proto == "udp":  # udp6 is absent when IPv6 is off; that is no failure
                raise
    return out


def read(netns: str | None, ports: Collection[int] = (),
         inodes: Collection[int] = ()) -> list[Reading]:
    from pps.host.netns import call_in

    return call_in(netns, lambda: read_here(ports, inodes))
