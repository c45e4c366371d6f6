"""Worker processes as the orchestrator sees them: spawn, talk, stop, reap.

Each worker gets an allow-listed environment, its spec as one JSON line, and the shared
stats descriptor. It answers with JSON lines. The manager reads without blocking, checks
the shape of what it reads, and always reaps: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from pps.run.linebuf import LineBuffer, read_available

MAX_WORKER_LINE = 64 << 20
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "HOME", "TMPDIR")


@dataclass
class WorkerHandle:
    """One worker process and what it has said so far."""

    role: str
    index: int
    slot: int
    cpu: int | None
    proc: subprocess.Popen
    events: list[dict[str, Any]] = field(default_factory=list)
    killed_for: str | None = None  # why pps killed it (a stall), if it did
    # A worker's lines are small (its result lists its flows); one past this is garbage.
    _lines: LineBuffer = field(default_factory=lambda: LineBuffer(MAX_WORKER_LINE))

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def event(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("event") == kind), None)

    def read_events(self) -> None:
        """Take whatever the worker has written, without blocking."""
        lines = read_available(self.proc.stdout.fileno(), self._lines)
        for message in parse_json_lines(lines):
            if not isinstance(message, dict) or "event" not in message:
                message = {"event": "garbled", "text": str(message)[:200]}
            self.events.append(message)

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def failure(self) -> str | None:
        """Why this worker failed, or None while it is healthy or finished well. A worker
        that reported its result is healthy however it was reaped: the reaper's SIGTERM can
        reach it between its last line and its exit."""
        error = self.event("error")
        if error:
            return str(error.get("message"))
        if self.killed_for:
            return self.killed_for
        code = self.proc.poll()
        if code is None or self.event("result"):
            return None
        if code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exited with status {code} before reporting"

    def kill(self, reason: str = "stalled") -> None:
        """End a worker that can no longer be trusted (stopped, stuck): SIGKILL works on a
        stopped process too. Reaped by stop()."""
        self.killed_for = self.killed_for or reason
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def stop(self, grace_s: float = 1.0) -> None:
        """Let a worker that has reported its result exit by itself; then politely, then
        firmly. Always reaped; a second call does nothing."""
        if self.proc.stdout.closed:
            return
        if self.event("result") and not self.killed_for:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace_s)
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait_s)
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait()
        self.read_events()
        self.proc.stdout.close()


def parse_json_lines(lines: list[bytes]) -> list[Any]:
    """Each line as parsed JSON; a line that is not JSON comes back as its text (a str)."""
    messages: list[Any] = []
    for line in lines:
        try:
            messages.append(json.loads(line))
        except ValueError:
            messages.append(line[:200].decode(errors="replace"))
    return messages


def spawn_worker(spec: dict[str, Any], pass_fds: tuple[int, ...]) -> WorkerHandle:
    env = {k: os.environ[k] for k in ENV_ALLOW if k in os.environ}
    # The worker must import this very pps, even when it runs from a source tree.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pps.run.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        pass_fds=pass_fds, env=env, start_new_session=True, close_fds=True)
    os.set_blocking(proc.stdout.fileno(), False)
    proc.stdin.write((json.dumps(spec) + "\n").encode())
    proc.stdin.close()
    return WorkerHandle(spec["role"], spec["index"], spec["slot"], spec.get("cpu"), proc)


def wait_for(workers: list[WorkerHandle], kind: str, timeout_s: float) -> list[str]:
    """Wait until every worker has sent `kind` or failed; return failures as messages."""
    deadline = time.monotonic() + timeout_s
    while True:
        for w in workers:
            w.read_events()
        pending = [w for w in workers if not w.event(kind) and w.failure() is None]
        if not pending:
            break
        if time.monotonic() >= deadline:
            return [f"{w.name} (pid {w.pid}): no '{kind}' within {timeout_s:.0f} s" for w in pending]
        time.sleep(0.005)
    return [f"{w.name} (pid {w.pid}): {w.failure()}" for w in workers if w.failure()]
