"""What scripts read: `--json` (start, intervals, summary), `--json-stream` (a line per
interval as it happens), the error object on failure, and every config key listed from the
schema, in the docs and the README."""

from __future__ import annotations

import json
import re

import pytest
from support import ROOT, pps

from pps.config import keys as config_keys
from pps.config.model import SCHEMA, load_config

PORTS = iter(range(47500, 47600))
SHORT = ["--duration", "1", "--set", "run.warmup=0.25", "--set", "run.drain=0.1",
         "--set", "run.display_interval=0.25"]


def test_json_has_start_intervals_and_the_documented_keys(tmp_path):
    proc = pps("run", "--json", *SHORT, "--set", "run.interval=0.25", "--out", str(tmp_path / "r"),
               "--set", f"target.port={next(PORTS)}")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # one object, nothing else on stdout
    assert doc["start"]["config"]["senders"]["batch"] == 64
    assert doc["start"]["host"]["kernel"] and doc["start"]["plan"]["workers"]
    phases = [i["phase"] for i in doc["intervals"]]
    assert "warmup" in phases and "measure" in phases
    assert all(i["tx_pps"] >= 0 and i["t1"] > i["t0"] for i in doc["intervals"])
    for key in ("tx_pps", "rx_pps", "tx_packets", "rx_packets", "loss_ratio", "workers", "ledger",
                "latency", "results_dir"):
        assert key in doc
    assert "error" not in doc
    assert "[" in proc.stderr and "kpps" in proc.stderr  # interval lines went to people


def test_json_stream_prints_a_line_per_interval_then_the_summary(tmp_path):
    proc = pps("run", "--json-stream", *SHORT, "--set", "run.interval=0.25",
               "--out", str(tmp_path / "r"), "--set", f"target.port={next(PORTS)}")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "start" in lines[0] and lines[0]["start"]["plan"]["workers"]
    intervals = [line["interval"] for line in lines[1:-1]]
    assert len(intervals) >= 3 and all("rx_pps" in i for i in intervals)
    assert lines[-1]["results_dir"] and lines[-1]["rx_packets"] > 0


@pytest.mark.parametrize("args, code", [
    (["run", "--json", "--set", "senders.batch=0"], 2),                  # a bad value
    (["run", "--json", "--set", "no.such=1"], 2),                        # a bad key
    (["run", "--json", "--no-such-flag"], 2),                            # a bad flag
    (["run", "--json-stream", "/nonexistent.toml"], 2),                  # a missing file
    (["topo", "--json", "--root", "/nonexistent"], 2),
])
def test_a_failure_under_json_is_an_error_object_on_stdout(args, code):
    proc = pps(*args)
    assert proc.returncode == code
    doc = json.loads(proc.stdout)
    assert doc["error"]["exit_code"] == code and doc["error"]["message"]
    assert "Traceback" not in proc.stderr


def test_json_and_json_stream_exclude_each_other():
    proc = pps("run", "--json", "--json-stream")
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


def test_config_keys_lists_every_schema_key_with_its_default():
    rows = {r["key"]: r for r in config_keys.rows()}
    for section, keys in SCHEMA.items():
        for name, key in keys.items():
            row = rows.pop(f"{section}.{name}")
            if (section, name) != ("lab", "id"):
                want = list(key.default) if isinstance(key.default, tuple) else key.default
                assert row["default"] == want
            assert row["meaning"] == key.help
    assert set(rows) == {k for k in rows if k.startswith(("hosts.NAME.", "sweep."))}
    proc = pps("config", "keys", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == json.loads(json.dumps(config_keys.rows()))


def test_the_docs_key_table_is_the_schemas():
    text = (ROOT / "docs" / "config-keys.md").read_text()
    assert config_keys.markdown() in text, "regenerate docs/config-keys.md from pps.config.keys.markdown()"


def test_every_key_the_readme_names_exists_with_the_default_it_says():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| key | default | meaning |"):]
    table = table[:table.index("\n\n")]
    schema = {f"{s}.{n}": k for s, keys in SCHEMA.items() for n, k in keys.items()}
    named = 0
    for line in table.splitlines()[2:]:
        keys = re.findall(r"`([a-z_]+\.[a-z_]+)`", line.split("|")[1])
        for key in keys:
            assert key in schema, f"README names {key}, which the schema does not have"
            named += 1
    assert named >= 20


def test_config_show_loads_back_to_the_same_config(tmp_path):
    sets = ["senders.cpus=0-1", "receivers.cpus=1", "lab.rps_cpus=0,1", "senders.batch=8",
            "run.max_loss=0.01", "target.addresses=['127.0.0.2']"]
    proc = pps("config", "show", *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "c.toml").write_text(proc.stdout)
    assert load_config(tmp_path / "c.toml", []).to_dict() == load_config(None, sets).to_dict()
