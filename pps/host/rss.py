"""Predict the RX queue a NIC puts a flow on: the Toeplitz RSS hash of its tuple, looked up
in the indirection table, with the key and table read from the driver (ETHTOOL_GRSSH).

The hash is the one Microsoft specifies for RSS and that NICs implement in hardware: for
every set bit of the input, most significant first, XOR in the 32 bits of the key that
start at that bit's position. Tested against Microsoft's published verification vectors
("Verifying the RSS Hash Calculation", key 6d5a56da...). The input is the fields the
driver hashes for the flow type, in a fixed order: source address, destination address,
source port, destination port (ethtool's rx-flow-hash letters s, d, f, n).

lo and veth have no RSS key and no indirection table: `read_rss` returns None there, and
the caller says so rather than guessing.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Any

from pps.host import ethtool

ETHTOOL_GRSSH = 0x46
UDP_V6_FLOW = 0x06
# struct ethtool_rxfh (include/uapi/linux/ethtool.h): cmd, rss_context, indir_size, key_size,
# hfunc (u8), input_xfrm (u8), rsvd8[2], rsvd32, then rss_config[]: indir_size u32 queue
# numbers followed by key_size key bytes. Sizes 0 in the request ask for the sizes only.
RXFH = struct.Struct("=IIIIBB2xI")
ETH_RSS_HASH_TOP = 1 << 0  # Toeplitz; XOR is 1 << 1, CRC32 1 << 2
HFUNC_NAMES = {1 << 0: "toeplitz", 1 << 1: "xor", 1 << 2: "crc32"}


def toeplitz(key: bytes, data: bytes) -> int:
    """The 32-bit Toeplitz hash of `data` under `key` (needs len(key) >= len(data) + 4)."""
    if len(key) < len(data) + 4:
        raise ValueError(f"a {len(key)}-byte RSS key is too short for {len(data)} bytes of input")
    k = int.from_bytes(key, "big")
    width = len(key) * 8
    result = 0
    for i, byte in enumerate(data):
        for bit in range(8):
            if byte & (0x80 >> bit):
                pos = i * 8 + bit
                result ^= (k >> (width - 32 - pos)) & 0xFFFFFFFF
    return result


def hash_input(src: str, dst: str, sport: int, dport: int, fields: str = "sdfn") -> bytes:
    """The bytes a NIC hashes for a UDP/TCP packet, given ethtool's field letters."""
    parts = {"s": ipaddress.ip_address(src).packed, "d": ipaddress.ip_address(dst).packed,
             "f": struct.pack("!H", sport), "n": struct.pack("!H", dport)}
    return b"".join(parts[f] for f in "sdfn" if f in fields)


@dataclass(frozen=True)
class RssTable:
    """What decides the queue: the key, the indirection table, the hashed fields."""

    key: bytes
    indir: tuple[int, ...]
    hfunc: int
    input_xfrm: int
    fields: str  # ethtool letters for the flow type, e.g. "sdfn"

    @property
    def queues(self) -> tuple[int, ...]:
        """The queues the table can reach (a table may leave some out)."""
        return tuple(sorted(set(self.indir)))

    @property
    def ports_hashed(self) -> bool:
        return "f" in self.fields

    def problem(self) -> str | None:
        """Why the queue cannot be predicted from this table, or None."""
        if self.hfunc != ETH_RSS_HASH_TOP:
            name = HFUNC_NAMES.get(self.hfunc, f"unreported ({self.hfunc})")
            return f"the RSS hash function is {name}, not Toeplitz"
        if self.input_xfrm:
            return f"the RSS input is transformed (input_xfrm {self.input_xfrm:#x}: symmetric-xor)"
        if not self.indir or not self.key:
            return "the driver reports no indirection table or key"
        if not self.fields:
            return "the driver does not say which fields it hashes for UDP (rx-flow-hash)"
        return None

    def queue(self, src: str, dst: str, sport: int, dport: int) -> int:
        """The RX queue of a packet from src:sport to dst:dport. The low bits of the hash
        index the table (drivers use hash mod size; their sizes are powers of two)."""
        h = toeplitz(self.key, hash_input(src, dst, sport, dport, self.fields))
        return self.indir[h % len(self.indir)]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key.hex(), "indir_size": len(self.indir), "queues": list(self.queues),
                "hfunc": HFUNC_NAMES.get(self.hfunc, self.hfunc), "input_xfrm": self.input_xfrm,
                "fields": self.fields}


def decode_rxfh_sizes(buf: bytes) -> tuple[int, int]:
    _, _, indir_size, key_size, _, _, _ = RXFH.unpack_from(buf)
    return indir_size, key_size


def decode_rxfh(buf: bytes) -> tuple[tuple[int, ...], bytes, int, int]:
    """(indirection table, key, hfunc, input_xfrm) from a filled ETHTOOL_GRSSH reply."""
    _, _, indir_size, key_size, hfunc, input_xfrm, _ = RXFH.unpack_from(buf)
    indir = struct.unpack_from(f"={indir_size}I", buf, RXFH.size)
    key = bytes(buf[RXFH.size + 4 * indir_size:RXFH.size + 4 * indir_size + key_size])
    return tuple(indir), key, hfunc, input_xfrm


def read_rss(ifname: str, netns: str | None, family: int = socket.AF_INET) -> RssTable | None:
    """The device's RSS key, table and udp hash fields; None when the driver has none."""
    head = ethtool._query(ifname, netns, ETHTOOL_GRSSH, RXFH.size, "rss key", bytes(12))
    if head is None:
        return None
    indir_size, key_size = decode_rxfh_sizes(head)
    if not indir_size or not key_size:
        return None
    size = RXFH.size + 4 * indir_size + key_size
    raw = ethtool._query(ifname, netns, ETHTOOL_GRSSH, size, "rss key",
                         struct.pack("=III", 0, indir_size, key_size))
    if raw is None:
        return None
    indir, key, hfunc, input_xfrm = decode_rxfh(raw)
    flow_type = UDP_V6_FLOW if family == socket.AF_INET6 else ethtool.UDP_V4_FLOW
    fields = ethtool.rss_hash_fields(ifname, netns, flow_type)
    return RssTable(key, indir, hfunc, input_xfrm, fields["letters"] if fields else "")
