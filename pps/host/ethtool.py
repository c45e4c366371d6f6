"""Device settings through the ethtool ioctl (SIOCETHTOOL): driver, channels, rings, RSS hash.

Each query is split in two: a pure `decode_*` (bytes -> dict), tested with captured
buffers, and a thin ioctl call. A query the driver does not implement (lo and veth lack
several) returns None; a missing device or a refused call raises EnvironmentNotAble.
Statistics (ETHTOOL_GSTATS) live in pps/collectors/, not here.

Raw fcntl.ioctl rather than pyroute2's wrapper: the structs are small and fixed by the
kernel ABI (include/uapi/linux/ethtool.h), and raw bytes keep the decoders testable.
"""

from __future__ import annotations

import array
import errno
import fcntl
import socket
import struct
from typing import Any

from pps.errors import EnvironmentNotAble
from pps.host.netns import call_in

SIOCETHTOOL = 0x8946  # <linux/sockios.h>
IFNAMSIZ = 16

ETHTOOL_GDRVINFO = 0x03
ETHTOOL_GRINGPARAM = 0x10
ETHTOOL_GRXFH = 0x29
ETHTOOL_GCHANNELS = 0x3C
UDP_V4_FLOW = 0x02

# struct ethtool_drvinfo: cmd, driver[32], version[32], fw_version[32], bus_info[32],
# erom_version[32], reserved2[12], n_priv_flags, n_stats, testinfo_len, eedump_len, regdump_len
DRVINFO = struct.Struct("=I32s32s32s32s32s12sIIIII")
# struct ethtool_ringparam: cmd then eight u32
RINGPARAM = struct.Struct("=9I")
# struct ethtool_channels: cmd then eight u32
CHANNELS = struct.Struct("=9I")
# struct ethtool_rxnfc starts with cmd, flow_type, u64 data; the whole struct is 192 bytes
# on x86-64 and the kernel may copy all of it back, so the buffer must be that large.
RXNFC_HEAD = struct.Struct("=IIQ")
RXNFC_SIZE = 192

# RXH_* bits in ethtool's own order, with the letter `ethtool -N rx-flow-hash` uses and
# the line `ethtool -n rx-flow-hash` prints.
RXH_FIELDS = (
    (1 << 1, "m", "L2DA"),
    (1 << 2, "v", "VLAN tag"),
    (1 << 3, "t", "L3 proto"),
    (1 << 4, "s", "IP SA"),
    (1 << 5, "d", "IP DA"),
    (1 << 6, "f", "L4 bytes 0 & 1 [TCP/UDP src port]"),
    (1 << 7, "n", "L4 bytes 2 & 3 [TCP/UDP dst port]"),
    (1 << 8, "l", "IPv6 Flow Label"),
)
RXH_DISCARD = 1 << 31

# errno values meaning "this driver does not implement that query"
UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL)


class EthtoolError(EnvironmentNotAble):
    """An ethtool ioctl failed for a reason other than "not supported"."""


# ---------------------------------------------------------------------------- decoders

def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def decode_drvinfo(buf: bytes) -> dict[str, Any]:
    f = DRVINFO.unpack_from(buf)
    return {"driver": _cstr(f[1]), "version": _cstr(f[2]), "firmware": _cstr(f[3]),
            "bus": _cstr(f[4]), "n_stats": f[8]}


def decode_rings(buf: bytes) -> dict[str, int]:
    _, rx_max, mini_max, jumbo_max, tx_max, rx, mini, jumbo, tx = RINGPARAM.unpack_from(buf)
    return {"rx": rx, "rx_mini": mini, "rx_jumbo": jumbo, "tx": tx,
            "rx_max": rx_max, "rx_mini_max": mini_max, "rx_jumbo_max": jumbo_max, "tx_max": tx_max}


def decode_channels(buf: bytes) -> dict[str, int]:
    _, max_rx, max_tx, max_other, max_comb, rx, tx, other, comb = CHANNELS.unpack_from(buf)
    return {"rx": rx, "tx": tx, "other": other, "combined": comb,
            "max_rx": max_rx, "max_tx": max_tx, "max_other": max_other, "max_combined": max_comb}


def decode_hash_fields(bits: int) -> dict[str, Any]:
    """RXH_* bits -> {"bits", "letters" ("sdfn"), "fields" (ethtool's names), "discard"}."""
    present = [(letter, name) for bit, letter, name in RXH_FIELDS if bits & bit]
    return {"bits": bits, "letters": "".join(letter for letter, _ in present),
            "fields": [name for _, name in present], "discard": bool(bits & RXH_DISCARD)}


def decode_rxfh(buf: bytes) -> dict[str, Any]:
    _, _, data = RXNFC_HEAD.unpack_from(buf)
    return decode_hash_fields(data)


# ---------------------------------------------------------------------------- ioctls

def _ioctl(ifname: str, request: bytearray, what: str) -> bytes | None:
    """Send one ethtool command; the kernel fills `request` in place. None = unsupported."""
    name = ifname.encode()
    if not name or len(name) >= IFNAMSIZ:
        raise EthtoolError(f"ethtool {what}: bad interface name {ifname!r}")
    buf = array.array("B", request)
    addr, _ = buf.buffer_info()
    # struct ifreq: ifr_name[16] then a union whose ifr_data is a pointer; 40 bytes in all.
    ifreq = struct.pack("16sP", name, addr).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
        except OSError as exc:
            if exc.errno in UNSUPPORTED:
                return None
            if exc.errno == errno.ENODEV:
                raise EthtoolError(f"ethtool {what}: no device {ifname!r}") from None
            raise EthtoolError(f"ethtool {what} on {ifname}: ioctl(SIOCETHTOOL): "
                               f"{exc.strerror}") from None
    return buf.tobytes()


def _query(ifname: str, netns: str | None, cmd: int, size: int, what: str,
           head: bytes = b"") -> bytes | None:
    request = bytearray(size)
    struct.pack_into("=I", request, 0, cmd)
    request[4:4 + len(head)] = head
    return call_in(netns, lambda: _ioctl(ifname, request, what))


def driver_info(ifname: str, netns: str | None = None) -> dict[str, Any] | None:
    raw = _query(ifname, netns, ETHTOOL_GDRVINFO, DRVINFO.size, "driver info")
    return decode_drvinfo(raw) if raw is not None else None


def rings(ifname: str, netns: str | None = None) -> dict[str, int] | None:
    raw = _query(ifname, netns, ETHTOOL_GRINGPARAM, RINGPARAM.size, "ring sizes")
    return decode_rings(raw) if raw is not None else None


def channels(ifname: str, netns: str | None = None) -> dict[str, int] | None:
    raw = _query(ifname, netns, ETHTOOL_GCHANNELS, CHANNELS.size, "channels")
    return decode_channels(raw) if raw is not None else None


def rss_hash_fields(ifname: str, netns: str | None = None,
                    flow_type: int = UDP_V4_FLOW) -> dict[str, Any] | None:
    """Fields the NIC hashes for RSS on this flow type (udp4 by default)."""
    raw = _query(ifname, netns, ETHTOOL_GRXFH, RXNFC_SIZE, "rx-flow-hash",
                 struct.pack("=I", flow_type))
    return decode_rxfh(raw) if raw is not None else None


def device_settings(ifname: str, netns: str | None = None) -> dict[str, Any]:
    """All of the above; None for each the driver lacks. Raises when the device is missing."""
    return {"driver_info": driver_info(ifname, netns), "channels": channels(ifname, netns),
            "rings": rings(ifname, netns), "rss_udp4": rss_hash_fields(ifname, netns)}
