"""A machine's CPUs, NUMA nodes and NIC queues -> IRQs -> CPUs, read from a root directory.

The root is "/" for this machine or a captured tree (tests/data/topo/*), so everything
here reads files under `root` and does nothing else. Missing files are normal (virtual
devices have no `device` link, VMs have no node directory, offline CPUs lose their
topology files), so each reader degrades to "unknown" instead of failing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pps.config.cpulist import format_cpulist, parse_cpulist, parse_cpumask
from pps.errors import ConfigError, EnvironmentNotAble
from pps.results.safe_io import shown

CPU_DIR = "sys/devices/system/cpu"
NODE_DIR = "sys/devices/system/node"
NET_DIR = "sys/class/net"

# How a receive queue's packets reach the protocol stack:
#   "irq": a per-queue interrupt on the CPUs in RxQueue.cpus;
#   "rps": RPS moves the protocol work to RxQueue.cpus (the IRQ, if any, is elsewhere);
#   "sender": no per-queue IRQ (lo, veth): the sending CPU runs the receive path;
#   "unknown": a hardware device whose queue IRQ we could not find by name.
SERVICED_BY = ("irq", "rps", "sender", "unknown")


class DeviceNotFound(EnvironmentNotAble):
    """A device asked for by name is not under ROOT/sys/class/net."""


@dataclass(frozen=True)
class Cpu:
    cpu: int
    node: int
    core: int  # core_id, unique only within a package; -1 when offline and unknown
    package: int
    siblings: tuple[int, ...]  # the *other* hardware threads of this core
    online: bool

    @property
    def core_key(self) -> tuple[int, int]:
        """(package, core): one physical core; core_id alone repeats across sockets."""
        return (self.package, self.core) if self.core >= 0 else (-1, -1 - self.cpu)


@dataclass(frozen=True)
class RxQueue:
    queue: int
    irq: int | None
    irq_name: str | None
    cpus: tuple[int, ...]  # the CPUs that do this queue's receive processing
    serviced_by: str  # one of SERVICED_BY
    rps_cpus: tuple[int, ...] = ()
    irq_cpus: tuple[int, ...] = ()  # IRQ affinity (effective where the kernel says)


@dataclass(frozen=True)
class TxQueue:
    queue: int
    xps_cpus: tuple[int, ...]


@dataclass(frozen=True)
class Device:
    name: str
    driver: str | None
    numa_node: int | None  # None when the kernel says -1 or the device has no node
    rx_queues: tuple[RxQueue, ...]
    tx_queues: tuple[TxQueue, ...]
    bus: str | None = None  # PCI address or virtio name: what the device link points at

    @property
    def has_queue_irqs(self) -> bool:
        return any(q.irq is not None for q in self.rx_queues)


@dataclass(frozen=True)
class Topology:
    cpus: tuple[Cpu, ...]
    nodes: dict[int, tuple[int, ...]]
    devices: dict[str, Device]
    root: str = "/"
    _by_cpu: dict[int, Cpu] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_cpu", {c.cpu: c for c in self.cpus})

    def restricted(self, allowed: Iterable[int]) -> Topology:
        """The same machine as seen by a process confined to `allowed` CPUs (taskset, a
        cgroup cpuset): the others count as offline, since no worker can be pinned there."""
        keep = set(allowed)
        cpus = tuple(replace(c, online=c.online and c.cpu in keep) for c in self.cpus)
        return replace(self, cpus=cpus)

    @property
    def online_cpus(self) -> tuple[int, ...]:
        return tuple(c.cpu for c in self.cpus if c.online)

    def cpu(self, cpu: int) -> Cpu | None:
        return self._by_cpu.get(cpu)

    def node_of(self, cpu: int) -> int | None:
        info = self._by_cpu.get(cpu)
        return info.node if info else None

    def online_nodes(self) -> dict[int, tuple[int, ...]]:
        """Nodes that have at least one online CPU -> those CPUs."""
        out: dict[int, list[int]] = {}
        for c in self.cpus:
            if c.online:
                out.setdefault(c.node, []).append(c.cpu)
        return {n: tuple(v) for n, v in sorted(out.items())}

    def to_dict(self) -> dict[str, Any]:
        """The `pps topo --json` shape (DESIGN.md), plus a few extra fields."""
        return {
            "root": self.root,
            "cpus": [{"cpu": c.cpu, "node": c.node, "core": c.core, "package": c.package,
                      "siblings": list(c.siblings), "online": c.online} for c in self.cpus],
            "nodes": {str(n): list(cpus) for n, cpus in sorted(self.nodes.items())},
            "devices": [_device_dict(d) for d in self.devices.values()],
        }


def _device_dict(d: Device) -> dict[str, Any]:
    return {
        "name": d.name, "driver": d.driver, "numa_node": d.numa_node, "bus": d.bus,
        "queues": [{"queue": q.queue, "irq": q.irq, "irq_name": q.irq_name, "cpus": list(q.cpus),
                    "serviced_by": q.serviced_by, "irq_cpus": list(q.irq_cpus),
                    "rps_cpus": list(q.rps_cpus)} for q in d.rx_queues],
        "tx_queues": [{"queue": q.queue, "xps_cpus": list(q.xps_cpus)} for q in d.tx_queues],
    }


# ---------------------------------------------------------------------------- reading

def read_topology(root: str = "/", devices: Iterable[str] | None = None) -> Topology:
    """Read CPUs, nodes and devices (all of them, or the named ones) under root.
    ConfigError (exit 2) when a --root other than "/" is not a captured tree."""
    if os.path.realpath(root) == "/":
        return _read_topology(root, devices)
    check_root(root)
    try:
        return _read_topology(root, devices)
    except ValueError as exc:  # a damaged capture: a CPU list or mask that does not parse
        raise ConfigError(f"--root {shown(root)}: cannot read the captured topology: "
                          f"{exc}") from None


def read_device(root: str, dev: str) -> Device:
    """One device, its queues and the CPUs that service them (the sysfs seen from here)."""
    return _read_device(root, dev, parse_interrupts(_read(root, "proc/interrupts") or ""))


def check_root(root: str) -> None:
    """A --root must be a directory holding a captured sys/ or proc/ (tests build trees of
    only a device or two, so nothing more is required)."""
    if not os.path.isdir(root):
        what = "not a directory" if os.path.lexists(root) else "no such directory"
        raise ConfigError(f"--root {shown(root)}: {what}")
    if not any(os.path.isdir(_path(root, top)) for top in ("sys", "proc")):
        raise ConfigError(f"--root {shown(root)}: not a captured machine "
                          "(no sys/ or proc/ under it)")


def _read_topology(root: str, devices: Iterable[str] | None) -> Topology:
    cpus = _read_cpus(root)
    nodes = _read_nodes(root, cpus)
    cpu_objs = _build_cpus(root, cpus, nodes)
    interrupts = parse_interrupts(_read(root, "proc/interrupts") or "")
    names = _device_names(root) if devices is None else list(devices)
    devs = {name: _read_device(root, name, interrupts) for name in names}
    return Topology(tuple(cpu_objs), nodes, devs, root)


def _path(root: str, rel: str) -> str:
    return os.path.join(root, rel) if rel else root


def _read(root: str, rel: str) -> str | None:
    """A file's text, or None when it is absent or unreadable (normal in sysfs)."""
    try:
        with open(_path(root, rel)) as f:
            return f.read().strip()
    except OSError:
        return None


