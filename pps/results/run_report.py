"""The run report: what one finished (or stopped) trial produced, built in one place from
the trial's outcome (build_report), and written to its results directory (save).

The report's run.json is typed (pps.results.record.RunRecord: `report.record`);
`report.run_json` and `report.summary` are that record and its summary, which read and
write like the dicts they were (`report.summary["rx_pps"]`, `report.summary.get("ledger")`).
Its tables are in the results directory's current columns (pps.results.schema).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pps.config.hosts import LOCAL
from pps.config.model import Config
from pps.host import offload
from pps.results import latency, schema, summary
from pps.results.balance import balance
from pps.results.record import (
    Check,
    HostBeforeAfter,
    HostInfo,
    Lab,
    Orchestrator,
    Plan,
    RunRecord,
    Summary,
    Topology,
    WorkerRecord,
)
from pps.results.spill import SpilledTable
from pps.results.store import save_trial
from pps.run import stopsignals
from pps.run.trial import TrialOutcome

WORKER_KEYS = ("role", "index", "cpu", "cpus_allowed", "pid", "socket", "failure", "xsk")


@dataclass
class RunReport:
    """What a finished (or stopped) trial produced: run.json typed, the tables, the outcome."""

    record: RunRecord
    tables: dict[str, pd.DataFrame | SpilledTable]
    outcome: TrialOutcome
    results_dir: Path | None = None
    save_notes: list[str] = field(default_factory=list)  # where results went, if not --out

    @property
    def summary(self) -> Summary:
        return self.record.summary

    @property
    def run_json(self) -> RunRecord:
        return self.record


def save(report: RunReport, out: Path, csv: bool) -> None:
    """Write the results directory, whatever signal arrives meanwhile; where `out` cannot be
    written, the results go to a rescue directory and the report's notes say where and why."""
    with stopsignals.deferred():
        saved = save_trial(out, report.record, report.tables, csv=csv)
    report.results_dir = saved.path
    report.summary.results_dir = str(saved.path)
    report.save_notes.extend(saved.notes)


def build_report(config: Config, outcome: TrialOutcome, *, plan: dict[str, Any],
                 topology: dict[str, Any], hosts: dict[str, dict[str, Any]], warnings: list[str],
                 sampler: Any | None, lab_info: dict[str, Any] | None, checks: list[Any],
                 orchestrator: dict[str, Any]) -> RunReport:
    """The one builder of a run's report, for every kind of run (here, in the lab, across
    hosts). `hosts` holds each host's facts (its metadata before and after, its roles...);
    this host's metadata is also the report's `host`. `plan` and `topology` are as
    Plan.to_dict() and Topology.to_dict() give them (across hosts, `topology` may be
    {host: topology})."""
    result = summary.summarize(outcome)
    if outcome.interrupted:
        result["stopped_by"] = outcome.stopped_by
    warnings += offload.offload_warnings(config, config.lab.enabled, result)
    warnings += offload.pacing_warnings(config, result)
    warnings += offload.timestamp_warnings(config, result)
    tables: dict[str, pd.DataFrame | SpilledTable] = {
        "samples": summary.samples_table(outcome),
        "workers": summary.workers_table(outcome),
        "flows": summary.flows_table(outcome),
        "latency": latency.table(outcome.histograms),
    }
    totals = None
    result["ledger"] = None
    if sampler is not None:
        tables["counters"] = sampler.table()
        result["ledger"] = sampler.ledger(result["sent"], result["received"],
                                          xsk=xsk_totals(outcome.workers, "receiver"),
                                          xsk_tx=xsk_totals(outcome.workers, "sender"))
        warnings += sampler.notes()
        totals = sampler.totals()
    result["balance"] = balance(result["workers"], tables["flows"], totals,
                                getattr(sampler, "recv_netns", None),
                                getattr(sampler, "recv_device", None))
    result["warnings"] = warnings
    here = hosts.get(LOCAL, {})
    record = RunRecord(
        config=config.to_dict(), source=config.source, summary=Summary.from_dict(result),
        plan=Plan.from_dict(plan), topology=Topology.from_dict(schema.topology(topology)),
        host=HostBeforeAfter.from_dict({"before": here.get("before"), "after": here.get("after")}),
        lab=Lab.from_dict(lab_info) if lab_info is not None else None,
        started_at=outcome.started_at,
        workers=[WorkerRecord.from_dict({k: w.get(k) for k in WORKER_KEYS}) for w in outcome.workers],
        checks=[Check.from_dict(c) for c in checks],
        orchestrator=Orchestrator.from_dict(orchestrator),
        hosts=({name: HostInfo.from_dict(info) for name, info in hosts.items()}
               if set(hosts) != {LOCAL} else None),  # a run across hosts: what each one was and ran
    )
    tables = {name: schema.table_any(name, df) for name, df in tables.items() if df is not None}
    return RunReport(record, tables, outcome)


def xsk_totals(workers: list[dict[str, Any]], role: str) -> dict[str, int] | None:
    """The AF_XDP sockets' XDP_STATISTICS of `role`, summed; None when it used none."""
    stats = [w["xsk"] for w in workers if w["role"] == role and w.get("xsk")]
    if not stats:
        return None
    return {name: sum(s.get(name, 0) for s in stats) for name in stats[0]}
