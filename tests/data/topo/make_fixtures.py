"""Write the synthetic topology fixtures (tests/data/topo/*/) from short layout tables.

The layouts copy real machines (CPU numbering, core_id gaps, IRQ names, sysfs links); see
README.md. The trees are committed, so this runs only to change them:
    python3 tests/data/topo/make_fixtures.py
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from pps.config.cpulist import format_cpulist

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Nic:
    name: str
    driver: str
    pci: str  # e.g. "pci0000:80/0000:80:02.0/0000:81:00.0"
    numa: int  # -1 = unknown, as the kernel writes it
    irq_names: list[str]  # per RX queue, in queue order
    irq_cpus: list[str]  # affinity list per queue IRQ
    extra_irqs: list[str] = field(default_factory=list)  # async/misc/output vectors
    virtio: str | None = None  # virtio_net: "virtio0" child of the PCI function
    effective: bool = True  # kernel reports effective_affinity_list
    rps: dict[int, str] = field(default_factory=dict)  # queue -> hex mask
    xps: bool = True


@dataclass
class Machine:
    name: str
    packages: list[list[tuple[int, list[int]]]]  # per package: (core_id, [thread cpus])
    nodes: dict[int, list[int]] | None  # None: no node directory at all
    nics: list[Nic]
    offline: list[int] = field(default_factory=list)
    virtual: dict[str, dict[int, str]] = field(default_factory=dict)  # dev -> queue -> rps
    irq_base: int = 40


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")


def symlink(target_abs: str, link: str) -> None:
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.makedirs(target_abs, exist_ok=True)
    os.symlink(os.path.relpath(target_abs, os.path.dirname(link)), link)


def build(m: Machine) -> None:
    root = os.path.join(HERE, m.name)
    shutil.rmtree(root, ignore_errors=True)
    cpu_dir = os.path.join(root, "sys/devices/system/cpu")
    all_cpus = sorted(c for pkg in m.packages for _, threads in pkg for c in threads)
    online = [c for c in all_cpus if c not in m.offline]
    write(f"{cpu_dir}/online", format_cpulist(online))
    write(f"{cpu_dir}/offline", format_cpulist(m.offline))
    write(f"{cpu_dir}/possible", format_cpulist(all_cpus))
    write(f"{cpu_dir}/present", format_cpulist(all_cpus))
    node_of = {c: n for n, cs in (m.nodes or {0: all_cpus}).items() for c in cs}
    for pkg_id, pkg in enumerate(m.packages):
        for core_id, threads in pkg:
            for cpu in threads:
                if m.nodes is not None:  # the cpuN/nodeK link, kept for offline CPUs too
                    symlink(f"{root}/sys/devices/system/node/node{node_of[cpu]}",
                            f"{cpu_dir}/cpu{cpu}/node{node_of[cpu]}")
                if cpu in m.offline:  # the kernel removes topology/ when a CPU goes down
                    write(f"{cpu_dir}/cpu{cpu}/online", "0")
                    continue
                topo = f"{cpu_dir}/cpu{cpu}/topology"
                write(f"{topo}/core_id", str(core_id))
                write(f"{topo}/physical_package_id", str(pkg_id))
                # an offline thread drops out of its twin's sibling list too
                alive = [t for t in threads if t not in m.offline]
                write(f"{topo}/thread_siblings_list", format_cpulist(alive))
    if m.nodes is not None:
        for n, cs in m.nodes.items():
            write(f"{root}/sys/devices/system/node/node{n}/cpulist",
                  format_cpulist([c for c in cs if c not in m.offline]))
        write(f"{root}/sys/devices/system/node/online", format_cpulist(list(m.nodes)))
    irq_lines, irq = [], m.irq_base
    for nic in m.nics:
        irq = build_nic(root, nic, irq, irq_lines, len(all_cpus))
    for dev, rps in m.virtual.items():
        base = f"{root}/sys/class/net/{dev}/queues"
        for q in range(max(len(rps), 1)):
            write(f"{base}/rx-{q}/rps_cpus", rps.get(q, "0"))
            write(f"{base}/tx-{q}/xps_cpus", "0")
    header = " " * 11 + "".join(f"CPU{c:<7d}" for c in all_cpus)
    tail = ["NMI:" + "          0" * len(all_cpus) + "   Non-maskable interrupts",
            "LOC:" + "       1000" * len(all_cpus) + "   Local timer interrupts"]
    write(f"{root}/proc/interrupts", "\n".join([header, *irq_lines, *tail]))


def build_nic(root: str, nic: Nic, irq: int, lines: list[str], ncpu: int) -> int:
    pci_dir = f"{root}/sys/devices/{nic.pci}"
    dev_dir = f"{pci_dir}/{nic.virtio}" if nic.virtio else pci_dir
    symlink(f"{root}/sys/bus/{'virtio' if nic.virtio else 'pci'}/drivers/{nic.driver}",
            f"{dev_dir}/driver")
    write(f"{pci_dir}/numa_node", str(nic.numa))
    net = f"{root}/sys/class/net/{nic.name}"
    symlink(dev_dir, f"{net}/device")
    bus = os.path.basename(nic.pci)
    counts = "          0" * ncpu
    for q, (name, aff) in enumerate(zip(nic.irq_names, nic.irq_cpus)):
        write(f"{pci_dir}/msi_irqs/{irq}", "msix")
        write(f"{root}/proc/irq/{irq}/smp_affinity_list", aff)
        if nic.effective:
            write(f"{root}/proc/irq/{irq}/effective_affinity_list", aff.split("-")[0].split(",")[0])
        lines.append(f"{irq:4d}:{counts}  PCI-MSIX-{bus} {q + 1}-edge      {name}")
        write(f"{net}/queues/rx-{q}/rps_cpus", nic.rps.get(q, "0"))
        first = int(aff.split("-")[0].split(",")[0])
        write(f"{net}/queues/tx-{q}/xps_cpus", format(1 << first, "x") if nic.xps else "0")
        irq += 1
    for name in nic.extra_irqs:
        write(f"{pci_dir}/msi_irqs/{irq}", "msix")
        write(f"{root}/proc/irq/{irq}/smp_affinity_list", "0")
        lines.append(f"{irq:4d}:{counts}  PCI-MSIX-{bus} 0-edge      {name}")
        irq += 1
    return irq + 8  # leave a gap, as real IRQ numbers have


def intel_2s(cores: list[int], threads: int, per_pkg: int,
             smt: bool) -> list[list[tuple[int, list[int]]]]:
    """Intel numbering: package p core k is CPU p*per_pkg+k, its SMT twin that + threads/2."""
    half = threads // 2 if smt else threads
    pkgs = []
    for p in range(2):
        pkg = []
        for k, core in enumerate(cores):
            cpu = p * per_pkg + k
            pkg.append((core, [cpu, cpu + half] if smt else [cpu]))
        pkgs.append(pkg)
    return pkgs


MLX5 = Machine(
    name="mlx5-2socket",
    packages=intel_2s([0, 1, 2, 3, 4, 8, 9, 10], 32, 8, smt=True),
    nodes={0: [*range(0, 8), *range(16, 24)], 1: [*range(8, 16), *range(24, 32)]},
    nics=[Nic("enp129s0f0np0", "mlx5_core", "pci0000:80/0000:80:02.0/0000:81:00.0", 1,
              [f"mlx5_comp{q}@pci:0000:81:00.0" for q in range(8)],
              [str(8 + q) for q in range(8)], extra_irqs=["mlx5_async0@pci:0000:81:00.0"])],
    virtual={"lo": {}},
    irq_base=98,
)

I40E = Machine(
    name="i40e-2socket",
    packages=intel_2s([0, 1, 2, 3, 4, 5, 6, 7], 16, 8, smt=False),
    nodes={0: list(range(0, 8)), 1: list(range(8, 16))},
    nics=[Nic("eth0", "i40e", "pci0000:3a/0000:3a:00.0/0000:3b:00.0", 0,
              [f"i40e-eth0-TxRx-{q}" for q in range(8)], [str(q) for q in range(7)] + ["0-7"],
              extra_irqs=["i40e-0000:3b:00.0:misc"], effective=False)],
    virtual={"lo": {}},
    irq_base=130,
)

VIRTIO = Machine(
    name="virtio-vm",
    packages=[[(c, [c]) for c in range(4)]],
    nodes=None,
    nics=[Nic("eth0", "virtio_net", "pci0000:00/0000:00:03.0", -1,
              [f"virtio0-input.{q}" for q in range(4)], [str(q) for q in range(4)],
              extra_irqs=["virtio0-config"] + [f"virtio0-output.{q}" for q in range(4)],
              virtio="virtio0", xps=False)],
    virtual={"lo": {}, "veth-a": {0: "c", 1: "0"}},
    irq_base=24,
)

ENA = Machine(
    name="ena-smt-vm",
    packages=[[(c, [c, c + 8]) for c in range(8)]],
    nodes={0: list(range(16))},
    nics=[Nic("ens5", "ena", "pci0000:00/0000:00:05.0", -1,
              [f"ens5-Tx-Rx-{q}" for q in range(8)], [str(q) for q in range(8)],
              extra_irqs=["ena-mgmnt@pci:0000:00:05.0"])],
    offline=[15],
    virtual={"lo": {}},
    irq_base=26,
)

AMD = Machine(
    name="bnxt-sfc-amd",
    packages=[[(c, [c, c + 8]) for c in range(8)]],
    nodes={0: [0, 1, 2, 3, 8, 9, 10, 11], 1: [4, 5, 6, 7, 12, 13, 14, 15]},
    nics=[Nic("ens1f0np0", "bnxt_en", "pci0000:40/0000:40:01.1/0000:41:00.0", 0,
              [f"ens1f0np0-TxRx-{q}" for q in range(4)], [str(q) for q in range(4)]),
          Nic("ens2f0", "sfc", "pci0000:c0/0000:c0:03.1/0000:c1:00.0", 1,
              [f"ens2f0-{q}" for q in range(4)], [str(4 + q) for q in range(4)])],
    virtual={"lo": {}},
    irq_base=60,
)

if __name__ == "__main__":
    for machine in (MLX5, I40E, VIRTIO, ENA, AMD):
        build(machine)
