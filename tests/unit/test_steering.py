"""Flows that reach every queue and every receiver: the Toeplitz RSS hash against Microsoft's
verification vectors, source ports picked by probing the SO_REUSEPORT group, checked against
where real runs' flows landed, and SO_INCOMING_CPU steering as the kernel really does it."""

from __future__ import annotations

import functools
import json
import os
import secrets
import socket
import struct

import pandas as pd
import pytest
from support import pps

from pps.config.model import load_config
from pps.errors import EnvironmentNotAble
from pps.host import rss
from pps.host.sockets import open_senders
from pps.plan import flowpick

PORTS = iter(range(47800, 47900))

# Microsoft, "Verifying the RSS Hash Calculation": the key and, per row, destination,
# source, hash of the addresses only, hash with the ports (the "with TCP" column; UDP hashes
# the same four fields in the same order).
MS_KEY = bytes.fromhex("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c"
                       "6a42b73bbeac01fa")
MS_IPV4 = [
    ("161.142.100.80", 1766, "66.9.149.187", 2794, 0x323E8FC2, 0x51CCC178),
    ("65.69.140.83", 4739, "199.92.111.2", 14230, 0xD718262A, 0xC626B0EA),
    ("12.22.207.184", 38024, "24.19.198.95", 12898, 0xD2D0A5DE, 0x5C2B394A),
    ("209.142.163.6", 2217, "38.27.205.30", 48228, 0x82989176, 0xAFC7327F),
    ("202.188.127.2", 1303, "153.39.163.191", 44251, 0x5D1809C5, 0x10E828A2),
]
MS_IPV6 = [
    ("3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2CC18CD5, 0x40207D3D),
    ("ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0F0C461C, 0xDDE51BBF),
    ("fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251,
     0x4B61E985, 0x02D1FEEF),
]


def run(tmp_path, *sets: str) -> tuple[dict, pd.DataFrame, dict]:
    """A short real `pps run`: its JSON summary, flows table and run.json."""
    out = tmp_path / f"r{secrets.token_hex(3)}"
    args = ["run", "--json", "--out", str(out), "--duration", "0.5", "--set", "run.warmup=0.1",
            "--set", "run.drain=0.2", "--set", f"target.port={next(PORTS)}"]
    for item in sets:
        args += ["--set", item]
    done = pps(*args, timeout=90)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    return (summary, pd.read_parquet(out / "flows.parquet"),
            json.loads((out / "run.json").read_text()))


# ---------------------------------------------------------------------------- Toeplitz

@pytest.mark.parametrize("row", MS_IPV4 + MS_IPV6, ids=lambda r: r[0])
def test_toeplitz_matches_the_microsoft_vectors(row):
    dst, dport, src, sport, addresses_only, with_ports = row
    assert rss.toeplitz(MS_KEY, rss.hash_input(src, dst, sport, dport, "sd")) == addresses_only
    assert rss.toeplitz(MS_KEY, rss.hash_input(src, dst, sport, dport, "sdfn")) == with_ports


def test_a_key_too_short_for_the_input_is_refused():
    with pytest.raises(ValueError, match="too short"):
        rss.toeplitz(MS_KEY[:12], rss.hash_input("1.2.3.4", "5.6.7.8", 1, 2))


def test_the_queue_is_the_table_entry_the_hash_selects():
    indir = tuple(range(4)) * 32  # 128 entries over 4 queues, as drivers spread them
    table = rss.RssTable(MS_KEY, indir, rss.ETH_RSS_HASH_TOP, 0, "sdfn")
    assert table.problem() is None and table.queues == (0, 1, 2, 3) and table.ports_hashed
    dst, dport, src, sport, _, h = MS_IPV4[0]
    assert table.queue(src, dst, sport, dport) == indir[h % 128] == (0x51CCC178 % 128) % 4
    assert "xor" in rss.RssTable(MS_KEY, indir, 1 << 1, 0, "sdfn").problem()
    assert "symmetric" in rss.RssTable(MS_KEY, indir, rss.ETH_RSS_HASH_TOP, 1, "sdfn").problem()
    assert "rx-flow-hash" in rss.RssTable(MS_KEY, indir, rss.ETH_RSS_HASH_TOP, 0, "").problem()
    assert not rss.RssTable(MS_KEY, indir, rss.ETH_RSS_HASH_TOP, 0, "sd").ports_hashed


def test_grssh_reply_decodes():
    indir = (0, 1, 2, 3, 0, 1, 2, 3)
    buf = rss.RXFH.pack(0x46, 0, len(indir), len(MS_KEY), rss.ETH_RSS_HASH_TOP, 0, 0)
    buf += struct.pack(f"={len(indir)}I", *indir) + MS_KEY
    assert rss.decode_rxfh_sizes(buf) == (8, 40)
    assert rss.decode_rxfh(buf) == (indir, MS_KEY, rss.ETH_RSS_HASH_TOP, 0)
    assert rss.RXFH.size == 24  # struct ethtool_rxfh before rss_config[]


def test_lo_has_no_rss_key_and_says_so():
    assert rss.read_rss("lo", None) is None


def test_ports_are_picked_to_spread_flows_over_rss_queues():
    """One receiver, a NIC-like table: 8 flows over 4 queues, 2 each; each predicted queue
    recomputed here from the chosen port."""
    table = rss.RssTable(MS_KEY, tuple(range(4)) * 32, rss.ETH_RSS_HASH_TOP, 0, "sdfn")
    port = next(PORTS)
    setting = flowpick.Setting(senders=[(0, 0)], receivers=[(0, 1)], flows=8,
                               destinations=["127.0.0.1"], port=port, bind="127.0.0.1", rss=table)
    pick = flowpick.choose(setting, seed=1)
    assert pick.mode == "rss"
    queues = [f.queue for f in pick.flows]
    assert sorted(queues) == [0, 0, 1, 1, 2, 2, 3, 3]
    for f in pick.flows:
        assert table.queue("127.0.0.1", "127.0.0.1", f.source_port, port) == f.queue
    assert len({f.source_port for f in pick.flows}) == 8


# ---------------------------------------------------------------------------- receivers

@pytest.mark.parametrize("receivers", [2, 4])
def test_a_run_lands_exactly_flows_over_n_on_each_receiver(tmp_path, receivers):
    summary, flows, run_json = run(tmp_path, f"receivers.count={receivers}", "senders.flows=8")
    measured = flows["receiver"].value_counts().to_dict()
    assert measured == {r: 8 // receivers for r in range(receivers)}
    # The probe predicted every flow's receiver, and the kernel did what it predicted.
    assert (flows["predicted_receiver"] == flows["receiver"]).all()
    assert summary["flow_pick"]["receiver_as_predicted"] == 8
    pick = run_json["flow_pick"]
    assert pick["mode"] == "reuseport-probe"
    assert [f["source_port"] for f in pick["flows"]] == list(flows["source_port"])
    assert any("lo has no RSS key" in n for n in pick["notes"])
    assert summary["balance"]["receivers"]["flows_predicted"] == {str(r): 8 // receivers
                                                                  for r in range(receivers)}


def test_the_pick_is_in_control_not_lucky(monkeypatch):
    """Told to put all 8 flows on receiver 1, it does: by chance that is 1 in 256."""
    from pps.run.pipeline import execute

    monkeypatch.setattr(flowpick, "choose",
                        functools.partial(flowpick.choose, target=lambda sender, flow: 1))
    config = load_config(None, ["receivers.count=2", "senders.flows=8", "run.duration=0.3",
                                "run.warmup=0.1", "run.drain=0.2", f"target.port={next(PORTS)}"])
    report = execute(config, out=None)
    flows = report.tables["flows"]
    assert list(flows["receiver"]) == [1] * 8 and (flows["received"] > 0).all()


def test_with_the_pick_off_the_kernel_chooses_ports_and_nothing_is_predicted(tmp_path):
    summary, flows, run_json = run(tmp_path, "receivers.count=2", "senders.flows=8",
                                   "senders.pick_ports=off")
    assert run_json["flow_pick"]["mode"] == "off"
    assert flows["predicted_receiver"].isna().all()
    assert summary["flow_pick"]["receiver_predicted"] == 0
    assert flows["receiver"].notna().all() and len(set(flows["source_port"])) == 8


def test_a_bad_pick_value_is_a_config_error():
    done = pps("run", "--set", "senders.pick_ports=always", "--duration", "0.1")
    assert done.returncode == 2 and "auto, off" in done.stderr


def test_a_taken_source_port_is_a_clear_error():
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("0.0.0.0", 0))
    try:
        taken = r"source port \d+ \(chosen by the port pick\)"
        with pytest.raises(EnvironmentNotAble, match=taken):
            open_senders([("127.0.0.1", next(PORTS))], source_ports=[squatter.getsockname()[1]])
    finally:
        squatter.close()


# ---------------------------------------------------------------------------- SO_INCOMING_CPU

STEER = ["senders.count=2", "senders.cpus=0,1", "receivers.count=2", "receivers.cpus=0,1",
         "senders.flows=4"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to steer between")
def test_incoming_cpu_gives_packets_to_the_receiver_on_the_cpu_that_processed_them(tmp_path):
    """On loopback the sending CPU processes the packet (netif_rx -> its own backlog). With
    SO_INCOMING_CPU each flow reaches the receiver on its sender's CPU whatever its source
    port: ports left to the kernel here, so the hash alone would split a sender's 4 flows
    (all 8 aligned by chance: 1 in 256). Without steering, the pick splits each sender 2/2."""
    _, flows, run_json = run(tmp_path, *STEER, "receivers.steer=incoming-cpu",
                             "senders.pick_ports=off")
    cpu = {(w["role"], w["index"]): w["cpu"] for w in run_json["workers"]}
    receiver_on = {c: i for (role, i), c in cpu.items() if role == "receiver"}
    for f in flows.itertuples():
        assert f.received > 0 and f.receiver == receiver_on[cpu[("sender", f.sender)]]

    _, picked, run_json = run(tmp_path, *STEER, "receivers.steer=incoming-cpu")
    assert (picked["predicted_receiver"] == picked["receiver"]).all()  # the probe sees steering

    _, hashed, _ = run(tmp_path, *STEER)
    assert (hashed["predicted_receiver"] == hashed["receiver"]).all()
    for sender in (0, 1):
        mine = hashed[hashed["sender"] == sender]
        assert sorted(mine["receiver"]) == [0, 0, 1, 1]
