"""pps.host.topology against captured trees (tests/data/topo) and this live machine."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from support import DATA

from pps.host.topo_view import describe, format_topology, topology_json
from pps.host.topology import DeviceNotFound, parse_interrupts, read_topology

TOPO = str(DATA / "topo")
FIXTURES = ["mlx5-2socket", "i40e-2socket", "virtio-vm", "ena-smt-vm", "bnxt-sfc-amd", "this-host"]


def fixture(name: str) -> str:
    return os.path.join(TOPO, name)


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_reads_and_renders(name):
    topo = read_topology(fixture(name))
    assert topo.online_cpus
    assert set(topo.online_cpus) <= {c for cpus in topo.nodes.values() for c in cpus}
    text = format_topology(topo)
    assert "node 0" in text and "lo" in text
    doc = json.loads(json.dumps(topology_json(topo)))
    assert {"cpus", "nodes", "devices"} <= set(doc)
    assert all({"cpu", "node", "core"} <= set(c) for c in doc["cpus"])
    for dev in doc["devices"]:
        assert {"name", "driver", "numa_node", "queues"} <= set(dev)
        assert all({"queue", "irq", "cpus"} <= set(q) for q in dev["queues"])


def test_mlx5_two_sockets_smt_queue_irqs():
    topo = read_topology(fixture("mlx5-2socket"))
    assert len(topo.cpus) == 32
    assert topo.nodes[1] == (*range(8, 16), *range(24, 32))
    cpu8 = topo.cpu(8)
    assert cpu8.siblings == (24,) and cpu8.package == 1 and cpu8.core == 0
    # core_id repeats across packages: the physical core key must not.
    assert topo.cpu(0).core == topo.cpu(8).core and topo.cpu(0).core_key != cpu8.core_key
    assert topo.cpu(5).core == 8  # Intel's core_id gaps are kept as the kernel reports them
    dev = topo.devices["enp129s0f0np0"]
    assert dev.driver == "mlx5_core" and dev.numa_node == 1 and dev.bus == "0000:81:00.0"
    names = [f"mlx5_comp{i}@pci:0000:81:00.0" for i in range(8)]
    assert [q.irq_name for q in dev.rx_queues] == names
    assert [q.cpus for q in dev.rx_queues] == [(8 + i,) for i in range(8)]
    assert all(q.serviced_by == "irq" for q in dev.rx_queues)
    assert [q.xps_cpus for q in dev.tx_queues] == [(8 + i,) for i in range(8)]


def test_i40e_names_and_wide_affinity_without_effective():
    dev = read_topology(fixture("i40e-2socket")).devices["eth0"]
    assert dev.driver == "i40e" and dev.numa_node == 0
    assert dev.rx_queues[3].irq == 133 and dev.rx_queues[3].irq_name == "i40e-eth0-TxRx-3"
    # the misc vector is not a queue
    assert all("misc" not in (q.irq_name or "") for q in dev.rx_queues)
    assert dev.rx_queues[7].cpus == tuple(range(8))  # smp_affinity_list 0-7, no effective list


def test_virtio_vm_without_node_directory():
    topo = read_topology(fixture("virtio-vm"))
    assert not os.path.exists(os.path.join(fixture("virtio-vm"), "sys/devices/system/node"))
    assert topo.nodes == {0: (0, 1, 2, 3)}
    assert all(topo.node_of(c) == 0 for c in topo.online_cpus)
    dev = topo.devices["eth0"]
    assert dev.driver == "virtio_net" and dev.bus == "virtio0"
    assert dev.numa_node is None  # -1 on the PCI parent
    assert [q.irq_name for q in dev.rx_queues] == [f"virtio0-input.{i}" for i in range(4)]
    assert [q.cpus for q in dev.rx_queues] == [(0,), (1,), (2,), (3,)]


def test_rps_and_sender_serviced_queues():
    veth = read_topology(fixture("virtio-vm"), ["veth-a"]).devices["veth-a"]
    assert veth.driver is None and veth.numa_node is None and not veth.has_queue_irqs
    rx0, rx1 = veth.rx_queues
    assert (rx0.serviced_by, rx0.cpus, rx0.rps_cpus, rx0.irq) == ("rps", (2, 3), (2, 3), None)
    assert (rx1.serviced_by, rx1.cpus, rx1.irq) == ("sender", (), None)


def test_ena_numa_minus_one_and_offline_cpu():
    topo = read_topology(fixture("ena-smt-vm"))
    assert topo.devices["ens5"].numa_node is None
    assert topo.devices["ens5"].rx_queues[5].irq_name == "ens5-Tx-Rx-5"
    c15 = topo.cpu(15)
    assert not c15.online and c15.core == -1 and c15.node == 0  # node from its cpu15/node0 link
    assert 15 not in topo.online_cpus and len(topo.online_cpus) == 15
    assert topo.cpu(7).siblings == ()  # its twin is offline
    assert topo.cpu(3).siblings == (11,)
    assert "offline 15" in format_topology(topo)


def test_bnxt_and_sfc_names():
    topo = read_topology(fixture("bnxt-sfc-amd"))
    bnxt, sfc = topo.devices["ens1f0np0"], topo.devices["ens2f0"]
    assert (bnxt.driver, bnxt.numa_node, sfc.driver, sfc.numa_node) == ("bnxt_en", 0, "sfc", 1)
    assert [q.irq_name for q in bnxt.rx_queues] == [f"ens1f0np0-TxRx-{i}" for i in range(4)]
    assert [q.irq_name for q in sfc.rx_queues] == [f"ens2f0-{i}" for i in range(4)]
    assert topo.nodes[1] == (4, 5, 6, 7, 12, 13, 14, 15)


def test_msi_irqs_keep_devices_apart(tmp_path):
    """Two devices named alike: msi_irqs decides which IRQ is whose."""
    root = tmp_path / "t"
    shutil.copytree(fixture("bnxt-sfc-amd"), root, symlinks=True)
    with open(root / "proc/interrupts", "a") as f:
        f.write(" 500:  0  PCI-MSIX-0000:99:00.0 1-edge  ens2f0-9\n")
    sfc = read_topology(str(root), ["ens2f0"]).devices["ens2f0"]
    assert all(q.irq != 500 for q in sfc.rx_queues)


def test_parse_interrupts_names():
    text = (
        "           CPU0       CPU1\n"
        "  98:          1          2  PCI-MSIX-0000:81:00.0    1-edge      "
        "mlx5_comp0@pci:0000:81:00.0\n"
        " 130:          0          0  IR-PCI-MSI 1572865-edge      i40e-eth0-TxRx-0\n"
        "NMI:          0          0   Non-maskable interrupts\n"
    )
    assert parse_interrupts(text) == {98: "mlx5_comp0@pci:0000:81:00.0", 130: "i40e-eth0-TxRx-0"}


@pytest.mark.parametrize("driver_name,irq_name", [
    ("ixgbe", "eth3-TxRx-2"), ("ice", "ice-eth3-TxRx-2"), ("bnxt_en", "eth3-TxRx-2"),
    ("sfc", "eth3-2"), ("ena", "eth3-Tx-Rx-2"), ("igb", "eth3-rx-2"),
])
def test_irq_naming_per_driver(tmp_path, driver_name, irq_name):
    root = tmp_path
    pci = root / "sys/devices/pci0000:00/0000:00:02.0"
    (pci / "msi_irqs").mkdir(parents=True)
    (pci / "msi_irqs" / "77").write_text("msix\n")
    (pci / "numa_node").write_text("-1\n")
    drivers = root / "sys/bus/pci/drivers" / driver_name
    drivers.mkdir(parents=True)
    os.symlink(os.path.relpath(drivers, pci), pci / "driver")
    net = root / "sys/class/net/eth3"
    for q in range(3):
        (net / f"queues/rx-{q}").mkdir(parents=True)
    os.symlink(os.path.relpath(pci, net), net / "device")
    (root / "proc/irq/77").mkdir(parents=True)
    (root / "proc/irq/77/smp_affinity_list").write_text("1\n")
    (root / "proc/interrupts").write_text(f"   CPU0\n 77:  5  PCI-MSIX 3-edge  {irq_name}\n")
    dev = read_topology(str(root), ["eth3"]).devices["eth3"]
    assert dev.driver == driver_name and dev.numa_node is None
    assert [q.irq for q in dev.rx_queues] == [None, None, 77]
    assert dev.rx_queues[2].cpus == (1,)
    assert dev.rx_queues[0].serviced_by == "unknown"  # hardware device, IRQ not found


def test_missing_device_is_named():
    with pytest.raises(DeviceNotFound, match="eth9"):
        read_topology(fixture("virtio-vm"), ["eth9"])


def test_live_topology_matches_this_machine():
    topo = read_topology("/")
    assert len(topo.online_cpus) == os.cpu_count()
    assert set(os.sched_getaffinity(0)) <= set(topo.online_cpus)
    assert "lo" in topo.devices
    lo = topo.devices["lo"]
    assert lo.driver is None and lo.rx_queues and lo.rx_queues[0].irq is None
    assert lo.rx_queues[0].serviced_by in ("sender", "rps")


def test_capture_of_this_host_matches_live():
    live, captured = read_topology("/"), read_topology(fixture("this-host"))
    assert live.online_cpus == captured.online_cpus and live.nodes == captured.nodes


def test_describe_live_gathers_ethtool_and_fixture_does_not():
    topo, info = describe("/", ["lo"])
    assert set(info) == {"lo"} and info["lo"] is not None
    assert "lo:" in format_topology(topo, info)
    _, info = describe(fixture("mlx5-2socket"))
    assert all(v is None for v in info.values())
