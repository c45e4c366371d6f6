"""What pps.lab.bed does to the kernel: rtnetlink (pyroute2), sysfs queue masks, sysctls, ethtool.

Functions taking `ns` run their work on a throw-away thread inside that namespace
(pps.host.netns.call_in), so the caller's threads never move; the others act on the namespace of
the calling thread and are meant to be run that way.

Why sysfs needs care: /sys/class/net lists the devices of the network namespace of whoever
*mounted* that sysfs, not of the reader. A thread that only did setns(CLONE_NEWNET) still
sees the host's devices under /sys. So `private_sysfs` gives the calling (throw-away) thread
its own mount namespace, makes it a slave of the host's so nothing propagates back, and
mounts a fresh sysfs over /sys: that sysfs is tagged with the thread's network namespace.
This is what `ip netns exec` does, done per thread instead of per process (unshare of
CLONE_NEWNS is allowed in one thread of a multi-threaded process; it implies CLONE_FS).
The mount namespace dies with the thread, so nothing needs unmounting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.ethtool.ioctl import IoctlEthtool, NoSuchDevice, NotSupportedError
from pyroute2.netlink.exceptions import NetlinkError

from pps.errors import EnvironmentNotAble
from pps.host.netns import call_in

T = TypeVar("T")

# <linux/sched.h> and <linux/mount.h>; fixed by the kernel ABI.
CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
NUD_PERMANENT = 0x80  # <linux/neighbour.h>
TC_H_ROOT = 0xFFFFFFFF  # <linux/pkt_sched.h>
AF_INET = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise EnvironmentNotAble(f"{what}: {os.strerror(err)}")


def private_sysfs(func: Callable[[], T]) -> T:
    """Run func() with /sys showing this thread's network namespace (see module doc).

    Only call this on a thread that ends afterwards (pps.host.netns.call_in's thread does).
    """
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None), "mount(/, MS_SLAVE)")
    _check(_libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None), "mount(sysfs)")
    return func()


# ---- CPU masks, in the kernel's bitmap syntax ("ff", "1,00000000") ----


def cpumask(cpus: Iterable[int]) -> str:
    """CPUs -> the hex mask sysfs takes: 32-bit words, most significant first, comma-joined."""
    mask = 0
    for cpu in cpus:
        mask |= 1 << cpu
    words = []
    while True:
        words.append(f"{mask & 0xFFFFFFFF:08x}")
        mask >>= 32
        if not mask:
            break
    return ",".join(reversed(words)).lstrip("0") or "0"


def parse_cpumask(text: str) -> tuple[int, ...]:
    """The kernel's hex mask -> sorted CPU numbers."""
    mask = int(text.strip().replace(",", "") or "0", 16)
    return tuple(i for i in range(mask.bit_length()) if mask >> i & 1)


def queue_mask_path(dev: str, kind: str, queue: int) -> str:
    """kind is "rps" (rx-N/rps_cpus) or "xps" (tx-N/xps_cpus)."""
    sub = "rx" if kind == "rps" else "tx"
    return f"/sys/class/net/{dev}/queues/{sub}-{queue}/{kind}_cpus"


def read_queue_masks(dev: str, kind: str, queues: int) -> dict[int, tuple[int, ...]] | None:
    """Per-queue CPUs; None when the kernel has no such file (no CONFIG_RPS / CONFIG_XPS)."""
    out = {}
    for q in range(queues):
        try:
            with open(queue_mask_path(dev, kind, q)) as f:
                out[q] = parse_cpumask(f.read())
        except FileNotFoundError:
            return None
    return out


def write_queue_masks(dev: str, kind: str, masks: dict[int, tuple[int, ...]]) -> None:
    for q, cpus in masks.items():
        path = queue_mask_path(dev, kind, q)
        try:
            with open(path, "w") as f:
                f.write(cpumask(cpus))
        except FileNotFoundError:
            raise EnvironmentNotAble(f"{path} missing: kernel without {kind.upper()}") from None
        except OSError as exc:
            raise EnvironmentNotAble(f"writing {path}: {exc.strerror}") from None


# ---- sysctls under /proc/sys/net, which resolve in the calling thread's namespace ----


def sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def sysctl_read(name: str) -> str | None:
    """The value, or None when this namespace has no such sysctl (host-wide ones are only
    registered in the initial namespace, so they are absent inside a lab namespace)."""
    try:
        with open(sysctl_path(name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def sysctl_per_namespace(name: str) -> bool:
    """Whether this namespace has its own, writable copy. On 6.x kernels net.core.rmem_* and
    wmem_* exist in every namespace but are read-only there, mirroring the host's values;
    root cannot write them either (the mode comes from the sysctl table), so test the mode."""
    try:
        return bool(os.stat(sysctl_path(name)).st_mode & 0o200)
    except FileNotFoundError:
        return False


def sysctl_write(name: str, value: str) -> None:
    try:
        with open(sysctl_path(name), "w") as f:
            f.write(value)
    except OSError as exc:
        raise EnvironmentNotAble(f"sysctl {name}={value}: {exc.strerror}") from None


# ---- ethtool over the SIOCETHTOOL ioctl (pyroute2.ethtool), no ethtool binary needed ----

# veth switches a receive queue to NAPI when GRO is on, but veth_xmit only takes the NAPI
# path for an skb from a local socket when the sending veth has no TSO or the receiving one
# has rx-udp-gro-forwarding (or rx-gro-list); otherwise it falls back to netif_rx and the
# per-queue rx_queue_N_* counters never move. rx-udp-gro-forwarding does not merge datagrams
# bound for a local socket that did not ask for UDP_GRO, so packet counts stay per datagram.
GRO_FEATURES = ("rx-gro", "rx-udp-gro-forwarding")


def _ethtool(dev: str, func: Callable[[IoctlEthtool], T]) -> T:
    # The ioctl socket must be created here, in the caller's namespace, to see dev.
    eth = IoctlEthtool(dev)
    try:
        return func(eth)
    except NoSuchDevice:
        raise EnvironmentNotAble(f"ethtool: no device {dev}") from None
    except NotSupportedError:
        raise EnvironmentNotAble(f"ethtool: {dev} does not support this request") from None
    finally:
        eth.close()


def get_features(dev: str, names: Iterable[str] = GRO_FEATURES) -> dict[str, bool]:
    def get(eth: IoctlEthtool) -> dict[str, bool]:
        feats = eth.get_features()
        return {n: bool(feats[n]) for n in names if n in feats}

    return _ethtool(dev, get)


def set_features(dev: str, wanted: dict[str, bool]) -> dict[str, bool]:
    """Set features (ETHTOOL_SFEATURES) and return what the kernel then reports active."""

    def put(eth: IoctlEthtool) -> dict[str, bool]:
        feats = eth.get_features()
        missing = [n for n, on in wanted.items() if n not in feats and on]
        if missing:
            raise EnvironmentNotAble(f"{dev}: kernel has no feature {', '.join(missing)}")
        present = {n: on for n, on in wanted.items() if n in feats}  # absent means off
        for name, on in present.items():
            feats[name] = on
        eth.set_features(feats)
        now = eth.get_features()
        return {n: bool(now[n]) if n in now else False for n in wanted}

    got = _ethtool(dev, put)
    wrong = [n for n, on in wanted.items() if got[n] != on]
    if wrong:
        raise EnvironmentNotAble(f"{dev}: kernel refused to change {', '.join(wrong)}")
    return got


def ethtool_stats(dev: str) -> dict[str, int]:
    """`ethtool -S dev` as a dict (ETHTOOL_GSTATS)."""
    return _ethtool(dev, lambda eth: dict(eth.get_statistics()))


# ---- rtnetlink ----


def in_ns(ns: str | None, func: Callable[[IPRoute], T]) -> T:
    """func(ipr) with an IPRoute opened inside the namespace (its socket stays bound there)."""

    def run() -> T:
        with IPRoute() as ipr:
            return func(ipr)

    return call_in(ns, run)


def find_link(ipr: IPRoute, name: str) -> Any | None:
    idx = ipr.link_lookup(ifname=name)
    return ipr.link("get", index=idx[0])[0] if idx else None


def queue_counts(ns: str, dev: str) -> tuple[int, int] | None:
    """(num_tx_queues, num_rx_queues) of dev in ns, or None when there is no such link."""

    def get(ipr: IPRoute) -> tuple[int, int] | None:
        link = find_link(ipr, dev)
        if link is None:
            return None
        return link.get("IFLA_NUM_TX_QUEUES"), link.get("IFLA_NUM_RX_QUEUES")

    return in_ns(ns, get)


def make_veth(ns: str, dev: str, peer_ns: str, peer_dev: str, queues: int) -> tuple[str, str]:
    """Create the pair in ns with its peer straight in peer_ns (never in the host's
    namespace, so a crash cannot strand it there). Returns both MAC addresses."""

    def add(ipr: IPRoute) -> str:
        # The queue counts must be given for the peer too; it otherwise gets one queue.
        ipr.link("add", ifname=dev, kind="veth", num_tx_queues=queues, num_rx_queues=queues,
                 peer={"ifname": peer_dev, "net_ns_fd": peer_ns,
                       "num_tx_queues": queues, "num_rx_queues": queues})
        return find_link(ipr, dev).get("IFLA_ADDRESS")

    mac = in_ns(ns, add)
    return mac, in_ns(peer_ns, lambda ipr: find_link(ipr, peer_dev).get("IFLA_ADDRESS"))


def configure_side(ns: str, dev: str, addr: str, prefixlen: int, peer_addr: str,
                   peer_mac: str) -> None:
    """Loopback up, address, permanent neighbour for the peer (so no ARP), link up."""

    def setup(ipr: IPRoute) -> None:
        # IPv6 off on the veth: router solicitations and MLD reports would be foreign packets
        # in the per-queue counters and the namespace's snmp, which the ledger relies on.
        if sysctl_read(f"net.ipv6.conf.{dev}.disable_ipv6") is not None:
            sysctl_write(f"net.ipv6.conf.{dev}.disable_ipv6", "1")
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        idx = ipr.link_lookup(ifname=dev)[0]
        ipr.addr("replace", index=idx, address=addr, prefixlen=prefixlen)
        ipr.neigh("replace", ifindex=idx, dst=peer_addr, lladdr=peer_mac, state="permanent")
        ipr.link("set", index=idx, state="up")

    in_ns(ns, setup)


def set_qdisc(ns: str, dev: str, kind: str, opts: dict[str, int]) -> None:
    """Make `kind` dev's root qdisc; "noqueue" goes back to veth's default.

    `tc qdisc replace` cannot change a root qdisc's kind, so delete, then add."""

    def put(ipr: IPRoute) -> None:
        idx = ipr.link_lookup(ifname=dev)[0]
        roots = [q for q in ipr.get_qdiscs(index=idx) if q["parent"] == TC_H_ROOT]
        current = roots[0].get("TCA_KIND") if roots else "noqueue"
        if current == kind and not opts:
            return
        if current != "noqueue":  # deleting noqueue is EINVAL
            ipr.tc("del", index=idx, root=True)
        if kind == "noqueue":
            return
        try:
            ipr.tc("add", kind, index=idx, root=True, **opts)
        except NetlinkError as exc:
            raise EnvironmentNotAble(f"qdisc {kind} {opts or ''} on {dev}: "
                                     f"{os.strerror(exc.code)} (kernel module missing?)") from None

    in_ns(ns, put)


def write_masks(ns: str, dev: str, kind: str, masks: dict[int, tuple[int, ...]],
                wanted: bool) -> None:
    """Per-queue RPS ("rps") or XPS ("xps") CPUs, written only where they differ. Without
    kernel support that is an error only when masks were asked for."""

    def write() -> None:
        current = read_queue_masks(dev, kind, len(masks))
        if current is None:
            if wanted:
                raise EnvironmentNotAble(f"{kind.upper()} masks: kernel without {kind.upper()}")
            return
        if current != masks:
            write_queue_masks(dev, kind, masks)

    call_in(ns, lambda: private_sysfs(write))


def delete_links(ns: str | None, names: Iterable[str]) -> list[str]:
    """Delete these links if present; returns the ones deleted. Deleting one end of a veth
    deletes its peer, wherever that is."""

    def drop(ipr: IPRoute) -> list[str]:
        gone = []
        for name in names:
            for idx in ipr.link_lookup(ifname=name):
                try:
                    ipr.link("del", index=idx)
                    gone.append(name)
                except NetlinkError:  # went with its peer in the meantime
                    pass
        return gone

    return in_ns(ns, drop)


def side_status(ns: str, dev: str, mask_kind: str, sysctls: Iterable[str]) -> dict[str, Any]:
    """One namespace's view: loopback, the veth end, addresses, neighbours, qdisc, features,
    queue masks and sysctls (with whether this namespace has its own copy)."""

    def links(ipr: IPRoute) -> dict[str, Any]:
        res: dict[str, Any] = {"lo_up": bool(find_link(ipr, "lo")["flags"] & 1)}
        link = find_link(ipr, dev)
        if link is None:
            return res
        idx = link["index"]
        res["link"] = {"name": dev, "index": idx, "state": link.get("IFLA_OPERSTATE"),
                       "mac": link.get("IFLA_ADDRESS"), "mtu": link.get("IFLA_MTU"),
                       "num_tx_queues": link.get("IFLA_NUM_TX_QUEUES"),
                       "num_rx_queues": link.get("IFLA_NUM_RX_QUEUES")}
        res["addresses"] = [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
                            for a in ipr.get_addr(index=idx, family=AF_INET)]
        res["neighbours"] = [{"dst": n.get("NDA_DST"), "lladdr": n.get("NDA_LLADDR"),
                              "permanent": bool(n["state"] & NUD_PERMANENT)}
                             for n in ipr.neigh("dump", ifindex=idx, family=AF_INET)]
        roots = [q.get("TCA_KIND") for q in ipr.get_qdiscs(index=idx) if q["parent"] == TC_H_ROOT]
        res["qdisc"] = roots[0] if roots else "noqueue"
        res["features"] = get_features(dev)
        res["sysctls"] = {n: {"value": sysctl_read(n), "per_namespace": sysctl_per_namespace(n)}
                          for n in sysctls}
        return res

    res = in_ns(ns, links)
    if "link" in res:
        n = res["link"]["num_rx_queues" if mask_kind == "rps" else "num_tx_queues"]
        res[f"{mask_kind}_cpus"] = call_in(
            ns, lambda: private_sysfs(lambda: read_queue_masks(dev, mask_kind, n)))
    return res
