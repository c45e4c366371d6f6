"""Flows that reach every receiver in the lab: source ports picked by probing the receiver
namespace's SO_REUSEPORT group, checked against where a real lab run's flows landed (the
loopback half is tests/unit/test_steering.py). Needs root for the lab."""

from __future__ import annotations

import json
import secrets

import pandas as pd
from support import pps

from pps.lab.bed import lab_down


def test_a_lab_run_picks_ports_across_namespaces(tmp_path):
    lab_id = "s" + secrets.token_hex(3)
    out = tmp_path / "r"
    sets = ["run.warmup=0.1", "run.drain=0.2", "target.port=47899", "lab.enabled=true",
            f"lab.id={lab_id}", "receivers.count=2", "senders.flows=8"]
    try:
        done = pps("run", "--json", "--out", str(out), "--duration", "0.5",
                   *[a for s in sets for a in ("--set", s)], timeout=90)
    finally:
        lab_down(lab_id)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    flows = pd.read_parquet(out / "flows.parquet")
    run_json = json.loads((out / "run.json").read_text())
    assert flows["receiver"].value_counts().to_dict() == {0: 4, 1: 4}
    assert (flows["predicted_receiver"] == flows["receiver"]).all()
    notes = run_json["flow_pick"]["notes"]
    assert any(f"pps-{lab_id}-r has no RSS key" in n for n in notes)
    assert summary["ledger"]["unaccounted"] == 0
