"""The results contract: run.json typed (pps.results.record), schema version 2, and the
reader that gives version 1 directories (tests/data/results_v1, written by pps before the
version 2 changes) in the current shape to `pps report`, `pps compare` and `pps history`.

One short loopback run (about 3 s), the rest from files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from support import DATA, pps

from pps.results import schema
from pps.results.record import (
    FlowPick,
    Latency,
    Plan,
    Record,
    RunRecord,
    Summary,
    Topology,
    record_classes,
)
from pps.results.store import (
    SCHEMA_VERSION,
    read_run_json,
    read_runs_table,
    read_sweep_json,
    read_trial,
    save_trial,
)

V1_SWEEP = DATA / "results_v1" / "sweep"
V1_TRIALS = [V1_SWEEP / "trials" / "0000", V1_SWEEP / "trials" / "0001"]
PORT = 47810
SHORT = ["--set", "run.warmup=0.2", "--set", "run.drain=0.1", "--set", "run.interval=0.25"]


def extras(obj: object, where: str = "run.json") -> list[str]:
    """Every key some typed object did not know, anywhere under obj."""
    found = []
    if isinstance(obj, Record):
        found += [f"{where}.{k}" for k in obj.extra]
        for key in obj:
            found += extras(obj[key], f"{where}.{key}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            found += extras(item, f"{where}[{i}]")
    elif isinstance(obj, dict):
        for key, item in obj.items():
            found += extras(item, f"{where}.{key}")
    return found


@pytest.fixture(scope="module")
def v2_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("contract") / "run"
    done = pps("run", "--duration", "0.5", *SHORT, "--set", f"target.port={PORT}",
               "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    return out, json.loads(done.stdout)


# ----------------------------------------------------------------------------- typed run.json

def test_schema_version_is_2():
    assert SCHEMA_VERSION == 2 == RunRecord().schema_version


def test_a_real_run_json_is_typed_throughout_and_round_trips(v2_run):
    out, printed = v2_run
    written = json.loads((out / "run.json").read_text())
    assert written["schema_version"] == 2
    record = RunRecord.from_dict(written)
    assert extras(record) == [], "run.json has keys the typed classes do not know"
    assert isinstance(record.summary, Summary) and isinstance(record.summary.latency, Latency)
    assert isinstance(record.plan, Plan) and isinstance(record.topology, Topology)
    assert isinstance(record.flow_pick, FlowPick)
    assert record.summary.workers[0].role in ("sender", "receiver")
    assert record.host.before.kernel and record.checks[0].name
    assert record.to_json() == written  # the same keys and values; results_dir left out
    # --json is the summary with results_dir, plus start and intervals.
    summary = {k: v for k, v in printed.items() if k not in ("start", "intervals")}
    assert summary == {**written["summary"], "results_dir": str(out)}
    assert extras(Summary.from_dict(summary)) == []


def test_every_typed_class_is_reachable_from_the_record():
    names = {c.__name__ for c in record_classes()}
    assert {"RunRecord", "Summary", "HostMeta", "Plan", "Topology", "Check", "Lab",
            "HostInfo", "LedgerSummary", "Balance", "Latency"} <= names


def test_the_typed_objects_read_and_write_as_the_dicts_they_replace():
    summary = Summary.from_dict({"tx_pps": 10.0, "rx_pps": 9.0, "latency": {"p50_ns": 5},
                                 "balance": {"cpus": {"counts": {"0": 3}, "total": 3}},
                                 "newer_key": [1]})
    assert summary["tx_pps"] == summary.tx_pps == 10.0 and summary.get("rx_pps") == 9.0
    assert summary.latency.p50_ns == 5 and summary["latency"]["p50_ns"] == 5
    assert summary.extra == {"newer_key": [1]} and summary.to_dict()["newer_key"] == [1]
    # Optional keys are absent, not null, until set; other keys are there as null.
    assert "stopped_by" not in summary and summary.get("stopped_by") is None
    assert "failure" in summary and summary["failure"] is None
    assert "stopped_by" not in summary.to_dict() and summary.to_dict()["failure"] is None
    summary["stopped_by"] = "SIGTERM"
    assert summary.stopped_by == "SIGTERM" and summary.to_dict()["stopped_by"] == "SIGTERM"
    # Setting a typed key converts a dict to its type (pps.plan.flowpick sets flow_pick so).
    summary["flow_pick"] = {"mode": "rss", "notes": [], "receiver_predicted": 2}
    assert summary.flow_pick.receiver_predicted == 2 and summary.flow_pick.mode == "rss"
    receivers = (summary.get("balance") or {}).get("receivers")
    assert receivers is None  # absent parts read as missing, as in the dict
    summary.balance["cpus"]["flows_predicted"] = {"0": 1}
    assert summary.to_dict()["balance"]["cpus"]["flows_predicted"] == {"0": 1}
    assert dict(Latency(p50_ns=1)) == {"p50_ns": 1, "p90_ns": None, "p99_ns": None,
                                      "p999_ns": None, "max_ns": None}


def test_save_trial_writes_the_record_and_read_trial_types_it_again(tmp_path):
    record = RunRecord.from_dict({"config": {"run": {"label": "x"}}, "source": "defaults",
                                  "summary": {"tx_pps": 1.0, "results_dir": "/elsewhere"}})
    samples = pd.DataFrame({"t": [0.5], "pps": [2.0]})  # as summary.samples_table makes it
    saved = save_trial(tmp_path / "r", record, {"samples": samples})
    written = json.loads((saved.path / "run.json").read_text())
    assert written["schema_version"] == 2 and "results_dir" not in written["summary"]
    trial = read_trial(saved.path)
    assert trial.record.summary.tx_pps == 1.0 and trial.record.config["run"]["label"] == "x"
    assert list(trial.tables["samples"].columns) == ["t_s", "pps"]  # written in v2 columns


def test_across_hosts_topology_is_under_hosts():
    topo = {"a": {"root": "/", "cpus": [], "devices": []}, "b": {"root": "/", "cpus": []}}
    upgraded = schema.topology(topo)
    assert upgraded == {"hosts": topo} and schema.topology(upgraded) == upgraded
    one = {"root": "/", "cpus": [{"cpu": 0}], "nodes": {"0": [0]}, "devices": []}
    assert schema.topology(one) is one
    record = Topology.from_dict(upgraded)
    assert record.hosts["a"].root == "/" and record.to_dict() == {"hosts": {
        "a": {"root": "/", "cpus": [], "devices": []}, "b": {"root": "/", "cpus": []}}}


# ----------------------------------------------------------------------------- version 1

def test_the_v1_data_is_version_1_and_small():
    assert json.loads((V1_SWEEP / "sweep.json").read_text())["schema_version"] == 1
    for trial in V1_TRIALS:
        run = json.loads((trial / "run.json").read_text())
        assert run["schema_version"] == 1
        assert "t" in pd.read_parquet(trial / "samples.parquet").columns
    size = sum(p.stat().st_size for p in V1_SWEEP.parent.rglob("*") if p.is_file())
    assert size < 210_000


def test_v1_tables_are_read_in_the_current_columns():
    trial = read_trial(V1_TRIALS[0])
    assert trial.run["schema_version"] == 1  # what the file says
    samples, workers, counters = (trial.tables[t] for t in ("samples", "workers", "counters"))
    assert "t_s" in samples and "t" not in samples
    assert {"rcvbuf_bytes", "sndbuf_bytes"} <= set(workers) and "rcvbuf" not in workers
    assert list(counters.columns) == ["t_s", "source", "netns", "device", "queue", "cpu", "name",
                                      "kernel_name", "layer", "value", "delta", "reset"]
    udp = counters[(counters["source"] == "snmp") & (counters["name"] == "UdpRcvbufErrors")]
    assert set(udp["layer"]) == {"udp"} and set(udp["kernel_name"]) == {"UdpRcvbufErrors"}
    assert extras(trial.record) == []
    # The same rows as the file, with the new columns: nothing dropped or reordered.
    raw = pd.read_parquet(V1_TRIALS[0] / "counters.parquet")
    assert len(raw) == len(counters)
    assert (raw["value"].to_numpy() == counters["value"].to_numpy()).all()


def test_v1_repetitions_are_read_from_1():
    sweep = read_sweep_json(V1_SWEEP)
    assert [t["repetition"] for t in sweep["trials"]] == [1, 2]
    assert list(read_runs_table(V1_SWEEP)["repetition"]) == [1, 2]
    assert list(pd.read_parquet(V1_SWEEP / "runs.parquet")["repetition"]) == [0, 1]  # on disk


def test_v1_run_json_reads_as_the_current_shape():
    run = read_run_json(V1_TRIALS[1])
    record = RunRecord.from_dict(run)
    assert record.schema_version == 1 and record.summary.ledger.layers["udp"] > 0
    assert record.to_dict() == run


def test_report_reads_a_v1_sweep_and_a_v1_run(tmp_path):
    done = pps("report", str(V1_SWEEP), "--out", str(tmp_path / "sweep"), timeout=120)
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "sweep" / "report.md").read_text()
    assert "batch=64 r1" in markdown and "batch=64 r2" in markdown  # repetitions from 1
    assert "| sweep | 0000 | 64 | 1 | done |" in markdown
    assert "| sweep | 0001 | 64 | 2 | done |" in markdown
    pngs = {p.name for p in (tmp_path / "sweep").glob("*.png")}
    assert {"timeseries.png", "ledger.png", "workers.png"} <= pngs
    runs = pd.read_csv(tmp_path / "sweep" / "runs.csv")
    assert list(runs["repetition"]) == [1, 2]
    single = pps("report", str(V1_TRIALS[0]), "--out", str(tmp_path / "run"), timeout=120)
    assert single.returncode == 0, single.stderr
    assert "| 1 |" in (tmp_path / "run" / "report.md").read_text()


def test_compare_and_history_read_v1(tmp_path, v2_run):
    same = pps("compare", str(V1_SWEEP), str(V1_SWEEP), "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["verdict"] in ("pass", "inconclusive")
    # A v1 sweep against this pps's run: other host and config maybe, so forced; both read.
    mixed = pps("compare", str(V1_TRIALS[0]), str(v2_run[0]), "--force", "--json")
    assert mixed.returncode in (0, 1), mixed.stderr
    assert json.loads(mixed.stdout)["verdict"]
    copy = tmp_path / "again"
    shutil.copytree(V1_SWEEP, copy)
    history = pps("history", str(V1_SWEEP), str(copy), "--keep-order", "--out",
                  str(tmp_path / "h"), "--json")
    assert history.returncode in (0, 1), history.stderr
    assert (tmp_path / "h" / "trend.png").exists()
