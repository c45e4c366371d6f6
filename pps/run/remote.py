"""The client side of `pps agent`: one SSH connection per host, and the workers over there.

The ssh command is a list of arguments. ssh joins the remote command into one string for
the remote login shell, so each remote word is shlex-quoted: a configured python path is
one word there, whatever it holds. The destination comes after `--`, so it is never read as
an ssh option. BatchMode makes ssh fail instead of asking for a password nobody will type.

ssh runs in its own session: Ctrl-C reaches pps only, which then stops the remote workers
in order and fetches what they measured, instead of ssh dying at once with the results.

Every reply is awaited for a bounded time. A host that lets one pass (its agent stopped,
its machine froze while the TCP connection stays up, which ssh's keepalives do not see)
is lost for the rest of the run: later requests fail at once instead of each waiting out
its own timeout, so a stalled host ends the run within about one reply timeout.
"""

from __future__ import annotations

import collections
import json
import os
import select
import shlex
import signal
import subprocess
import threading
import time
from typing import Any

from pps.config.hosts import HostSpec
from pps.errors import ConfigError, EnvironmentNotAble, PpsError
from pps.run.linebuf import LineBuffer, read_available
from pps.run.protocol import PROTOCOL

HELLO_TIMEOUT_S = 30.0
# A read, collect, go or stop takes milliseconds; an agent silent this long is stalled.
REPLY_TIMEOUT_S = 10.0
HISTOGRAMS_TIMEOUT_S = 30.0
# Histograms of many receivers are the longest replies, a few MiB; more is not the agent.
MAX_REPLY_BYTES = 64 << 20


def ssh_argv(host: HostSpec) -> list[str]:
    remote = [host.python, "-m", "pps", "agent"]
    return ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=2",
            "-o", "ServerAliveCountMax=3", *host.ssh_options, "--", host.ssh,
            " ".join(shlex.quote(word) for word in remote)]


class HostLost(OSError):
    """The agent stopped answering: the connection dropped or the agent died."""


