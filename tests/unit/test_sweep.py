"""Sweeps on loopback: a short batch sweep and its report (valid PNGs), the runs table and
sweep.json, and Ctrl-C in the middle of a sweep followed by --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from support import pps, pps_start

from pps.config.model import load_config
from pps.errors import ConfigError
from pps.experiments.sweep import plan_trials, run_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SHORT = ["run.duration=0.5", "run.warmup=0.2", "run.drain=0.2", "run.interval=0.25"]


def sweep_file(tmp_path: Path, port: int, reps: int = 2) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(f"""
[target]
port = {port}

[run]
duration = 0.5
warmup = 0.2
drain = 0.2
interval = 0.25
repetitions = {reps}

[sweep]
"senders.batch" = [8, 64]
""")
    return path


def test_plan_interleaves_repetitions():
    config = load_config(None, [*SHORT, "run.repetitions=2"])
    config = config.__class__(**{**config.__dict__, "sweep": (("senders.batch", (8, 64)),)})
    trials = plan_trials(config)
    assert [(t.point["senders.batch"], t.repetition) for t in trials] == [(8, 1), (64, 1), (8, 2), (64, 2)]
    assert [t.config.senders.batch for t in trials] == [8, 64, 8, 64]
    assert all(t.config.sweep == () for t in trials)


def test_sweep_and_report(tmp_path):
    out = tmp_path / "sweep"
    done = pps("sweep", str(sweep_file(tmp_path, 47300)), "--out", str(out), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "[4/4]" in done.stderr  # plain progress lines when stderr is not a terminal
    saved = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in saved["trials"]] == ["done"] * 4
    assert saved["points"] == [{"senders.batch": 8}, {"senders.batch": 64}]
    runs = pd.read_parquet(out / "runs.parquet")
    assert list(runs["trial"]) == [0, 1, 2, 3]
    assert list(runs["senders.batch"]) == [8, 64, 8, 64]
    assert list(runs["repetition"]) == [1, 1, 2, 2]  # from 1 (schema 2)
    for column in ("tx_pps", "rx_pps", "tx_packets", "rx_packets", "loss_ratio", "drops_udp",
                   "unaccounted", "latency_p50_ns", "latency_p99_ns", "receiver_cpu_s", "results"):
        assert column in runs
    assert (runs["rx_pps"] > 0).all()
    for results in runs["results"]:
        assert json.loads((out / results / "run.json").read_text())["summary"]["rx_pps"] > 0

    rep = pps("report", str(out), "--out", str(tmp_path / "report"), timeout=120)
    assert rep.returncode == 0, rep.stderr
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "senders.batch" in markdown and "## Results by point" in markdown
    pngs = sorted((tmp_path / "report").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"rate-vs-senders-batch.png", "workers.png", "ledger.png", "timeseries.png"} <= names
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert f"]({png.name})" in markdown


def test_report_copes_with_old_and_partial_results(tmp_path):
    """A trial written by schema 1 without schema_version, with only some of its tables."""
    config = load_config(None, [*SHORT, "target.port=47301"])
    result = run_sweep(config, tmp_path / "s")
    trial = tmp_path / "s" / result.runs["results"][0]
    run = json.loads((trial / "run.json").read_text())
    del run["schema_version"]
    assert run["summary"].pop("ledger")
    (trial / "run.json").write_text(json.dumps(run))
    for table in ("counters", "workers", "samples"):
        (trial / f"{table}.parquet").unlink()
    rep = pps("report", str(trial), "--out", str(tmp_path / "r"), timeout=120)
    assert rep.returncode == 0, rep.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert "no samples, workers, counters table(s)" in text
    assert (tmp_path / "r" / "rate-by-run.png").read_bytes()[:8] == PNG_SIGNATURE


def test_refuses_to_overwrite_or_resume_a_different_config(tmp_path):
    config = load_config(None, [*SHORT, "target.port=47302"])
    out = tmp_path / "s"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        run_sweep(config, out)
    with pytest.raises(ConfigError, match="not a sweep directory"):
        run_sweep(config, out, resume=True)


@pytest.mark.parametrize("content, words", [
    (b"null", "should hold a JSON object, not null"),
    (b"[]", "should hold a JSON object, not array"),
    (b"\xff\xfe", "not UTF-8"),
    (b'{"schema_version": 9, "trials": []}', "newer pps"),
    (b'{"trials": "all"}', "trials should be an array"),
    (b'{"trials": [{"trial": "first"}]}', "trial should be a number"),
    (None, "a FIFO"),
])
def test_resume_refuses_a_damaged_or_newer_sweep_json(tmp_path, content, words):
    config = load_config(None, [*SHORT, "target.port=47304"])
    out = tmp_path / "s"
    out.mkdir()
    if content is None:
        os.mkfifo(out / "sweep.json")
    else:
        (out / "sweep.json").write_bytes(content)

    def never(*args, **kwargs):
        raise AssertionError("a trial ran")

    with pytest.raises(ConfigError, match=words) as info:
        run_sweep(config, out, resume=True, execute=never)
    assert "\n" not in str(info.value) and "sweep.json" in str(info.value)


def _wait_for_done(out: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            trials = json.loads((out / "sweep.json").read_text())["trials"]
        except (OSError, ValueError):
            trials = []
        if any(t["status"] == "done" for t in trials):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no trial finished in time")


def test_interrupted_sweep_resumes(tmp_path):
    config_file = sweep_file(tmp_path, 47303)
    out = tmp_path / "sweep"
    proc = pps_start("sweep", str(config_file), "--out", str(out))
    _wait_for_done(out, proc)
    time.sleep(0.3)  # into the second trial's measurement
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "--resume" in err
    saved = json.loads((out / "sweep.json").read_text())
    statuses = [t["status"] for t in saved["trials"]]
    assert statuses[0] == "done" and "pending" in statuses
    assert set(statuses) <= {"done", "interrupted", "pending"}
    finished = {t["results"]: (out / t["results"] / "run.json").read_bytes()
                for t in saved["trials"] if t["status"] == "done"}
    interrupted = [t for t in saved["trials"] if t["status"] == "interrupted"]
    for t in interrupted:  # the interrupted trial is saved too, and says so
        assert json.loads((out / t["results"] / "run.json").read_text())["summary"]["interrupted"]

    changed = tmp_path / "changed.toml"
    changed.write_text(config_file.read_text().replace("[8, 64]", "[8, 32]"))
    refused = pps("sweep", str(changed), "--out", str(out), "--resume", timeout=120)
    assert refused.returncode == 2
    assert "cannot resume" in refused.stderr and "[8, 32]" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "differs" in refused.stderr

    resumed = pps("sweep", str(config_file), "--out", str(out), "--resume", timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    saved = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in saved["trials"]] == ["done"] * 4
    for results, before in finished.items():
        assert (out / results / "run.json").read_bytes() == before  # untouched
    assert len(pd.read_parquet(out / "runs.parquet")) == 4
    assert all((out / t["results"] / "run.json").exists() for t in saved["trials"])
