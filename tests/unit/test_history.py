"""pps history: a real series of short loopback runs whose last point is capped (a
regression: exit 1, named as the first), synthetic series built from one real run with
known rates (the window, points ordered by start time, a kernel change allowed), searches,
and bad input as one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from support import pps

from pps.config.model import load_config
from pps.experiments.history import build_history
from pps.experiments.search_run import run_search
from pps.experiments.sweep import run_sweep

SHORT = ["run.duration=0.5", "run.warmup=0.2", "run.drain=0.2", "run.interval=0.25"]


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Four nights of one paced config, 2 repetitions each; the last capped to 40%. The rates
    are low enough for a loaded 2-CPU host to keep them."""
    root = tmp_path_factory.mktemp("nights")
    dirs = []
    for night, rate in enumerate((20_000, 20_000, 20_000, 8_000)):
        out = root / f"night-{night}"
        run_sweep(load_config(None, [*SHORT, "run.repetitions=2", f"target.port={47320 + night}",
                                     f"senders.rate={rate}", f"run.label=build-{night}"]), out)
        dirs.append(out)
    return dirs


def test_real_series_whose_last_point_regressed(nights, tmp_path):
    out = tmp_path / "trend"
    shuffled = [nights[2], nights[0], nights[3], nights[1]]  # start times put them in order
    done = pps("history", *map(str, shuffled), "--out", str(out), "--json",
               "--threshold", "p99_ns=off", "--threshold", "rx_cpu_ns=off")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert [p["source"] for p in result["points"]] == [str(d) for d in nights]
    assert result["verdict"] == "regression"
    assert result["first_regression"]["position"] == 3
    assert result["first_regression"]["label"] == "build-3"
    assert [r["metric"] for r in result["first_regression"]["regressions"]] == ["rx_pps"]
    assert result["newest"]["regressions"][0]["change_pct"] == pytest.approx(-60, abs=3)
    table = pd.read_parquet(out / "trend.parquet")
    assert set(table["label"]) == {"build-0", "build-1", "build-2", "build-3"}
    rx = table[table["metric"] == "rx_pps"].sort_values("position")
    assert rx["verdict"].tolist()[3] == "regression"
    assert set(rx["verdict"].tolist()[1:3]) <= {"no change", "inconclusive"}
    assert rx["verdict"].isna().tolist()[0]  # the first point has nothing before it
    assert (out / "trend.csv").read_text().startswith("position,source,label,kernel")
    assert (out / "trend.png").stat().st_size > 20_000
    text = pps("history", *map(str, nights), "--out", str(tmp_path / "t2"),
               "--threshold", "p99_ns=off", "--threshold", "rx_cpu_ns=off")
    assert text.returncode == 1
    assert "first regression: #3 night-3 (build-3)" in text.stdout
    assert text.stdout.splitlines()[-4] == "newest: #3 night-3 (build-3): REGRESSED"


def test_a_series_without_regression_exits_0(nights, tmp_path):
    done = pps("history", *map(str, nights[:3]), "--out", str(tmp_path / "t"),
               "--threshold", "p99_ns=off", "--threshold", "rx_cpu_ns=off")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "first regression: none" in done.stdout


# ------------------------------------------------------------------ synthetic series

def _series(tmp_path: Path, source: Path, rates: list[float], kernels: list[str] | None = None) -> list[Path]:
    """Copies of one real trial with the given rx rates, a day apart, in the order given."""
    trial = next(source.glob("trials/*"))
    base_run = json.loads((trial / "run.json").read_text())
    dirs = []
    for i, rate in enumerate(rates):
        d = tmp_path / f"p{i}"
        shutil.copytree(trial, d)
        run = json.loads(json.dumps(base_run))
        run["summary"]["rx_pps"] = rate
        run["started_at"] = 1_800_000_000 + i * 86_400
        run["config"]["run"]["label"] = f"p{i}"
        if kernels:
            run["host"]["before"]["kernel"] = kernels[i]
        (d / "run.json").write_text(json.dumps(run))
        dirs.append(d)
    return dirs


