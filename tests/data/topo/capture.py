"""Copy the files pps.host.topology reads from a live machine into a fixture tree.

    python3 tests/data/topo/capture.py [DEST]      (default: tests/data/topo/this-host)

Only the files the reader needs are copied; sysfs links (device, driver) are recreated as
relative links inside DEST so the tree can be read anywhere with read_topology(DEST).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys

SRC = "/"


def copy(rel: str, dest: str, placeholder: bool = False) -> None:
    """Copy one file's text. An unreadable file (xps_cpus on a one-queue device) is skipped,
    or left empty with placeholder=True so that its directory survives git."""
    try:
        with open(os.path.join(SRC, rel)) as f:
            text = f.read()
    except OSError:
        if not placeholder:
            return
        text = ""
    out = os.path.join(dest, rel)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)


def link(rel_link: str, target_abs: str, dest: str) -> None:
    """Recreate a symlink at DEST/rel_link pointing at DEST/target_abs, relatively."""
    link_path = os.path.join(dest, rel_link)
    target = os.path.join(dest, target_abs.lstrip("/"))
    os.makedirs(target, exist_ok=True)
    os.makedirs(os.path.dirname(link_path), exist_ok=True)
    os.symlink(os.path.relpath(target, os.path.dirname(link_path)), link_path)


def capture_cpus(dest: str) -> None:
    base = "sys/devices/system/cpu"
    for name in ("online", "offline", "possible", "present"):
        copy(f"{base}/{name}", dest)
    for cpu_dir in glob.glob(f"/{base}/cpu[0-9]*"):
        rel = cpu_dir.lstrip("/")
        for name in ("core_id", "physical_package_id", "thread_siblings_list"):
            copy(f"{rel}/topology/{name}", dest)
        for node in glob.glob(f"{cpu_dir}/node[0-9]*"):  # a link, so git keeps it
            link(node.lstrip("/"), os.path.realpath(node), dest)
    copy("sys/devices/system/node/online", dest)
    for node in glob.glob("/sys/devices/system/node/node[0-9]*"):
        copy(f"{node.lstrip('/')}/cpulist", dest)


def capture_device(dev: str, dest: str) -> None:
    net = f"sys/class/net/{dev}"
    os.makedirs(os.path.join(dest, net, "queues"), exist_ok=True)
    for q in glob.glob(f"/{net}/queues/rx-*"):
        copy(f"{q.lstrip('/')}/rps_cpus", dest, placeholder=True)
    for q in glob.glob(f"/{net}/queues/tx-*"):
        copy(f"{q.lstrip('/')}/xps_cpus", dest, placeholder=True)
    if not os.path.isdir(f"/{net}/device"):
        return
    devdir = os.path.realpath(f"/{net}/device")
    link(f"{net}/device", devdir, dest)
    if os.path.islink(f"{devdir}/driver"):
        link(f"{devdir.lstrip('/')}/driver", os.path.realpath(f"{devdir}/driver"), dest)
    for d in (devdir, os.path.dirname(devdir)):  # virtio: the PCI parent has these
        copy(f"{d.lstrip('/')}/numa_node", dest)
        for irq in glob.glob(f"{d}/msi_irqs/[0-9]*"):
            os.makedirs(os.path.dirname(os.path.join(dest, irq.lstrip("/"))), exist_ok=True)
            open(os.path.join(dest, irq.lstrip("/")), "w").close()


def capture_irqs(dest: str) -> None:
    copy("proc/interrupts", dest)
    for irq_dir in glob.glob("/proc/irq/[0-9]*"):
        if re.fullmatch(r"\d+", os.path.basename(irq_dir)):
            for name in ("smp_affinity_list", "effective_affinity_list"):
                copy(f"{irq_dir.lstrip('/')}/{name}", dest)


def main(argv: list[str]) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    dest = os.path.abspath(argv[0]) if argv else os.path.join(here, "this-host")
    shutil.rmtree(dest, ignore_errors=True)
    capture_cpus(dest)
    for dev in sorted(os.listdir("/sys/class/net")):
        capture_device(dev, dest)
    capture_irqs(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