def _read_int(root: str, rel: str) -> int | None:
    text = _read(root, rel)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _listdir(root: str, rel: str) -> list[str]:
    try:
        return os.listdir(_path(root, rel))
    except OSError:
        return []


def _numbered(names: Iterable[str], prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"(\d+)$")
    return sorted(int(m.group(1)) for n in names if (m := pat.match(n)))


def _read_cpus(root: str) -> dict[int, bool]:
    """CPU number -> online, from cpuN directories and the `online` list."""
    present = set(_numbered(_listdir(root, CPU_DIR), "cpu"))
    online_text = _read(root, f"{CPU_DIR}/online")
    online = set(parse_cpulist(online_text)) if online_text is not None else set(present)
    return {cpu: cpu in online for cpu in sorted(present | online)}


def _read_nodes(root: str, cpus: dict[int, bool]) -> dict[int, tuple[int, ...]]:
    """Node -> CPUs. No node directory (some VMs, non-NUMA kernels) means one node 0."""
    nodes = {n: parse_cpulist(_read(root, f"{NODE_DIR}/node{n}/cpulist") or "")
             for n in _numbered(_listdir(root, NODE_DIR), "node")}
    if not nodes:
        return {0: tuple(cpus)}
    # An offline CPU drops out of its node's cpulist; its cpuN/nodeK link still says where.
    placed = {c for v in nodes.values() for c in v}
    for cpu in cpus:
        if cpu not in placed:
            linked = _numbered(_listdir(root, f"{CPU_DIR}/cpu{cpu}"), "node")
            if linked and linked[0] in nodes:
                nodes[linked[0]] = tuple(sorted(nodes[linked[0]] + (cpu,)))
    return nodes


