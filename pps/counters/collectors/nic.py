"""NIC statistics as `ethtool -S` shows them, for any driver, via the SIOCETHTOOL ioctl.

The ioctl (ETHTOOL_GSSET_INFO, ETHTOOL_GSTRINGS with ETH_SS_STATS, ETHTOOL_GSTATS) is done
here with fcntl and ctypes buffers rather than through pyroute2's IoctlEthtool, because
that one sizes the GSTATS buffer from a count read earlier: if the driver's count grows in
between (channels changed), the kernel writes past the buffer. We over-allocate and retry.

Per-queue counters are split into a queue column and their name keeps the driver's shape
with the number replaced by N: `rx_queue_3_packets` -> (`rx_queue_N_packets`, queue 3).
"""

from __future__ import annotations

import ctypes
import fcntl
import re
import socket
import struct
from collections.abc import Iterable

from pps.counters.collectors.base import Reading
from pps.errors import EnvironmentNotAble
from pps.host.ethtool import ETHTOOL_GDRVINFO, IFNAMSIZ, SIOCETHTOOL

ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSTATS = 0x1D
ETHTOOL_GSSET_INFO = 0x37
ETH_SS_STATS = 1
ETH_GSTRING_LEN = 32

# Per-queue name shapes seen in real drivers; the first that matches wins.
_QUEUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(rx|tx|xdp)_queue_(\d+)_(.+)$"), r"\1_queue_N_\3"),  # ixgbe, ice, veth, virtio (old)
    (re.compile(r"^queue_(\d+)_(rx|tx)_(.+)$"), r"queue_N_\2_\3"),  # ena
    (re.compile(r"^(rx|tx|ch)(\d+)_(.+)$"), r"\1N_\3"),  # mlx5, mlx4, virtio_net (new)
    (re.compile(r"^(rx|tx)-(\d+)\.(.+)$"), r"\1-N.\3"),  # i40e, sfc
    (re.compile(r"^(rxq|txq)(\d+): (.+)$"), r"\1N: \3"),  # be2net
    (re.compile(r"^\[(\d+)\]: (.+)$"), r"[N]: \2"),  # bnx2x
    (re.compile(r"^(.+)\[(\d+)\]$"), r"\1[N]"),  # gve
)

# Counters meaning "the NIC dropped for lack of RX buffers or descriptors", per driver
# (as `ethtool -i` names it). Each entry is a group of alternatives for the same drop:
# the first one present is used, so a counter renamed across kernel versions is not summed
# twice. Names use the N form of per-queue counters; those are summed over queues.
NIC_DROPS: dict[str, tuple[tuple[str, ...], ...]] = {
    # drivers/net/ethernet/sfc/falcon/falcon.c FALCON_DMA_STAT(rx_nodesc_drop_cnt, ...) (Falcon,
    # Siena); drivers/net/ethernet/sfc/ef10.c EF10_DMA_STAT(port_rx_nodesc_drops,
    # RX_NODESC_DROPS) (EF10, also ef100_nic.c): one chip generation shows one or the other.
    "sfc": (("port_rx_nodesc_drops", "rx_nodesc_drop_cnt"),),
    "sfc-falcon": (("rx_nodesc_drop_cnt",),),
    # drivers/net/ethernet/mellanox/mlx5/core/en_stats.c: q_stats_desc rx_out_of_buffer (no
    # receive WQE posted by the host), pport_phy_statistical rx_discards_phy (port buffer full).
    "mlx5_core": (("rx_out_of_buffer",), ("rx_discards_phy",)),
    # drivers/net/ethernet/intel/ixgbe/ixgbe_ethtool.c: IXGBE_NETDEV_STAT(rx_missed_errors)
    # (MPC, packet buffer full), IXGBE_STAT("rx_no_dma_resources", hw_rx_no_dma_resources) (QPRDC).
    "ixgbe": (("rx_missed_errors",), ("rx_no_dma_resources",)),
    # drivers/net/ethernet/intel/i40e/i40e_ethtool.c: I40E_PF_STAT("port.rx_dropped",
    # stats.eth.rx_discards), renamed "port.rx_discards" in later kernels: alternatives.
    "i40e": (("port.rx_discards", "port.rx_dropped"),),
    # drivers/net/ethernet/intel/ice/ice_ethtool.c: ICE_PF_STAT("rx_dropped.nic", stats.eth.rx_discards)
    "ice": (("rx_dropped.nic",),),
    # drivers/net/ethernet/broadcom/bnxt/bnxt_ethtool.c: bnxt_ring_err_stats_arr "rx_total_ring_discards"
    "bnxt_en": (("rx_total_ring_discards",),),
    # drivers/net/ethernet/amazon/ena/ena_ethtool.c: ENA_STAT_GLOBAL_ENTRY(rx_drops) (device-reported)
    "ena": (("rx_drops",),),
    # drivers/net/virtio_net.c: virtnet_rq_stats_desc "drops", shown as rxN_drops (6.x) or
    # rx_queue_N_drops (older kernels).
    "virtio_net": (("rxN_drops", "rx_queue_N_drops"),),
    # drivers/net/ethernet/google/gve/gve_ethtool.c: gve_gstrings_rx_stats "rx_queue_drop_cnt[%u]"
    "gve": (("rx_queue_drop_cnt[N]",),),
    # drivers/net/veth.c: veth_rq_stats_desc "drops" -> rx_queue_N_drops (NAPI/XDP receive path;
    # checked with `ethtool -S` on kernel 6.18: peer_ifindex, rx_queue_N_{xdp_packets,xdp_bytes,
    # drops,xdp_redirect,xdp_drops,xdp_tx,xdp_tx_errors}, tx_queue_N_xdp_xmit{,_errors}).
    # On the non-NAPI path a veth drop is a backlog drop (softnet dropped), not counted here.
    "veth": (("rx_queue_N_drops",), ("rx_queue_N_xdp_drops",)),
}

