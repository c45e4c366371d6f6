"""Tables that answer a question in one line of pandas (schema 2): each counter's ledger
`layer` and `kernel_name`, a sweep's own counters table with a `trial` column, repetitions
from 1, units in column names. A short loopback run and a two-trial sweep, about 15 s."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from support import DATA, pps

from pps.counters.collectors import Reading
from pps.counters.table import annotate, ledger_layers, to_frame
from pps.experiments.sweep import _append_counters

RUN_PORT, SWEEP_PORT = 47811, 47812
SHORT = ["--set", "run.warmup=0.2", "--set", "run.drain=0.1", "--set", "run.interval=0.25"]
LAYERS = {"send", "nic", "backlog", "ip", "udp", "none"}
V1_COUNTERS = DATA / "results_v1" / "sweep" / "trials" / "0000" / "counters.parquet"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tables") / "run"
    done = pps("run", "--duration", "0.5", *SHORT, "--set", f"target.port={RUN_PORT}",
               "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("tables-sweep")
    config = base / "sweep.toml"
    config.write_text(f"[target]\nport = {SWEEP_PORT}\n\n[run]\nduration = 0.3\nwarmup = 0.2\n"
                      "drain = 0.1\ninterval = 0.25\nrepetitions = 2\n\n"
                      '[sweep]\n"senders.batch" = [64]\n')
    done = pps("sweep", str(config), "--out", str(base / "sweep"), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    return base / "sweep", json.loads(done.stdout)


# ----------------------------------------------------------------------------- counters

def test_every_counter_has_its_ledger_layer_and_kernel_name(run_dir):
    c = pd.read_parquet(run_dir / "counters.parquet")
    assert {"kernel_name", "layer"} <= set(c.columns)
    assert list(c.columns).index("kernel_name") == list(c.columns).index("name") + 1
    assert set(c["layer"]) <= LAYERS and c["layer"].notna().all()
    layer = c.groupby(["source", "name"])["layer"].first()
    assert layer[("snmp", "UdpRcvbufErrors")] == "udp"
    assert layer[("snmp", "IpInDiscards")] == "ip"
    assert layer[("softnet", "dropped")] == "backlog"
    assert layer[("link", "tx_dropped")] == "send"
    assert layer[("link", "rx_missed_errors")] == "nic"
    assert layer[("link", "rx_packets")] == "none" and layer[("softirqs", "NET_RX")] == "none"
    # Every counter the ledger adds up is in a layer, and the one it says.
    run = json.loads((run_dir / "run.json").read_text())
    for key in run["summary"]["ledger"]["drops"]:
        source, name = key.split(".", 1)
        assert layer[(source, name.removesuffix("(other)"))] != "none", key
    # One line: the drop counters that moved, by layer. Loopback has no ethtool counters, so
    # every name is the kernel's.
    moved = c[c["layer"] != "none"].groupby(["layer", "source", "name"])["delta"].sum()
    assert moved.index.get_level_values("layer").isin(LAYERS - {"none"}).all()
    assert (c["kernel_name"] == c["name"]).all()


def test_kernel_name_puts_the_queue_number_back():
    snapshots = [(float(t), [(None, Reading("ethtool", "rx_queue_N_drops", 5 + t, "eth0", 3)),
                             (None, Reading("ethtool", "rxN_packets", 9, "eth0", 12)),
                             (None, Reading("ethtool", "rx_missed_errors", 1, "eth0")),
                             (None, Reading("snmp", "UdpInErrors", 2))]) for t in range(2)]
    df = annotate(to_frame(snapshots))
    names = dict(zip(df["name"], df["kernel_name"]))
    assert names == {"rx_queue_N_drops": "rx_queue_3_drops", "rxN_packets": "rx12_packets",
                     "rx_missed_errors": "rx_missed_errors", "UdpInErrors": "UdpInErrors"}
    layers = dict(zip(df["name"], df["layer"]))
    assert layers == {"rx_queue_N_drops": "nic", "rxN_packets": "none",
                      "rx_missed_errors": "nic", "UdpInErrors": "udp"}
    assert annotate(df).equals(df)  # already annotated: as it is
    assert list(df.columns)[:1] == ["t_s"]


def test_layers_come_from_the_ledger_with_every_alternative_name():
    # The virtio map has two names for one drop; a table with both gets both in the nic layer.
    got = ledger_layers([("ethtool", "rxN_drops"), ("ethtool", "rx_queue_N_drops"),
                         ("ethtool", "rx_queue_N_packets"), ("snmp6", "Udp6RcvbufErrors"),
                         ("socket", "drops"), ("snmp", "IpOutDiscards")])
    assert got == {("ethtool", "rxN_drops"): "nic", ("ethtool", "rx_queue_N_drops"): "nic",
                   ("snmp6", "Udp6RcvbufErrors"): "udp", ("socket", "drops"): "udp",
                   ("snmp", "IpOutDiscards"): "send"}


# ----------------------------------------------------------------------------- sweeps

def test_a_sweep_writes_one_counters_table_with_a_trial_column(sweep_dir):
    out, _ = sweep_dir
    top = pd.read_parquet(out / "counters.parquet")
    assert top.columns[0] == "trial" and list(top["trial"].unique()) == [0, 1]
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(top["trial"]) == set(runs["trial"])
    for trial, results in zip(runs["trial"], runs["results"]):
        own = pd.read_parquet(out / results / "counters.parquet")
        mine = top[top["trial"] == trial].drop(columns="trial").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, own[list(mine.columns)], check_dtype=False)
    # Appended a row group at a time: at least one per trial.
    assert pq.ParquetFile(out / "counters.parquet").num_row_groups >= 2
    # One line: UDP receive-buffer drops per trial.
    top[top["name"] == "UdpRcvbufErrors"].groupby("trial")["delta"].sum()


def test_a_sweeps_counters_join_tables_of_either_version(sweep_dir, tmp_path):
    out, _ = sweep_dir
    buf = io.BytesIO()
    _append_counters(buf, [(0, V1_COUNTERS), (1, out / "trials" / "0000" / "counters.parquet")])
    both = pd.read_parquet(io.BytesIO(buf.getvalue()))
    assert list(both["trial"].unique()) == [0, 1] and "t" not in both
    assert {"t_s", "kernel_name", "layer"} <= set(both.columns)
    assert len(both) == len(pd.read_parquet(V1_COUNTERS)) + (both["trial"] == 1).sum()


def test_repetitions_count_from_1(sweep_dir, tmp_path):
    out, printed = sweep_dir
    assert list(pd.read_parquet(out / "runs.parquet")["repetition"]) == [1, 2]
    trials = json.loads((out / "sweep.json").read_text())["trials"]
    assert [t["repetition"] for t in trials] == [1, 2]
    assert [r["repetition"] for r in printed["runs"]] == [1, 2]
    done = pps("report", str(out), "--out", str(tmp_path / "r"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert list(pd.read_csv(tmp_path / "r" / "runs.csv")["repetition"]) == [1, 2]
    assert "batch=64 r1" in (tmp_path / "r" / "report.md").read_text()


# ----------------------------------------------------------------------------- units

# v1 names of columns with a unit, and columns whose unit is their name (a count of packets,
# bytes, calls, events) or that have none.
NO_LONGER = {"t", "rcvbuf", "sndbuf"}


@pytest.mark.parametrize("table", ["samples", "workers", "flows", "counters", "latency"])
def test_columns_with_a_unit_name_it(run_dir, table):
    columns = set(pd.read_parquet(run_dir / f"{table}.parquet").columns)
    assert not columns & NO_LONGER
    timed = {"samples": "t_s", "counters": "t_s"}.get(table)
    assert timed is None or timed in columns
    if table == "workers":
        assert {"rcvbuf_bytes", "sndbuf_bytes", "user_s", "sys_s"} <= columns
    if table == "latency":
        assert {"low_ns", "high_ns"} <= columns