def _build_cpus(root: str, cpus: dict[int, bool], nodes: dict[int, tuple[int, ...]]) -> list[Cpu]:
    node_of = {c: n for n, members in nodes.items() for c in members}
    out = []
    for cpu, online in cpus.items():
        base = f"{CPU_DIR}/cpu{cpu}/topology"
        core = _read_int(root, f"{base}/core_id")
        package = _read_int(root, f"{base}/physical_package_id")
        threads = parse_cpulist(_read(root, f"{base}/thread_siblings_list") or "")
        out.append(Cpu(cpu=cpu, node=node_of.get(cpu, 0),
                       core=core if core is not None else -1,
                       package=package if package is not None else -1,
                       siblings=tuple(t for t in threads if t != cpu), online=online))
    return out


def _device_names(root: str) -> list[str]:
    return sorted(_listdir(root, NET_DIR))


# ---------------------------------------------------------------------------- IRQs

@dataclass(frozen=True)
class Irq:
    irq: int
    name: str
    cpus: tuple[int, ...]


def parse_interrupts(text: str) -> dict[int, str]:
    """/proc/interrupts -> {irq number: action name}; named lines (NMI, LOC) are skipped."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        head, sep, rest = line.partition(":")
        head = head.strip()
        if not sep or not head.isdigit():
            continue
        fields = rest.split()
        if fields:
            # The action name is the last field:
            # "... PCI-MSIX-0000:81:00.0 5-edge mlx5_comp3@pci:0000:81:00.0"
            out[int(head)] = fields[-1]
    return out


def _irq_patterns(dev: str, bus: str | None) -> list[re.Pattern[str]]:
    """Per-queue IRQ names of common drivers; group 1 is the queue number."""
    d = re.escape(dev)
    pats = [
        rf"(?:i40e-|ice-|iavf-)?{d}-TxRx-(\d+)",  # ixgbe, i40e, ice, iavf, bnxt
        rf"{d}-rx-(\d+)",  # ixgbe/igb with separate RX and TX vectors
        rf"{d}-Tx-Rx-(\d+)",  # ena
        rf"{d}-(\d+)",  # sfc
    ]
    if bus:
        b = re.escape(bus)
        pats += [rf"mlx5_comp(\d+)@pci:{b}",  # mlx5: completion vector N serves channel N
                 rf"{b}-input\.(\d+)"]  # virtio_net: bus is the virtioK name
    return [re.compile(p + "$") for p in pats]


def _queue_irqs(root: str, dev: str, bus: str | None, allowed: set[int] | None,
                interrupts: dict[int, str]) -> dict[int, Irq]:
    """Queue number -> its IRQ, matched by name among the device's own IRQs when known."""
    patterns = _irq_patterns(dev, bus)
    found: dict[int, Irq] = {}
    for irq, name in sorted(interrupts.items()):
        if allowed is not None and irq not in allowed:
            continue
        for pat in patterns:
            m = pat.match(name)
            if m:
                queue = int(m.group(1))
                found.setdefault(queue, Irq(irq, name, _irq_affinity(root, irq)))
                break
    return found


def _irq_affinity(root: str, irq: int) -> tuple[int, ...]:
    """Where the IRQ really fires: effective affinity when the kernel reports one."""
    for name in ("effective_affinity_list", "smp_affinity_list"):
        text = _read(root, f"proc/irq/{irq}/{name}")
        if text:
            try:
                return parse_cpulist(text)
            except ValueError:
                continue
    return ()


# ---------------------------------------------------------------------------- devices