# Counters that are not packet counters at all (an index, a configuration value).
_NOT_COUNTERS = frozenset({"peer_ifindex"})


def split_queue(name: str) -> tuple[str, int | None]:
    """`rx_queue_3_packets` -> (`rx_queue_N_packets`, 3); a device-wide name -> (name, None)."""
    for pattern, template in _QUEUE_PATTERNS:
        m = pattern.match(name)
        if m:
            digits = next(g for g in m.groups() if g.isdigit())
            return m.expand(template), int(digits)
    return name, None


def _readings(pairs: Iterable[tuple[str, int]], device: str | None) -> list[Reading]:
    out = []
    for raw, value in pairs:
        if raw in _NOT_COUNTERS:
            continue
        name, queue = split_queue(raw)
        out.append(Reading("ethtool", name, value, device=device, queue=queue))
    return out


def parse(text: str, device: str | None = None) -> list[Reading]:
    """Parse `ethtool -S DEV` text output (the value is after the last colon)."""
    pairs = []
    for line in text.splitlines():
        name, sep, value = line.strip().rpartition(":")
        if not sep or not name:
            continue
        try:
            pairs.append((name.strip(), int(value)))
        except ValueError:
            continue  # a header such as "NIC statistics:"
    return _readings(pairs, device)


def parse_binary(strings: bytes, stats: bytes, device: str | None = None) -> list[Reading]:
    """Parse the ETHTOOL_GSTRINGS name table and ETHTOOL_GSTATS u64 array (native order)."""
    n = len(strings) // ETH_GSTRING_LEN
    if len(stats) < n * 8:
        raise ValueError(f"ethtool stats: {n} names but {len(stats) // 8} values")
    names = [strings[i * ETH_GSTRING_LEN:(i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0]
             .decode("ascii", "replace") for i in range(n)]
    values = struct.unpack(f"={n}Q", stats[:n * 8])
    return _readings(zip(names, values), device)


def _ioctl(sock: socket.socket, device: str, buf: ctypes.Array) -> None:
    """SIOCETHTOOL with ifr_data pointing at buf; the kernel writes into buf in place."""
    name = device.encode()
    if len(name) >= IFNAMSIZ:
        raise EnvironmentNotAble(f"ethtool: device name too long: {device!r}")
    ifreq = struct.pack("16sP", name, ctypes.addressof(buf)).ljust(40, b"\0")
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    except OSError as exc:
        raise EnvironmentNotAble(f"ethtool ioctl on {device}: {exc.strerror}") from None


def _stats_count(sock: socket.socket, device: str) -> int:
    buf = ctypes.create_string_buffer(struct.pack("=IIQI", ETHTOOL_GSSET_INFO, 0,
                                                  1 << ETH_SS_STATS, 0), 20)
    _ioctl(sock, device, buf)
    _, _, mask, count = struct.unpack("=IIQI", buf.raw)
    return count if mask & (1 << ETH_SS_STATS) else 0


def read_stats(sock: socket.socket, device: str, n: int) -> bytes | None:
    """The values array alone (one ETHTOOL_GSTATS), when the driver still has `n` counters;
    None when the count changed, so the caller reads the names again. For repeated samples."""
    # Slack so a grown count cannot make the kernel write past our buffer.
    room = 2 * n + 64
    vbuf = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_GSTATS, n), 8 + room * 8)
    _ioctl(sock, device, vbuf)
    got = struct.unpack_from("=I", vbuf.raw, 4)[0]
    return vbuf.raw[8:8 + n * 8] if got == n else None


def read_binary(sock: socket.socket, device: str) -> tuple[bytes, bytes]:
    """(names table, values array) for the device, in the namespace of `sock`."""
    for _ in range(3):  # the count can change under us (channels reconfigured): retry
        n = _stats_count(sock, device)
        if n == 0:
            raise EnvironmentNotAble(f"{device}: driver reports no NIC statistics")
        sbuf = ctypes.create_string_buffer(struct.pack("=III", ETHTOOL_GSTRINGS, ETH_SS_STATS, n),
                                           12 + n * ETH_GSTRING_LEN)
        _ioctl(sock, device, sbuf)
        stats = read_stats(sock, device, n)
        n_strings = struct.unpack_from("=I", sbuf.raw, 8)[0]
        if stats is not None and n_strings == n:
            return sbuf.raw[12:12 + n * ETH_GSTRING_LEN], stats
    raise EnvironmentNotAble(f"{device}: ethtool statistics count keeps changing")


def read_binary_here(device: str) -> tuple[bytes, bytes]:
    """(names table, values array) for the device, in the calling thread's namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return read_binary(sock, device)


def read_here(device: str) -> list[Reading]:
    """`ethtool -S device` as Readings, in the calling thread's network namespace."""
    strings, stats = read_binary_here(device)
    return parse_binary(strings, stats, device)


def read(netns: str | None, device: str) -> list[Reading]:
    from pps.host.netns import call_in

    return call_in(netns, lambda: read_here(device))


def driver_here(device: str) -> str:
    """The driver name (`ethtool -i`: driver), via ETHTOOL_GDRVINFO."""
    buf = ctypes.create_string_buffer(struct.pack("=I", ETHTOOL_GDRVINFO), 196)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _ioctl(sock, device, buf)
    return buf.raw[4:36].split(b"\0", 1)[0].decode("ascii", "replace")


def nic_drop_names(driver: str | None) -> tuple[tuple[str, ...], ...]:
    """The driver map entry (groups of alternative counter names); () for an unknown driver."""
    if driver is None:
        return ()
    return NIC_DROPS.get(driver, ())
