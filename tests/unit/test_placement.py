"""The pure planner, on every captured topology and every policy."""

from __future__ import annotations

import dataclasses
import os

import pytest
from support import DATA

from pps.config.model import build_config, load_config
from pps.errors import ConfigError, PlacementError
from pps.host.topology import read_topology
from pps.plan.placement import plan_workers

TOPO = str(DATA / "topo")
# fixture -> (device to align with, NIC node or None, multi-node?, SMT?)
MACHINES = {
    "mlx5-2socket": ("enp129s0f0np0", 1, True, True),
    "i40e-2socket": ("eth0", 0, True, False),
    "virtio-vm": ("eth0", None, False, False),
    "ena-smt-vm": ("ens5", None, False, True),
    "bnxt-sfc-amd": ("ens2f0", 1, True, True),
    "this-host": ("lo", None, False, False),
}
POLICIES = ("spread", "local", "sibling", "smt-sibling", "remote", "explicit")


def topo(name):
    return read_topology(os.path.join(TOPO, name))


def config(*sets):
    return load_config(None, list(sets))


def plan(name, *sets, device="default"):
    dev = MACHINES[name][0] if device == "default" else device
    return plan_workers(topo(name), config(*sets), dev)


def _expected_error(name, policy):
    _, _, multi, smt = MACHINES[name]
    if policy == "remote" and not multi:
        return "remote needs a second NUMA node; this machine has one"
    if policy == "smt-sibling" and not smt:
        return "no online SMT sibling"
    return None


@pytest.mark.parametrize("name", MACHINES)
@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_on_every_fixture(name, policy):
    t = topo(name)
    dev_name, nic_node, _, _ = MACHINES[name]
    dev = t.devices[dev_name]
    n = 2 if len(t.online_cpus) > 2 else 1
    sets = [f"receivers.count={n}", "senders.count=1"]
    sets += ["receivers.cpus=1"] if policy == "explicit" else [f"receivers.placement={policy}"]
    error = _expected_error(name, policy)
    if error:
        with pytest.raises(PlacementError, match=error):
            plan_workers(t, config(*sets), dev_name)
        return
    p = plan_workers(t, config(*sets), dev_name)
    assert p.policy == policy and p.device == dev_name
    assert len(p.receivers) == n and len(p.senders) == 1
    online = set(t.online_cpus)
    assert all(w.cpu in online and w.node == t.node_of(w.cpu) for w in p.workers)
    for w in p.receivers:
        q = dev.rx_queues[w.index % len(dev.rx_queues)]
        queue_cpu = q.cpus[0] if q.cpus else p.senders[0].cpu  # "sender": the sender's CPU
        me, home = t.cpu(w.cpu), t.cpu(queue_cpu)
        if policy == "local":
            assert w.cpu == queue_cpu and w.queue == q.queue
        elif policy == "sibling":
            assert me.node == home.node and me.core_key != home.core_key
        elif policy == "smt-sibling":
            assert w.cpu in home.siblings
        elif policy == "remote":
            assert me.node != (nic_node if nic_node is not None else home.node)
        elif policy == "explicit":
            assert w.cpu == 1
    if policy in ("spread", "local", "sibling", "smt-sibling", "remote") and len(online) > n + 1:
        # enough CPUs: senders are apart from the receivers
        assert not {w.cpu for w in p.senders} & {w.cpu for w in p.receivers}
    d = p.to_dict()
    assert d["policy"] == policy and len(d["workers"]) == n + 1
    assert all({"role", "index", "cpu", "node", "queue", "reason"} <= set(w) for w in d["workers"])


def test_default_on_this_two_cpu_machine():
    t = read_topology("/")
    if len(t.online_cpus) != 2:
        pytest.skip("this check is for the 2-CPU test machine")
    p = plan_workers(t, config(), "lo")
    assert [(w.role, w.cpu) for w in p.workers] == [("sender", 0), ("receiver", 1)]
    assert p.notes == ()


def test_remote_on_mlx5_puts_every_receiver_on_node_0():
    p = plan("mlx5-2socket", "receivers.placement=remote", "receivers.count=8", "senders.count=4")
    assert {w.node for w in p.receivers} == {0}
    assert len({w.cpu for w in p.receivers}) == 8
    assert [w.queue for w in p.receivers] == list(range(8))
    assert not {w.cpu for w in p.senders} & {w.cpu for w in p.receivers}


def test_local_on_mlx5_follows_the_irqs():
    p = plan("mlx5-2socket", "receivers.placement=local", "receivers.count=8")
    assert [w.cpu for w in p.receivers] == list(range(8, 16))
    assert all(w.node == 1 for w in p.receivers)
    assert "IRQ 98" in p.receivers[0].reason or "irq 98" in p.receivers[0].reason.lower()
    assert p.senders[0].node == 0  # node 1's first threads are taken; sender goes elsewhere


def test_spread_prefers_the_nic_node_and_distinct_cores():
    p = plan("mlx5-2socket", "receivers.count=10")
    nodes = [w.node for w in p.receivers]
    cores = [(w.node, topo("mlx5-2socket").cpu(w.cpu).core) for w in p.receivers]
    assert nodes[:8] == [1] * 8  # node 1 has 8 cores: one receiver per core first
    assert len(set(cores)) == 10  # then other cores rather than SMT twins


