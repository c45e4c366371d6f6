"""The NDR/PDR search: its bisection on simulated systems (loss as a function of the offered
rate, a clock that advances per trial), and one short real search on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import pps

from pps.config.model import load_config
from pps.experiments.search import Search, TrialResult, format_result
from pps.experiments.search_run import limit_of, run_search, trial_from_summary, window_loss


def options(*sets: str):
    return load_config(None, ["search.budget=10000", "search.max_rate=1000000", *sets]).search


class System:
    """A receiver that drops nothing below `ndr`, a little up to `pdr`, a lot above."""

    def __init__(self, ndr: float, pdr: float, small: float = 0.002, sender_max: float = 1e12,
                 flaky: set[int] | None = None) -> None:
        self.ndr, self.pdr, self.small, self.sender_max = ndr, pdr, small, sender_max
        self.flaky = flaky or set()   # trial numbers that lose 1% whatever the rate
        self.calls: list[tuple[float, str]] = []
        self.t = 0.0

    def clock(self) -> float:
        return self.t

    def measure(self, rate: float, phase: str) -> TrialResult:
        self.t += 3.0
        n = len(self.calls)
        self.calls.append((rate, phase))
        tx = min(rate, self.sender_max) if rate else self.sender_max
        loss = 0.0 if tx < self.ndr else self.small if tx < self.pdr else 0.05
        if n in self.flaky:
            loss = 0.01
        return TrialResult(-1, "", rate, tx, tx * (1 - loss), loss,
                           limit="snmp.UdpRcvbufErrors" if loss else None)


def search(system: System, opts) -> object:
    return Search(opts, system.measure, clock=system.clock).run()


def test_finds_both_rates_within_precision():
    system = System(ndr=400_000, pdr=600_000)
    result = search(system, options())
    assert result.status == "done"
    assert 400_000 * 0.98 <= result.ndr.rate < 400_000
    assert 600_000 * 0.98 <= result.pdr.rate < 600_000
    assert result.ndr.rate <= result.pdr.rate
    assert result.ndr.hi >= 400_000 and result.ndr.limited_by == "snmp.UdpRcvbufErrors"
    assert result.ndr.confirmed and result.pdr.confirmed
    assert len(system.calls) < 30
    assert "NDR (no drop)" in format_result(result)


def test_final_rates_are_repeated_confirm_times():
    system = System(ndr=300_000, pdr=500_000)
    result = search(system, options("search.confirm=3"))
    for found in (result.ndr, result.pdr):
        assert len(found.trials) == 4 and found.spread is not None
    assert [p for _, p in system.calls].count("confirm") == 6


def test_a_failing_repeat_moves_the_rate_down_and_the_search_goes_on():
    system = System(ndr=400_000, pdr=600_000)
    clean = search(System(ndr=400_000, pdr=600_000), options())
    first_confirm = next(i for i, t in enumerate(clean.trials) if t.phase == "confirm")
    system.flaky = {first_confirm}
    result = search(system, options())
    assert result.ndr.rate < clean.ndr.rate
    assert result.ndr.confirmed
    assert result.ndr.hi == clean.ndr.rate  # the rate whose repeat failed now bounds it
    # ... and the next trial steps just under it rather than bisecting from far below.
    assert result.trials[first_confirm + 1].offered == round(clean.ndr.rate * 0.98)


def test_budget_stops_the_search_and_says_so():
    system = System(ndr=400_000, pdr=600_000)
    result = search(system, options("search.budget=10"))
    assert result.status == "budget"
    assert len(result.trials) == 3  # 3 s each: a fourth would end past 10 s
    assert not result.ndr.confirmed


def test_unpaced_trial_sets_the_upper_bound():
    system = System(ndr=200_000, pdr=250_000, sender_max=300_000)
    result = search(system, options("search.max_rate=0"))
    assert system.calls[0] == (0.0, "upper")
    assert result.trials[0].phase == "upper"
    assert result.max_rate == pytest.approx(300_000 * 0.95, rel=1e-6)
    assert result.ndr.rate < 200_000 <= result.ndr.hi


def test_a_sender_that_cannot_offer_the_rate_fails_the_trial():
    system = System(ndr=10e6, pdr=10e6, sender_max=350_000)
    result = search(system, options())
    top = result.trials[0]
    assert top.offered == 1_000_000 and top.loss_ratio == 0
    assert limit_of({"tx_pps": 350_000}, 1_000_000, 0.02) == ("sender", 0)
    assert 350_000 * 0.97 <= result.ndr.rate <= 350_000 / 0.98  # a 2% shortfall still passes


def test_a_passing_stall_of_the_sender_is_repeated_not_counted():
    system = System(ndr=400_000, pdr=600_000)
    measure = system.measure

    def stalled_once(rate, phase):
        t = measure(rate, phase)
        if len(system.calls) == 3:  # the third trial: another process took the sender's CPU
            t.tx_pps = t.rx_pps = rate * 0.5
        return t

    result = Search(options(), stalled_once, clock=system.clock).run()
    stalled = result.trials[2]
    assert not stalled.used and "repeated" in stalled.note
    assert result.trials[3].offered == stalled.offered and result.trials[3].used
    assert 400_000 * 0.98 <= result.ndr.rate < 400_000
    assert "not used" in format_result(result)


def test_nothing_passes_not_even_the_floor():
    system = System(ndr=0, pdr=0)
    result = search(system, options("search.min_rate=1000"))
    assert result.ndr.rate is None and result.pdr.rate is None
    assert system.calls[-1][0] == 1000
    assert "not found" in format_result(result)


def test_no_failure_up_to_the_top():
    result = search(System(ndr=10e6, pdr=10e6), options("search.confirm=1"))
    assert result.ndr.rate == 1_000_000 and result.ndr.hi is None
    assert len(result.trials) == 2


def test_limit_is_the_biggest_drop_counter():
    ledger = {"drops": {"snmp.UdpRcvbufErrors": 50, "softnet.dropped": 7}, "unaccounted": 3}
    assert limit_of({"tx_pps": 100.0, "ledger": ledger}, 100, 0.02) == ("snmp.UdpRcvbufErrors", 50)
    ledger = {"drops": {"snmp.UdpRcvbufErrors": 0}, "unaccounted": 9}
    assert limit_of({"tx_pps": 100.0, "ledger": ledger}, 100, 0.02) == ("unaccounted", 9)
    assert limit_of({"tx_pps": 100.0, "sent": 5, "received": 5}, 100, 0.02) == (None, 0)


def test_run_search_saves_every_trial_and_search_json(tmp_path):
    system = System(ndr=400_000, pdr=600_000)
    config = load_config(None, ["search.max_rate=1000000", "search.precision=0.1",
                                "search.confirm=1"])

    def execute(cfg, *, out, **_):
        t = system.measure(cfg.senders.rate, "")
        out.mkdir(parents=True)
        summary = {"tx_pps": t.tx_pps, "rx_pps": t.rx_pps, "loss_ratio": t.loss_ratio,
                   "sent": 1000, "received": round(1000 * (1 - t.loss_ratio)),
                   "latency": {"p50_ns": 10_000, "p99_ns": 50_000}}
        return SimpleNamespace(summary=summary)

    result = run_search(config, tmp_path / "s", execute=execute, clock=system.clock)
    saved = json.loads((tmp_path / "s" / "search.json").read_text())
    assert saved["status"] == "done" and len(saved["trials"]) == len(result.trials)
    assert len(list((tmp_path / "s" / "trials").iterdir())) == len(result.trials)
    assert saved["ndr"]["rate"] == result.ndr.rate and saved["ndr"]["p99_ns"] == 50_000
    assert saved["trials"][0]["limit"] == "unaccounted"  # lost, with no ledger to name it


def test_real_search_on_loopback(tmp_path):
    """A short search: 0.5 s trials; NDR <= PDR, and each final rate's repeat agrees loosely
    (this host is shared and noisy: the issue's 5% is measured in longer searches)."""
    out = tmp_path / "search"
    proc = pps("search", "--json", "--out", str(out),
               "--set", "run.duration=0.5", "--set", "run.warmup=0.2", "--set", "run.drain=0.2",
               "--set", "search.budget=14", "--set", "search.precision=0.1", "--set", "search.confirm=1",
               "--set", "senders.cpus=0", "--set", "receivers.cpus=1", "--set", "target.port=47550",
               timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert 4 <= len(result["trials"]) <= 14
    assert result["trials"][0]["phase"] == "upper"
    ndr, pdr = result["ndr"], result["pdr"]
    assert pdr["rate"] is not None
    if ndr["rate"] is not None:
        assert ndr["rate"] <= pdr["rate"]
    for found in (ndr, pdr):
        if found["spread"] is not None:
            assert found["spread"] < 0.25, found
    assert (out / "search.json").exists()
    assert len([p for p in (out / "trials").iterdir() if p.is_dir()]) == len(result["trials"])
    assert Path(result["trials"][1]["results_dir"], "run.json").exists()


def _slots(sent: int, lost: int, flows: int = 1) -> list[dict[str, int]]:
    return [{"packets": sent, "lost": 0, "flows": 0}, {"packets": 0, "lost": lost, "flows": flows}]


def test_loss_is_judged_over_the_measurement_window():
    workers = [{"role": "sender", "slot": 0}, {"role": "receiver", "slot": 1}]
    marks = {"measure_start": SimpleNamespace(slots=_slots(10_000, 300)),   # lost in warm-up
             "measure_end": SimpleNamespace(slots=_slots(110_000, 300))}
    outcome = SimpleNamespace(marks=marks, workers=workers)
    assert window_loss(outcome) == (100_000, 0)
    summary = {"tx_pps": 1000.0, "rx_pps": 1000.0, "loss_ratio": 300 / 110_000}
    t = trial_from_summary(summary, 1000, 0.02, window=window_loss(outcome))
    assert t.loss_ratio == 0 and t.trial_loss_ratio == pytest.approx(300 / 110_000)
    assert t.passes(0.0, 0.02)                      # the NDR bracket takes it
    marks["measure_end"] = SimpleNamespace(slots=_slots(110_000, 350))
    assert window_loss(outcome) == (100_000, 50)
    # Receivers that track no sequence numbers (raw mode): only the trial-wide count.
    marks["measure_end"] = SimpleNamespace(slots=_slots(110_000, 0, flows=0))
    assert window_loss(outcome) is None
    assert trial_from_summary(summary, 1000, 0.02, window=None).loss_ratio == summary["loss_ratio"]
    assert window_loss(SimpleNamespace(marks={}, workers=workers)) is None
