"""The no-drop and partial-drop rate search (RFC 2544 throughput, TRex NDR, FD.io MLRsearch).

Two brackets share one list of trials. A trial at offered rate r passes a bracket when its
loss ratio over the measurement window (see `window_loss`) is within the bracket's bound (0 for NDR, search.loss_bound percent for PDR) and the
senders really offered r (within search.precision); a sender that cannot reach the rate
has not shown that the receiver can take it. Each bracket's bounds are derived from all
trials so far, conservatively: `hi` is the lowest rate that failed, `lo` the highest rate
below it that passed. A pass above a failure is noise and counts for nothing; a repeat
that fails moves `hi` down, and the bisection goes on below it. So the final trials are
repeated (search.confirm times) and every repeat must pass too.

The search is pure: it calls `measure(rate, phase)` for each trial and reads a clock, so
tests drive it with a simulated system. search_run.run_search binds it to real trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pps.config.model import SearchOptions
from pps.errors import ConfigError

SEARCH_FILE = "search.json"
SEARCH_SCHEMA = 2  # 2: search.loss_bound is percent (1: a ratio)
SENDER_SHORT = "senders missed the rate: repeated"
MAX_TRIALS = 200          # a guard against a search that would never converge
TRIAL_OVERHEAD_S = 1.0    # spawning, pinning, counters, writing: the first budget estimate


@dataclass
class TrialResult:
    """One trial, as the search sees it and as the table shows it."""

    index: int
    phase: str            # "upper" (unpaced), "bisect" or "confirm"
    offered: float        # pps asked of the senders; 0 = unpaced
    tx_pps: float
    rx_pps: float
    loss_ratio: float
    sent: int = 0
    received: int = 0
    p50_ns: int | None = None
    p99_ns: int | None = None
    trial_loss_ratio: float | None = None  # over the whole trial, warm-up and drain too
    limit: str | None = None   # the biggest drop counter, "sender" or "unaccounted"
    limit_count: int = 0
    seconds: float = 0.0       # wall time the trial took
    results_dir: str | None = None
    used: bool = True          # False: shown, never used for the bounds (see `note`)
    note: str | None = None

    def shortfall(self) -> float:
        """How far the senders stayed below the offered rate (0 when unpaced)."""
        return max(0.0, 1 - self.tx_pps / self.offered) if self.offered else 0.0

    def passes(self, bound: float, precision: float) -> bool:
        return self.offered > 0 and self.loss_ratio <= bound and self.shortfall() <= precision


@dataclass
class Bracket:
    name: str             # "ndr" or "pdr"
    bound: float          # loss ratio allowed

    def bounds(self, trials: list[TrialResult],
               precision: float) -> tuple[float | None, float | None]:
        paced = [t for t in trials if t.offered > 0 and t.used]
        fails = [t.offered for t in paced if not t.passes(self.bound, precision)]
        hi = min(fails) if fails else None
        passes = [t.offered for t in paced if t.passes(self.bound, precision)
                  and (hi is None or t.offered < hi)]
        return (max(passes) if passes else None), hi


@dataclass
class RateFound:
    """A bracket's answer: the rate, its trials' loss and latency, and what limited it."""

    name: str
    rate: float | None          # None: even search.min_rate failed
    hi: float | None            # lowest failing rate above it (None: nothing failed)
    loss_ratio: float | None = None   # worst over the trials at `rate`
    p50_ns: int | None = None
    p99_ns: int | None = None
    rx_pps: list[float] = field(default_factory=list)   # every trial at `rate`
    trials: list[int] = field(default_factory=list)
    confirmed: bool = False     # the trial and all its repeats passed
    limited_by: str | None = None     # the limit of the trial at `hi`
    spread: float | None = None  # (max - min) / mean of rx_pps at `rate`


@dataclass
class SearchResult:
    trials: list[TrialResult]
    ndr: RateFound
    pdr: RateFound
    status: str                 # "done", "budget", "interrupted", "max-trials"
    elapsed_s: float
    max_rate: float
    options: dict[str, Any]
    out: Any = None             # Path: where run_search saved it (a rescue directory if it had to)
    notes: list[str] = field(default_factory=list)  # why it is not where asked

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SEARCH_SCHEMA, "status": self.status, "elapsed_s": self.elapsed_s,
                "max_rate": self.max_rate, "search": self.options,
                "ndr": asdict(self.ndr), "pdr": asdict(self.pdr),
                "trials": [asdict(t) for t in self.trials]}


Measure = Callable[[float, str], TrialResult]


class TrialInterrupted(Exception):
    """Raised by a measure function when the user stopped a trial; carries what it measured."""

    def __init__(self, trial: TrialResult | None = None) -> None:
        super().__init__("interrupted")
        self.trial = trial


class Search:
    """Bisection of both brackets within a time budget. Use `run()`."""

    def __init__(self, options: SearchOptions, measure: Measure,
                 clock: Callable[[], float] = time.monotonic,
                 trial_cost: float = TRIAL_OVERHEAD_S,
                 on_trial: Callable[[TrialResult], None] | None = None) -> None:
        if options.min_rate >= options.max_rate > 0:
            raise ConfigError(f"search.min_rate {options.min_rate:g} must be below "
                              f"search.max_rate {options.max_rate:g}")
        self.options = options
        self.measure = measure
        self.clock = clock
        self.first_cost = trial_cost
        self.on_trial = on_trial
        self.trials: list[TrialResult] = []
        self.brackets = [Bracket("ndr", 0.0), Bracket("pdr", options.loss_bound / 100)]  # percent -> ratio
        self.max_rate = options.max_rate
        self.started = 0.0
        self.status = "done"

    # ------------------------------------------------------------------ driving
    def run(self) -> SearchResult:
        self.started = self.clock()
        try:
            if not self.max_rate:
                upper = self._trial(0.0, "upper")
                # What the receiver took when offered everything: offering more cannot help.
                self.max_rate = max(float(round(upper.rx_pps)), self.options.min_rate)
            while True:
                step = self._next()
                if step is None:
                    break
                if len(self.trials) >= MAX_TRIALS:
                    self.status = "max-trials"
                    break
                if not self._affordable():
                    self.status = "budget"
                    break
                self._trial(*step)
        except TrialInterrupted:
            self.status = "interrupted"
        return self.result()

    def _affordable(self) -> bool:
        costs = [t.seconds for t in self.trials if t.seconds > 0]
        cost = max(costs) if costs else self.first_cost
        return self.clock() - self.started + cost <= self.options.budget

    def _trial(self, rate: float, phase: str) -> TrialResult:
        began = self.clock()
        try:
            t = self.measure(rate, phase)
        except TrialInterrupted as stop:
            if stop.trial is not None:  # keep what was measured, marked by its phase
                stop.trial.used, stop.trial.note = False, "interrupted"
                self._record(stop.trial, rate, phase, began)
            raise
        self._record(t, rate, phase, began)
        if self.on_trial is not None:
            self.on_trial(t)
        return t

    def _record(self, t: TrialResult, rate: float, phase: str, began: float) -> None:
        t.index, t.phase, t.offered = len(self.trials), phase, rate
        t.seconds = t.seconds or self.clock() - began
        if t.used and t.shortfall() > self.options.precision and not any(
                u.offered == rate and not u.used and u.note == SENDER_SHORT for u in self.trials):
            # The senders missed the rate: on a shared host that is usually another
            # process on their CPU, so the trial says nothing about the receiver. It is
            # run again once; a second miss at the same rate counts as a failure.
            t.used, t.note = False, SENDER_SHORT
        self.trials.append(t)

    # ------------------------------------------------------------------ deciding
    def _next(self) -> tuple[float, str] | None:
        """The next (rate, phase), or None when both brackets are narrow and confirmed."""
        o = self.options
        top = self.max_rate
        for b in self.brackets:
            lo, hi = b.bounds(self.trials, o.precision)
            if hi is None:
                if lo is None or lo < top:
                    return top, "bisect"      # the top itself is not tried yet
                continue                      # the top passed: nothing to narrow
            if lo is None:
                floor = o.min_rate
                if hi <= floor or self._count_at(floor):
                    continue                  # even the floor failed: no answer here
                if (hi - floor) / hi <= o.precision:
                    return floor, "bisect"
                failed = [t for t in self.trials if t.used and t.offered >= hi]
                if len(failed) == 1 and failed[0].rx_pps > floor:
                    # First guess, as MLRsearch does: just under what the receiver took at
                    # the lowest failing rate; usually close, and one trial if it is not.
                    guess = _rate(min(failed[0].rx_pps, hi) * (1 - o.precision))
                    if floor < guess < hi and not self._count_at(guess):
                        return guess, "bisect"
                return _rate((floor + hi) / 2), "bisect"
            if (hi - lo) / hi > o.precision:
                if any(t.passes(b.bound, o.precision) for t in self._at(hi)):
                    # `hi` passed once and failed on a repeat: the edge is noisy, not far
                    # below; step just under it instead of bisecting down to `lo` again.
                    step = _rate(hi * (1 - o.precision))
                    if lo < step and not self._count_at(step):
                        return step, "bisect"
                return _rate((lo + hi) / 2), "bisect"
        for b in self.brackets:              # both narrow: every final rate repeated?
            lo, _ = b.bounds(self.trials, o.precision)
            if lo is not None and self._count_at(lo) < 1 + o.confirm:
                return lo, "confirm"
        return None

    def _at(self, rate: float) -> list[TrialResult]:
        return [t for t in self.trials if t.offered == rate and t.used]

    def _count_at(self, rate: float) -> int:
        return len(self._at(rate))

    # ------------------------------------------------------------------ answering
    def result(self) -> SearchResult:
        found = [self._found(b) for b in self.brackets]
        return SearchResult(self.trials, found[0], found[1], self.status,
                            self.clock() - self.started, self.max_rate, asdict(self.options))

    def _found(self, b: Bracket) -> RateFound:
        lo, hi = b.bounds(self.trials, self.options.precision)
        out = RateFound(b.name, lo, hi)
        if hi is not None:
            at_hi = self._at(hi)
            worst = max(at_hi, key=lambda t: (t.loss_ratio, t.shortfall()))
            out.limited_by = worst.limit
        if lo is None:
            return out
        at = self._at(lo)
        out.trials = [t.index for t in at]
        out.loss_ratio = max(t.loss_ratio for t in at)
        out.rx_pps = [t.rx_pps for t in at]
        last = at[-1]
        out.p50_ns, out.p99_ns = last.p50_ns, last.p99_ns
        out.confirmed = len(at) >= 1 + self.options.confirm and all(
            t.passes(b.bound, self.options.precision) for t in at)
        mean = sum(out.rx_pps) / len(out.rx_pps)
        out.spread = (max(out.rx_pps) - min(out.rx_pps)) / mean if mean and len(at) > 1 else None
        return out


def _rate(x: float) -> float:
    """Whole packets per second: trials are easier to read and to repeat."""
    return float(round(x))


# ---------------------------------------------------------------------- text

def _ns(v: int | None) -> str:
    return "-" if v is None else f"{v / 1000:.0f}"


def _loss(v: float | None) -> str:
    return "-" if v is None else f"{v:.3%}"


def _pps(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def trial_table(trials: list[TrialResult]) -> str:
    # "loss" is over the measurement window (what the search judges); "trial" adds warm-up
    # and drain, as the run's own summary counts it.
    head = (f"{'#':>3} {'phase':<8} {'offered':>10} {'tx pps':>10} {'rx pps':>10} {'loss':>8} "
            f"{'trial':>8} {'p50 us':>7} {'p99 us':>7}  limited by")
    lines = [head]
    for t in trials:
        offered = "unpaced" if not t.offered else _pps(t.offered)
        limit = t.limit or "-"
        if t.limit_count:
            limit += f" ({t.limit_count:,})"
        if not t.used:
            limit += f"  [not used: {t.note}]"
        lines.append(f"{t.index:>3} {t.phase:<8} {offered:>10} {_pps(t.tx_pps):>10} "
                     f"{_pps(t.rx_pps):>10} "
                     f"{t.loss_ratio:>8.3%} {_loss(t.trial_loss_ratio):>8} {_ns(t.p50_ns):>7} "
                     f"{_ns(t.p99_ns):>7}  {limit}")
    return "\n".join(lines)


def format_result(result: SearchResult) -> str:
    lines = [trial_table(result.trials), ""]
    bound = result.options.get("loss_bound", 0.0) / 100  # percent
    for f, label in ((result.ndr, "NDR (no drop)"), (result.pdr, f"PDR (loss <= {bound:.2%})")):
        if f.rate is None:
            lines.append(f"{label}: not found: even {result.options.get('min_rate', 0):,.0f} pps "
                         f"failed (limited by {f.limited_by or '-'})")
            continue
        state = "confirmed" if f.confirmed else "NOT confirmed"
        spread = f", repeats within {f.spread:.1%}" if f.spread is not None else ""
        above = (f"; {_pps(f.hi)} pps failed, limited by {f.limited_by or '-'}" if f.hi is not None
                 else "; nothing above it failed (the senders' limit)")
        lines.append(f"{label}: {_pps(f.rate)} pps, loss {f.loss_ratio:.4%}, latency p50 "
                     f"{_ns(f.p50_ns)} us p99 {_ns(f.p99_ns)} us, {len(f.trials)} trial(s), "
                     f"{state}{spread}{above}")
    if result.status != "done":
        lines.append(f"search stopped early: {result.status} after {result.elapsed_s:.0f} s")
    return "\n".join(lines)
