"""The run report: what one finished (or stopped) trial produced, built in one place from
the trial's outcome, and written to its results directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pps.config.hosts import LOCAL
from pps.config.model import Config
from pps.host import offload
from pps.results import latency, summary
from pps.results.balance import balance
from pps.results.store import save_trial
from pps.run import stopsignals
from pps.run.trial import TrialOutcome


@dataclass
class RunReport:
    """What a finished (or stopped) trial produced."""

    summary: dict[str, Any]
    run_json: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    outcome: TrialOutcome
    results_dir: Path | None = None
    save_notes: list[str] = field(default_factory=list)  # where results went, if not --out


def save(report: RunReport, out: Path, csv: bool) -> None:
    """Write the results directory, whatever signal arrives meanwhile; where `out` cannot be
    written, the results go to a rescue directory and the report's notes say where and why."""
    with stopsignals.deferred():
        saved = save_trial(out, report.run_json, report.tables, csv=csv)
    report.results_dir, report.summary["results_dir"] = saved.path, str(saved.path)
    report.save_notes.extend(saved.notes)


def build_report(config: Config, outcome: TrialOutcome, *, plan: dict[str, Any],
                 topology: dict[str, Any], hosts: dict[str, dict[str, Any]], warnings: list[str],
                 sampler: Any | None, lab_info: dict[str, Any] | None, checks: list[Any],
                 orchestrator: dict[str, Any]) -> RunReport:
    """The one builder of a run's report, for every kind of run (here, in the lab, across
    hosts). `hosts` holds each host's facts (its metadata before and after, its roles...);
    this host's metadata is also the report's `host`."""
    result = summary.summarize(outcome)
    if outcome.interrupted:
        result["stopped_by"] = outcome.stopped_by
    warnings += offload.offload_warnings(config, config.lab.enabled, result)
    warnings += offload.pacing_warnings(config, result)
    warnings += offload.timestamp_warnings(config, result)
    tables = {
        "samples": summary.samples_table(outcome),
        "workers": summary.workers_table(outcome),
        "flows": summary.flows_table(outcome),
        "latency": latency.table(outcome.histograms),
    }
    totals = None
    if sampler is not None:
        tables["counters"] = sampler.table()
        result["ledger"] = sampler.ledger(result["sent"], result["received"])
        warnings += sampler.notes()
        totals = sampler.totals()
    result["balance"] = balance(result["workers"], tables["flows"], totals,
                                getattr(sampler, "recv_netns", None), getattr(sampler, "recv_device", None))
    result["warnings"] = warnings
    here = hosts.get(LOCAL, {})
    run_json = {
        "config": config.to_dict(), "source": config.source, "summary": result,
        "plan": plan, "topology": topology,
        "host": {"before": here.get("before", {}), "after": here.get("after", {})}, "lab": lab_info,
        "started_at": outcome.started_at, "workers": [
            {k: w[k] for k in ("role", "index", "cpu", "cpus_allowed", "pid", "socket", "failure")}
            for w in outcome.workers],
        "checks": checks, "orchestrator": orchestrator,
    }
    if set(hosts) != {LOCAL}:  # a run across hosts: what each one was and ran
        run_json["hosts"] = hosts
    return RunReport(result, run_json, tables, outcome)
