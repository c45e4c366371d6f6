"""The search bound to real trials: each a full `pps run` saved under OUT/trials/NNNN,
OUT/search.json rewritten after every trial, so an interrupted search leaves a readable
directory; and when OUT cannot be written any more, the search moves to a rescue directory
and says so, since a measurement is never lost to where it was to be saved.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pps.config.model import Config
from pps.errors import ConfigError, RunFailed
from pps.experiments.search import (
    SEARCH_FILE,
    TRIAL_OVERHEAD_S,
    Search,
    SearchResult,
    TrialInterrupted,
    TrialResult,
)
from pps.results.safe_io import describe_oserror, rescue_dir, write_text_atomic


def limit_of(summary: dict[str, Any], offered: float, precision: float) -> tuple[str | None, int]:
    """What limited a trial: the senders when they missed the offered rate, else the
    ledger's biggest drop counter (or its unaccounted remainder), else nothing."""
    if offered and summary.get("tx_pps", 0) < offered * (1 - precision):
        return "sender", 0
    ledger = summary.get("ledger") or {}
    drops = {k: v for k, v in (ledger.get("drops") or {}).items() if v}
    if ledger.get("unaccounted", 0) > 0:
        drops["unaccounted"] = ledger["unaccounted"]
    if not drops:
        lost = summary.get("sent", 0) - summary.get("received", 0)
        return ("unaccounted", lost) if lost > 0 else (None, 0)
    key = max(drops, key=drops.get)
    return key, int(drops[key])


def window_loss(outcome: Any) -> tuple[int, int] | None:
    """(sent, lost) in the measurement window: packets the senders handed the kernel between
    the window's marks, and sequence gaps the receivers found between them.

    The summary's loss_ratio covers the whole trial, warm-up and drain too, so a start-up
    hiccup (processes waking, pages faulting in) fails a rate whose steady state is clean.
    The window is what rx_pps is measured over, and what a repeat should reproduce. A gap is
    found when the packet after it is read, so both marks see drops a queue's delay late;
    that shift is the same at both ends. None when the receivers do not track sequences
    (raw mode): then only the trial-wide count is there."""
    marks = getattr(outcome, "marks", None) or {}
    start, end = marks.get("measure_start"), marks.get("measure_end")
    if start is None or end is None:
        return None
    sent = lost = 0
    tracked = False
    for w in outcome.workers:
        a, b = start.slots[w["slot"]], end.slots[w["slot"]]
        if w["role"] == "sender":
            sent += b["packets"] - a["packets"]
        else:
            lost += b["lost"] - a["lost"]
            tracked = tracked or b["flows"] > 0
    if not tracked or sent <= 0:
        return None
    return sent, max(lost, 0)


def trial_from_summary(summary: dict[str, Any], offered: float, precision: float,
                       results_dir: str | None = None,
                       window: tuple[int, int] | None = None) -> TrialResult:
    lat = summary.get("latency") or {}
    limit, count = limit_of(summary, offered, precision)
    trial_loss = float(summary.get("loss_ratio", 0.0))
    loss = window[1] / window[0] if window else trial_loss
    return TrialResult(
        index=-1, phase="", offered=offered, tx_pps=float(summary.get("tx_pps", 0.0)),
        rx_pps=float(summary.get("rx_pps", 0.0)), loss_ratio=loss,
        sent=int(summary.get("sent", 0)), received=int(summary.get("received", 0)),
        p50_ns=lat.get("p50_ns"), p99_ns=lat.get("p99_ns"), trial_loss_ratio=trial_loss,
        limit=limit, limit_count=count, results_dir=results_dir)


def write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    from pps.results.store import dumps

    write_text_atomic(path, dumps(obj, indent=2))