def test_each_point_is_judged_against_the_good_points_before_it(nights, tmp_path):
    rates = [100_000, 101_000, 99_500, 100_400, 100_200, 60_000, 60_500]
    h = build_history(_series(tmp_path, nights[0], rates), keep_order=True)
    rx = h.table[h.table["metric"] == "rx_pps"].set_index("position")
    assert rx.loc[4, "verdict"] == "no change" and rx.loc[4, "test"] == "student-t"
    assert rx.loc[4, "against"] == 4  # nights, not repetitions, once there are 4 of them
    # Point 5 regressed; point 6 is judged against the good points only, so it still does.
    assert rx.loc[5, "verdict"] == rx.loc[6, "verdict"] == "regression"
    assert rx.loc[6, "against"] == 5
    assert h.first_regression["position"] == 5 and h.newest_regressed
    # Other metrics did not move: identical values are no change once there are 2 to compare
    # with (point 1 has one value a side: too few to judge).
    loss = h.table[h.table["metric"] == "loss_pct"].set_index("position")["verdict"]
    assert loss[1] == "inconclusive" and set(loss[2:]) == {"no change"}


def test_a_kernel_change_is_what_a_series_tracks_other_differences_refuse(nights, tmp_path):
    dirs = _series(tmp_path, nights[0], [100_000, 100_500, 99_800], ["6.1", "6.1", "6.8"])
    h = build_history(dirs, keep_order=True)
    assert list(h.table.drop_duplicates("position")["kernel"]) == ["6.1", "6.1", "6.8"]
    run = json.loads((dirs[2] / "run.json").read_text())
    run["config"]["senders"]["batch"] = 8
    (dirs[2] / "run.json").write_text(json.dumps(run))
    done = pps("history", *map(str, dirs), "--out", str(tmp_path / "t"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "config.senders.batch" in done.stderr and "--force" in done.stderr


def test_bad_input_is_a_one_line_error(nights, tmp_path, searches):
    for args in ([str(tmp_path / "missing")], [str(nights[0]), str(searches[0])],
                 [str(nights[0]), "--window", "0"], [str(nights[0]), "--threshold", "x"]):
        done = pps("history", *args, "--out", str(tmp_path / "t"))
        assert done.returncode == 2, done.stdout + done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


# ------------------------------------------------------------------ searches

@pytest.fixture(scope="module")
def searches(tmp_path_factory):
    """Three searches of a simulated receiver, the last one half as fast."""
    root = tmp_path_factory.mktemp("hsearch")
    dirs = []
    for i, ndr in enumerate((400_000, 402_000, 200_000)):
        clock = SimpleNamespace(t=0.0)

        def execute(cfg, *, out, ndr=ndr, **_):
            clock.t += 2.0
            loss = 0.0 if cfg.senders.rate < ndr else 0.05
            out.mkdir(parents=True)
            return SimpleNamespace(summary={"tx_pps": cfg.senders.rate, "rx_pps": cfg.senders.rate,
                                            "loss_ratio": loss, "sent": 1000, "received": 1000,
                                            "latency": {"p50_ns": 10_000, "p99_ns": 40_000}})

        config = load_config(None, ["search.max_rate=1000000", "search.precision=0.01",
                                    "search.confirm=1", f"run.label=s{i}"])
        run_search(config, root / f"s{i}", execute=execute, clock=lambda: clock.t)
        dirs.append(root / f"s{i}")
    return dirs


def test_history_of_searches(searches, tmp_path):
    done = pps("history", *map(str, searches), "--keep-order", "--out", str(tmp_path / "t"), "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["first_regression"]["position"] == 2
    metrics = {r["metric"] for r in result["newest"]["regressions"]}
    assert metrics == {"ndr_pps", "pdr_pps"}
    rows = {(r["position"], r["metric"]): r for r in result["rows"]}
    assert rows[(1, "ndr_pps")]["verdict"] == "no change" and rows[(1, "ndr_pps")]["test"] == "bracket"
    assert rows[(2, "ndr_pps")]["test"] in ("student-t", "no spread")  # 2 earlier rates: their spread
    assert (tmp_path / "t" / "trend.png").exists()