def _device_link(root: str, dev: str) -> str | None:
    """The resolved `device` directory of a net device, or None for virtual devices."""
    path = _path(root, f"{NET_DIR}/{dev}/device")
    return os.path.realpath(path) if os.path.isdir(path) else None


def _link_name(path: str) -> str | None:
    """Basename of a symlink's target (sysfs names a driver only that way), or None."""
    try:
        return os.path.basename(os.readlink(path).rstrip("/"))
    except OSError:
        return None


def _first_up(devdir: str, rel: str, levels: int = 2) -> str | None:
    """Find `rel` in devdir or its parents: virtio_net's link points at virtioK, whose PCI
    parent holds numa_node and msi_irqs."""
    d = devdir
    for _ in range(levels):
        p = os.path.join(d, rel)
        if os.path.lexists(p):  # lexists: a captured driver link may point at nothing
            return p
        d = os.path.dirname(d)
    return None


def _read_device(root: str, dev: str, interrupts: dict[int, str]) -> Device:
    base = f"{NET_DIR}/{dev}"
    if not os.path.isdir(_path(root, base)):
        raise DeviceNotFound(f"device {dev!r} not found under {_path(root, NET_DIR)}")
    devdir = _device_link(root, dev)
    driver = bus = None
    numa: int | None = None
    allowed: set[int] | None = None
    if devdir is not None:
        bus = os.path.basename(devdir)
        drv = _first_up(devdir, "driver", 1)
        driver = _link_name(drv) if drv else None
        numa_path = _first_up(devdir, "numa_node")
        numa = _read_int(numa_path, "") if numa_path else None
        numa = None if numa is None or numa < 0 else numa
        msi = _first_up(devdir, "msi_irqs")
        if msi:
            allowed = {int(n) for n in os.listdir(msi) if n.isdigit()} or None
    queue_names = _listdir(root, f"{base}/queues")
    irqs = _queue_irqs(root, dev, bus, allowed, interrupts) if devdir else {}
    rx = tuple(_rx_queue(root, base, q, irqs.get(q), devdir is not None)
               for q in _numbered(queue_names, "rx-"))
    tx = tuple(TxQueue(q, _mask(root, f"{base}/queues/tx-{q}/xps_cpus"))
               for q in _numbered(queue_names, "tx-"))
    return Device(dev, driver, numa, rx, tx, bus)


def _mask(root: str, rel: str) -> tuple[int, ...]:
    text = _read(root, rel)
    try:
        return parse_cpumask(text) if text else ()
    except ValueError:
        return ()


def _rx_queue(root: str, base: str, queue: int, irq: Irq | None, hardware: bool) -> RxQueue:
    rps = _mask(root, f"{base}/queues/rx-{queue}/rps_cpus")
    irq_cpus = irq.cpus if irq else ()
    if rps:
        serviced, cpus = "rps", rps
    elif irq:
        serviced, cpus = "irq", irq_cpus
    else:
        serviced, cpus = ("unknown" if hardware else "sender"), ()
    return RxQueue(queue=queue, irq=irq.irq if irq else None, irq_name=irq.name if irq else None,
                   cpus=cpus, serviced_by=serviced, rps_cpus=rps, irq_cpus=irq_cpus)


def describe_queue(q: RxQueue) -> str:
    """One line for humans: "rx-3 irq 101 (mlx5_comp3@pci:0000:81:00.0) -> CPU 11"."""
    if q.irq is not None:
        irq = f"irq {q.irq} ({q.irq_name})"
        irq_where = _cpus_words(q.irq_cpus) if q.irq_cpus else "unknown CPUs"
    else:
        irq, irq_where = "no irq", ""
    if q.serviced_by == "rps":
        on = f" on {irq_where}" if irq_where else ""
        return f"rx-{q.queue} {irq}{on}, RPS -> {_cpus_words(q.rps_cpus)}"
    if q.serviced_by == "sender":
        return f"rx-{q.queue} {irq} -> the sending CPU"
    if q.serviced_by == "unknown":
        return f"rx-{q.queue} {irq} -> unknown CPUs (no IRQ name matched this queue)"
    return f"rx-{q.queue} {irq} -> {irq_where}"


def _cpus_words(cpus: tuple[int, ...]) -> str:
    return f"CPU{'s' if len(cpus) > 1 else ''} {format_cpulist(cpus)}"