class SearchDir:
    """OUT of a search, or a rescue directory once OUT could not be written: the search goes
    on there with copies of the trials so far, and `notes` says so."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.notes: list[str] = []
        self.rescued = False

    def trial_dir(self, index: int) -> Path:
        return self.out / "trials" / f"{index:04d}"

    def write(self, obj: dict[str, Any], trials: list[TrialResult]) -> None:
        try:
            write_json_atomic(self.out / SEARCH_FILE, obj)
        except OSError as exc:
            self.move_to_rescue(describe_oserror(exc), trials)
            self._write_or_fail(obj, trials)

    def _write_or_fail(self, obj: dict[str, Any], trials: list[TrialResult]) -> None:
        obj["trials"] = [asdict(t) for t in trials]  # their results_dir moved
        try:
            write_json_atomic(self.out / SEARCH_FILE, obj)
        except OSError as exc:
            raise RunFailed(f"could not save the search in {self.out}: "
                            f"{describe_oserror(exc)}") from None

    def adopt(self, index: int, written: Path, reason: str, trials: list[TrialResult]) -> Path:
        """A trial the runner saved in a rescue directory of its own: follow it there."""
        if not self.rescued:
            self.move_to_rescue(reason, trials)
        target = self.trial_dir(index)
        try:
            shutil.move(str(written), str(target))
        except OSError as exc:
            self.notes.append(f"trial {index:04d} stays in {written}: {describe_oserror(exc)}")
            return written
        return target

    def move_to_rescue(self, reason: str, trials: list[TrialResult]) -> None:
        old = self.out
        try:
            rescue = rescue_dir("search")
            (rescue / "trials").mkdir()
            for t in trials:
                source = Path(t.results_dir) if t.results_dir else None
                if source is not None and source.is_dir():
                    target = rescue / "trials" / source.name
                    shutil.copytree(source, target, symlinks=True)
                    t.results_dir = str(target)
        except OSError as exc:
            raise RunFailed(f"could not save the search in {old} ({reason}), nor in a rescue "
                            f"directory: {describe_oserror(exc)}") from None
        self.out, self.rescued = rescue, True
        self.notes.append(f"could not save the search in {old} ({reason}); moved it to {rescue} "
                          "(trials so far copied) and went on there")


def run_search(config: Config, out: Path, *, confirmed: bool = False,
               progress: Callable[[TrialResult], None] | None = None,
               execute: Callable[..., Any] | None = None,
               clock: Callable[[], float] = time.monotonic) -> SearchResult:
    """Search with real trials, each a full run saved under OUT/trials/NNNN; OUT/search.json
    is rewritten after every trial, so an interrupted search leaves a readable directory."""
    from pps.results.store import check_out_dir, rescue_reason
    from pps.run import pipeline as runner

    execute = execute or runner.execute
    place = SearchDir(check_out_dir(Path(out)))
    try:
        (place.out / "trials").mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # before any trial: nothing is lost, so it is a bad --out
        raise ConfigError(f"{out}: cannot create the search directory: "
                          f"{describe_oserror(exc)}") from None
    options = config.search
    run = config.run
    search: Search

    def measure(rate: float, phase: str) -> TrialResult:
        index = len(search.trials)
        trial_dir = place.trial_dir(index)
        report = execute(config.with_values({"senders.rate": rate}), out=trial_dir,
                         confirmed=confirmed)
        written = getattr(report, "results_dir", None)
        if written is not None and Path(written) != trial_dir:  # its disk failed: follow it
            reason = rescue_reason(written, f"trial saved in {written}")
            trial_dir = place.adopt(index, Path(written), reason, search.trials)
        s = report.summary
        if s.get("failure"):
            raise RunFailed(f"trial at {rate:g} pps failed: {s['failure']} (saved in {trial_dir})")
        t = trial_from_summary(s, rate, options.precision, str(trial_dir),
                               window=window_loss(getattr(report, "outcome", None)))
        if s.get("interrupted"):
            raise TrialInterrupted(t)
        return t

    def saved(t: TrialResult) -> None:
        place.write({**search.result().to_dict(), "status": "running",
                     "config": config.to_dict()}, search.trials)
        if progress is not None:
            progress(t)

    cost = run.warmup + run.duration + run.drain + TRIAL_OVERHEAD_S
    search = Search(options, measure, clock=clock, trial_cost=cost, on_trial=saved)
    result = search.run()
    place.write({**result.to_dict(), "config": config.to_dict()}, search.trials)
    result.out, result.notes = place.out, place.notes
    return result