def test_spread_avoids_explicit_sender_cpus():
    p = plan("i40e-2socket", "senders.cpus=1-2", "senders.count=2", "receivers.count=2")
    assert [w.cpu for w in p.senders] == [1, 2]
    assert not {w.cpu for w in p.receivers} & {1, 2}


def test_sibling_avoids_the_queue_core_with_smt():
    t = topo("mlx5-2socket")
    p = plan("mlx5-2socket", "receivers.placement=sibling", "receivers.count=8")
    for w in p.receivers:
        assert w.node == 1 and t.cpu(w.cpu).core_key != t.cpu(8 + w.queue).core_key


def test_more_receivers_than_queues_wrap_and_share():
    p = plan("bnxt-sfc-amd", "receivers.placement=local", "receivers.count=6")
    assert [w.queue for w in p.receivers] == [0, 1, 2, 3, 0, 1]
    assert any("receivers 0 and 4 share CPU 4" == n for n in p.notes)


def test_wide_irq_affinity_is_noted():
    p = plan("i40e-2socket", "receivers.placement=local", "receivers.count=8")
    assert p.receivers[7].cpu == 0
    assert any("IRQ 137 may fire on CPUs 0-7" in n for n in p.notes)


def test_remote_with_unknown_nic_node_uses_the_queue_cpu_node():
    t = topo("i40e-2socket")
    dev = t.devices["eth0"]
    t2 = dataclasses.replace(t, devices={"eth0": dataclasses.replace(dev, numa_node=None)})
    p = plan_workers(t2, config("receivers.placement=remote", "receivers.count=2"), "eth0")
    assert {w.node for w in p.receivers} == {1}
    assert any("reports no NUMA node" in n for n in p.notes)


def test_lo_local_shares_the_sender_cpu_on_purpose():
    p = plan("this-host", "receivers.placement=local")
    assert p.receivers[0].cpu == p.senders[0].cpu
    assert any("serviced by the CPU that sends" in n for n in p.notes)
    assert any("share CPU" in n for n in p.notes)


def test_rps_device_local_uses_rps_cpus():
    p = plan("virtio-vm", "receivers.placement=local", "receivers.count=2", device="veth-a")
    assert p.receivers[0].cpu == 2 and p.receivers[0].queue == 0  # rx-0 RPS on 2-3
    assert p.receivers[1].cpu == p.senders[0].cpu  # rx-1: no RPS, the sender's CPU


def test_one_cpu_machine_still_plans():
    t = topo("virtio-vm")
    one = dataclasses.replace(t, cpus=t.cpus[:1], nodes={0: (0,)})
    p = plan_workers(one, config(), "lo")
    assert [w.cpu for w in p.workers] == [0, 0]
    assert "senders and receivers share CPU 0" in p.notes


@pytest.mark.parametrize("sets,device,message", [
    (["receivers.placement=remote"], "lo", "remote needs a second NUMA node; this machine has one"),
    (["receivers.placement=local"], None, "set target.device"),
    (["receivers.placement=smt-sibling"], "lo", "no online SMT sibling"),
    (["receivers.placement=spread"], "eth9", "device 'eth9' is not in the topology"),
])
def test_impossible_requests_say_why(sets, device, message):
    with pytest.raises(PlacementError, match=message):
        plan_workers(topo("this-host"), config(*sets), device)


@pytest.mark.parametrize("sets,message", [
    (["receivers.cpus=4-5"], "receivers.cpus: CPU 4-5 does not exist on this machine"),
    (["senders.cpus=9"], "senders.cpus: CPU 9 does not exist"),
])
def test_cpus_the_machine_lacks_are_a_config_error(sets, message):
    with pytest.raises(ConfigError, match=message):
        plan_workers(topo("this-host"), config(*sets), "lo")


def test_offline_cpu_in_explicit_list_is_refused():
    with pytest.raises(PlacementError, match="receivers.cpus names offline CPU 15"):
        plan("ena-smt-vm", "receivers.cpus=14-15")


def test_unknown_queue_cpu_is_an_error_not_a_guess():
    t = topo("i40e-2socket")
    dev = t.devices["eth0"]
    blind = tuple(dataclasses.replace(q, irq=None, irq_name=None, cpus=(), serviced_by="unknown")
                  for q in dev.rx_queues)
    t2 = dataclasses.replace(t, devices={"eth0": dataclasses.replace(dev, rx_queues=blind)})
    with pytest.raises(PlacementError, match="cannot tell which CPU services eth0 rx-0"):
        plan_workers(t2, config("receivers.placement=local"), "eth0")


def test_build_config_objects_work_too():
    cfg = build_config({"receivers": {"placement": "remote", "count": 2}})
    p = plan_workers(topo("bnxt-sfc-amd"), cfg, "ens1f0np0")  # bnxt on node 0
    assert {w.node for w in p.receivers} == {1}


def test_explicit_round_robin_and_overlap_note():
    p = plan("i40e-2socket", "receivers.cpus=3,5", "receivers.count=3", "senders.cpus=3")
    assert [w.cpu for w in p.receivers] == [3, 5, 3]
    assert "senders and receivers share CPU 3" in p.notes


def test_senders_keep_off_queue_irq_cpus_when_they_can():
    p = plan("i40e-2socket", "receivers.placement=local", "receivers.count=3", "senders.count=2")
    assert [w.cpu for w in p.receivers] == [0, 1, 2]
    assert {w.node for w in p.senders} == {1}  # CPUs 0-7 take eth0's queue IRQs