class HostSession:
    """One running `pps agent` over ssh, and the request/reply conversation with it."""

    def __init__(self, host: HostSpec) -> None:
        self.host = host
        self.proc: subprocess.Popen | None = None
        self.hello: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []  # unsolicited: {"event": "failed", ...}
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._lines = LineBuffer(MAX_REPLY_BYTES)
        self._next_id = 0
        self.stalled: str | None = None  # why the host was given up on, once it was

    @property
    def name(self) -> str:
        return self.host.name

    # ------------------------------------------------------------------ connection
    def connect(self) -> dict[str, Any]:
        """Start the agent and check its hello; raise EnvironmentNotAble naming the fix."""
        self.proc = subprocess.Popen(ssh_argv(self.host), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        os.set_blocking(self.proc.stdout.fileno(), False)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        try:
            self.hello = self._next_message(HELLO_TIMEOUT_S, lambda m: m.get("event") == "hello",
                                            "its hello")
        except HostLost:
            raise self._start_failure() from None
        self._check_hello()
        return self.hello

    def _drain_stderr(self) -> None:
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode(errors="replace").strip()
            if line:
                self._stderr.append(line)

    def stderr_tail(self) -> str:
        return " | ".join(list(self._stderr)[-3:])

    def _start_failure(self) -> EnvironmentNotAble:
        code = self._wait_exit(5.0)
        time.sleep(0.05)  # let the stderr reader take the last lines
        said = self.stderr_tail()
        h = self.host
        if "No module named pps" in said:
            return EnvironmentNotAble(
                f"host {h.name}: pps is not installed for {h.python} there; install it there "
                f"(pip install pps) or set hosts.{h.name}.python to the interpreter that has it")
        if code == 127 or "No such file" in said or "not found" in said:
            return EnvironmentNotAble(
                f"host {h.name}: python {h.python!r} not found there; set hosts.{h.name}.python "
                "to the interpreter that has pps installed")
        if code == 255:
            return EnvironmentNotAble(f"host {h.name}: ssh {h.ssh} failed: {said or 'no reason given'}")
        return EnvironmentNotAble(
            f"host {h.name}: the agent did not start (exit status {code}): {said or 'no output'}")

    def _check_hello(self) -> None:
        from pps import __version__

        h, got = self.host.name, self.hello
        if got.get("protocol") != PROTOCOL or got.get("version") != __version__:
            raise EnvironmentNotAble(
                f"host {h} runs pps {got.get('version')} (agent protocol {got.get('protocol')}), "
                f"this host runs pps {__version__} (protocol {PROTOCOL}); install the same pps on both")

    def require(self, needs: dict[str, str]) -> None:
        """Fail before any packet when the remote user lacks a capability the run needs."""
        caps = self.hello.get("caps", {})
        missing = [f"CAP_{cap.upper()} ({why})" for cap, why in needs.items() if not caps.get(cap)]
        if missing:
            raise EnvironmentNotAble(
                f"host {self.name}: the user there (euid {self.hello.get('euid')}) lacks "
                f"{', '.join(missing)}; log in as root (hosts.{self.name}.ssh) or grant it")

    # ------------------------------------------------------------------ conversation
    def request(self, op: str, timeout_s: float = REPLY_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; errors come back as PpsErrors."""
        if self.stalled:
            raise HostLost(self.stalled)
        self._next_id += 1
        rid = self._next_id
        self._send({"op": op, "id": rid, **fields})
        reply = self._next_message(timeout_s, lambda m: m.get("re") == rid, repr(op))
        if not reply.get("ok"):
            error = f"host {self.name}: {reply.get('error')}"
            code = reply.get("exit_code")
            raise ConfigError(error) if code == 2 else EnvironmentNotAble(error) if code == 3 \
                else PpsError(error)
        return reply

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise self.lost() from None

    def lost(self) -> HostLost:
        if self.stalled:
            return HostLost(self.stalled)
        code = self.proc.poll() if self.proc else None
        how = f"ssh exited with status {code}" if code is not None else "no reply"
        said = self.stderr_tail()
        return HostLost(f"host {self.name}: connection lost ({how}{': ' + said if said else ''})")

    def poll_events(self) -> None:
        """Take unsolicited events without blocking."""
        self._read_available()

    def _read_available(self) -> None:
        """Take every complete line the agent has written, without blocking."""
        for line in read_available(self.proc.stdout.fileno(), self._lines):
            self._take(line)
        if self._lines.too_long and not self.stalled:
            self.stalled = (f"host {self.name}: the agent sent a line over {MAX_REPLY_BYTES} "
                            "bytes, which is no reply; the host is given up on")

    def _take(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if isinstance(message, dict):
            self.events.append(message)
        elif line.strip():  # not the protocol: keep it with what the host said, for the error
            self._stderr.append(f"(stdout) {line[:200].decode(errors='replace')}")

    def _next_message(self, timeout_s: float, wanted, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            exited = self.proc.poll() is not None  # before reading: its last words count
            self._read_available()
            for i, message in enumerate(self.events):
                if wanted(message):
                    return self.events.pop(i)
            if self.stalled:
                raise HostLost(self.stalled)
            if exited:
                raise self.lost()
            left = deadline - time.monotonic()
            if left <= 0:
                self.stalled = (f"host {self.name}: no answer to {what} within {timeout_s:.0f} s; "
                                "the agent there stopped answering")
                raise HostLost(self.stalled)
            select.select([self.proc.stdout], [], [], min(left, 0.1))

    def _wait_exit(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """End the connection; the agent stops whatever is still running when stdin closes."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        # A stalled agent will not see its input close: stop ssh now, which drops the
        # connection; the agent stops its workers whenever it runs again.
        if self._wait_exit(0.0 if self.stalled else 5.0) is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    self.proc.send_signal(sig)
                except ProcessLookupError:
                    break
                if self._wait_exit(3.0) is not None:
                    break
        self.proc.stdout.close()


class RemoteGroup:
    """A host's workers, run by its agent; the orchestrator's Group, over SSH."""

    def __init__(self, session: HostSession, specs: list[dict[str, Any]]) -> None:
        self.session = session
        self.host = session.name
        self.specs = specs
        self._records: list[dict[str, Any]] | None = None
        self.last: list[dict[str, int]] | None = None  # what the host said last, kept if it goes
        self.meta_after: dict[str, Any] | None = None

    def start(self, deadline_s: float, ready_timeout_s: float) -> list[str]:
        reply = self.session.request("start", timeout_s=ready_timeout_s * (len(self.specs) + 1) + 10,
                                     deadline_s=deadline_s, ready_timeout_s=ready_timeout_s)
        return [f"host {self.host}: {p}" for p in reply["problems"]]

    def go(self) -> None:
        self.session.request("go")

    def stop(self, role: int) -> None:
        self.session.request("stop", role=role)

    def read(self) -> list[dict[str, int]]:
        self.last = self.session.request("read")["slots"]
        return self.last

    def check(self) -> str | None:
        s = self.session
        s.poll_events()
        failed = next((e for e in s.events if e.get("event") == "failed"), None)
        if failed:
            return f"host {self.host}: {failed['message']}"
        if s.stalled or s.proc.poll() is not None:
            return str(s.lost())
        return None

    def finish(self, timeout_s: float) -> None:
        self.session.request("finish", timeout_s=timeout_s + 10, wait_s=timeout_s)

    def histograms(self) -> dict[str, dict[int, list[int]]]:
        reply = self.session.request("histograms", timeout_s=HISTOGRAMS_TIMEOUT_S)
        return {kind: {int(k): v for k, v in by_receiver.items()}
                for kind, by_receiver in reply["histograms"].items()}

    def close(self) -> None:
        if self._records is not None:
            return
        reply = self.session.request("close", timeout_s=20)
        self._records = reply["records"]
        self.meta_after = reply.get("meta")

    def records(self) -> list[dict[str, Any]]:
        if self._records is not None:
            return self._records
        # The host is gone: say so for each of its workers, keep the plan's facts.
        reason = str(self.session.lost())
        return [{"role": s["role"], "index": s["index"], "cpu": s.get("cpu"), "host": self.host,
                 "pid": None, "cpus_allowed": None, "socket": {}, "flows": [], "cpu_time": {},
                 "failure": reason} for s in self.specs]
