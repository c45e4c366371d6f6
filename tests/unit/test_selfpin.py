"""The orchestrator moves off the workers' CPUs for a trial, and back afterwards."""

from __future__ import annotations

import os

import pytest

from pps.config.model import load_config
from pps.host import selfpin
from pps.run.pipeline import execute

PORTS = iter(range(48200, 48300))


def test_choose_takes_the_cpus_no_worker_uses():
    assert selfpin.choose([0, 2], {0, 1, 2, 3}) == ({1, 3}, None)


def test_choose_stays_put_when_every_cpu_has_a_worker():
    spare, reason = selfpin.choose([1, 0, 1], {0, 1})
    assert spare == set() and reason == "every CPU it may use (0-1) runs a worker"


def test_choose_never_narrows_what_an_unpinned_worker_inherits():
    spare, reason = selfpin.choose([0, None], {0, 1, 2})
    assert spare == set() and "not pinned" in reason


def _run(sets: list[str]):
    config = load_config(None, ["run.duration=0.3", "run.warmup=0.1", "run.drain=0.1",
                                "collect.enabled=false", f"target.port={next(PORTS)}", *sets])
    return execute(config, out=None)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to leave one spare")
def test_a_run_moves_the_orchestrator_to_the_spare_cpu_and_back():
    allowed = sorted(os.sched_getaffinity(0))
    worker_cpu, spare = allowed[0], set(allowed[1:])
    before = os.sched_getaffinity(0)
    seen: list[set[int]] = []
    # Watch the affinity from inside the trial: the status callback runs in the orchestrator.
    config = load_config(None, ["run.duration=0.3", "run.warmup=0.1", "run.drain=0.1",
                                "run.interval=0.1", "run.display_interval=0.1", "collect.enabled=false",
                                f"target.port={next(PORTS)}", f"senders.cpus={worker_cpu}", f"receivers.cpus={worker_cpu}"])
    report = execute(config, out=None, status=lambda *a, **k: seen.append(os.sched_getaffinity(0)))
    assert report.summary["received"] > 0
    assert seen and all(cpus == spare for cpus in seen)
    assert report.run_json["orchestrator"]["moved"] is True
    assert os.sched_getaffinity(0) == before


def test_a_run_that_fills_every_cpu_says_the_orchestrator_shared_them():
    allowed = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    count = len(os.sched_getaffinity(0))
    report = _run([f"senders.cpus={allowed}", f"receivers.cpus={allowed}",
                   f"senders.count={count}", f"receivers.count={count}"])
    record = report.run_json["orchestrator"]
    assert record["moved"] is False and "runs a worker" in record["note"]
