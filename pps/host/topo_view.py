"""`pps topo`: the machine's CPUs, nodes and device queues as a table or as JSON.

`describe` gathers (topology from sysfs, ethtool settings when looking at this live
machine); `format_topology` and `topology_json` only shape what they are given.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pps.config.cpulist import format_cpulist
from pps.errors import EnvironmentNotAble
from pps.host import ethtool
from pps.host.topology import Device, Topology, describe_queue, read_topology

DeviceInfo = dict[str, dict[str, Any] | None]  # device -> ethtool.device_settings() or None


def describe(root: str = "/", devices: Iterable[str] | None = None,
             live: bool = True) -> tuple[Topology, dict[str, DeviceInfo | None]]:
    """Read the topology, and ethtool settings per device when root is this machine."""
    topo = read_topology(root, devices)
    info: dict[str, DeviceInfo | None] = {}
    is_live = live and os.path.realpath(root) == "/"
    for name in topo.devices:
        info[name] = _settings(name) if is_live else None
    return topo, info


def _settings(name: str) -> DeviceInfo | None:
    try:
        return ethtool.device_settings(name)
    except EnvironmentNotAble:  # the device vanished between sysfs and the ioctl
        return None


def topology_json(topo: Topology,
                  info: dict[str, DeviceInfo | None] | None = None) -> dict[str, Any]:
    """The `pps topo --json` object: Topology.to_dict() with each device's ethtool settings."""
    out = topo.to_dict()
    for dev in out["devices"]:
        dev["ethtool"] = (info or {}).get(dev["name"])
    return out


# ---------------------------------------------------------------------------- text

def format_topology(topo: Topology, info: dict[str, DeviceInfo | None] | None = None) -> str:
    lines = [f"topology of {topo.root}", ""]
    lines += _cpu_lines(topo)
    for dev in topo.devices.values():
        lines.append("")
        lines += _device_lines(dev, (info or {}).get(dev.name))
    return "\n".join(lines) + "\n"


def _cpu_lines(topo: Topology) -> list[str]:
    online = set(topo.online_cpus)
    offline = [c.cpu for c in topo.cpus if not c.online]
    lines = [f"CPUs: {len(online)} online ({format_cpulist(online)})"
             + (f", offline {format_cpulist(offline)}" if offline else "")
             + f"; NUMA nodes: {len(topo.nodes)}"]
    for node, cpus in sorted(topo.nodes.items()):
        lines.append(f"  node {node}: CPUs {format_cpulist(cpus) or '-'}")
        cores: dict[tuple[int, int], list[int]] = {}
        for cpu in cpus:
            info = topo.cpu(cpu)
            if info and info.online:
                cores.setdefault(info.core_key, []).append(cpu)
        groups = [format_cpulist(threads) for threads in sorted(cores.values(), key=min)]
        smt = any(len(threads) > 1 for threads in cores.values())
        label = "cores (SMT siblings joined)" if smt else "cores (no SMT)"
        lines.append(f"    {len(cores)} {label}: {' '.join('[' + g + ']' for g in groups)}")
    return lines


def _device_lines(dev: Device, info: DeviceInfo | None) -> list[str]:
    drv = (info or {}).get("driver_info") or {}
    driver = dev.driver or drv.get("driver") or "none (virtual device)"
    extra = ", ".join(f"{k} {drv[k]}" for k in ("version", "firmware", "bus") if drv.get(k))
    node = "unknown" if dev.numa_node is None else str(dev.numa_node)
    extra = f" ({extra})" if extra else ""
    lines = [f"{dev.name}: driver {driver}{extra}, NUMA node {node}"]
    if info is not None:
        lines.append(f"  channels: {_channels(info.get('channels'))}")
        lines.append(f"  rings: {_rings(info.get('rings'))}")
        lines.append(f"  udp4 RSS hash: {_rss(info.get('rss_udp4'))}")
    kinds = {q.serviced_by for q in dev.rx_queues}
    if "sender" in kinds:
        lines.append("  no per-queue IRQs: a queue without RPS is serviced by the sending CPU")
    for q in dev.rx_queues:
        lines.append(f"  {describe_queue(q)}")
    xps = [f"tx-{q.queue} {format_cpulist(q.xps_cpus)}" for q in dev.tx_queues if q.xps_cpus]
    xps_text = f"XPS {', '.join(xps)}" if xps else "no XPS"
    lines.append(f"  tx queues: {len(dev.tx_queues)}; {xps_text}")
    return lines


def _channels(ch: dict[str, int] | None) -> str:
    if ch is None:
        return "not reported"
    parts = [f"{k} {ch[k]}/{ch['max_' + k]}" for k in ("combined", "rx", "tx", "other")
             if ch[k] or ch["max_" + k]]
    return ", ".join(parts) + " (current/max)" if parts else "none"


def _rings(r: dict[str, int] | None) -> str:
    if r is None:
        return "not reported"
    return f"rx {r['rx']}/{r['rx_max']}, tx {r['tx']}/{r['tx_max']} (current/max)"


def _rss(h: dict[str, Any] | None) -> str:
    if h is None:
        return "not reported"
    if not h["fields"]:
        return "none"
    return f"{h['letters']} ({', '.join(h['fields'])})"
