"""Keep the orchestrator off the workers' CPUs while a trial runs.

The orchestrator wakes every sampling interval to read counters and runs `ethtool` and
friends; on a CPU that a sender or a busy-polling receiver saturates, each wake-up is
time that worker loses. When the machine has CPUs that no worker uses, the orchestrator
(every thread of it, and so every process it starts from then on) moves there for the
trial and goes back afterwards. When every CPU holds a worker it stays where it was, and
the run says so: on such a machine its sampling is part of what was measured.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

from pps.config.cpulist import format_cpulist as _cpulist


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_all(cpus: set[int]) -> None:
    for tid in _threads():
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that just ended, or one we may not move: it is idle anyway


def choose(worker_cpus: Iterable[int | None], allowed: set[int]) -> tuple[set[int], str | None]:
    """The CPUs the orchestrator should use, and why it stays put when it does."""
    wanted = list(worker_cpus)
    if any(cpu is None for cpu in wanted):
        # An unpinned worker inherits our affinity when it starts: do not narrow it.
        return set(), "some workers are not pinned to a CPU"
    spare = allowed - set(wanted)
    if not spare:
        return set(), f"every CPU it may use ({_cpulist(allowed)}) runs a worker"
    return spare, None


def move_off(worker_cpus: Iterable[int | None]) -> tuple[dict[str, Any], set[int] | None]:
    """Move this process to the CPUs no worker uses. Returns the record for run.json (the
    CPUs it now runs on, and a note when it shares them) and the affinity to restore, if
    it moved."""
    before = os.sched_getaffinity(0)
    spare, reason = choose(worker_cpus, before)
    record: dict[str, Any] = {"cpus": _cpulist(spare or before), "moved": bool(spare)}
    if reason:
        record["note"] = f"pps shares CPUs with the workers: {reason}"
    if not spare:
        return record, None
    try:
        _set_all(spare)
    except OSError as exc:  # a cpuset that forbids them: carry on where we are
        record.update(cpus=_cpulist(before), moved=False,
                      note=f"pps could not move off the workers' CPUs: {exc.strerror}")
        return record, None
    return record, before


@contextlib.contextmanager
def off_worker_cpus(worker_cpus: Iterable[int | None]) -> Iterator[dict[str, Any]]:
    """move_off() for the block, then back where it was."""
    record, restore = move_off(worker_cpus)
    try:
        yield record
    finally:
        if restore:
            _set_all(restore)
