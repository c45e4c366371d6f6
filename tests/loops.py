"""Helpers for tests that drive the C loops directly: a receiver loop on a thread, on an
ephemeral loopback port, and hand-made packets; and one whole trial on loopback."""

from __future__ import annotations

import socket
import struct
import threading
import time

from pps import native
from pps.host import offload
from pps.host.sockets import open_receiver
from pps.results.summary import summarize
from pps.run.group import LocalGroup
from pps.run.trial import Trial, WorkerSpec, worker_specs

WIRE = struct.Struct("<IIQQ")


class RunningReceiver:
    """A receiver loop on a thread (the C call releases the GIL), on an ephemeral port."""

    def __init__(self, stats: native.SharedStats, slot: int = 1, sock_opts: dict | None = None,
                 **params) -> None:
        self.sock, self.report = open_receiver("127.0.0.1", 0, reuseport=False, rcvbuf=1 << 22,
                                               **(sock_opts or {}))
        self.port = self.sock.getsockname()[1]
        self.stats, self.slot = stats, slot
        self.receiver = native.Receiver(native.RecvParams(fd=self.sock.fileno(), batch=32, **params))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.receiver.run(self.stats, self.slot)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def wait_for(self, packets: int, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while self.stats.read(self.slot)["packets"] < packets and time.monotonic() < end:
            time.sleep(0.01)

    def stop(self) -> dict[str, int]:
        self.stats.stop(native.RECEIVER)
        self.thread.join(5)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
        counters = self.stats.read(self.slot)
        self.flows = self.receiver.flows()
        self.receiver.close()
        self.sock.close()
        return counters


def send_raw(port: int, payloads: list[bytes], pause_s: float = 0.0002) -> None:
    """One datagram at a time, with a pause after each so the receiver reads each one on
    its own and never overflows; pause_s=0 sends back to back, so batches fill (the
    receiver's 4 MB buffer holds a few thousand)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, ("127.0.0.1", port))
            if pause_s:
                time.sleep(pause_s)


def wire(flow: int, seq: int, tx_ns: int = 0, pad: int = 8) -> bytes:
    return WIRE.pack(native.MAGIC, flow, seq, tx_ns or native.now_ns()) + b"\0" * pad


def run_trial(config) -> tuple:
    """One trial of `config` on loopback (sender on CPU 0, receivers on CPU 1) with no
    results directory: the config, the outcome, and the summary a run prints."""
    workers = [WorkerSpec("sender", 0, 0)] + [WorkerSpec("receiver", i, 1)
                                              for i in range(config.receivers.count)]
    wire = {"destinations": ["127.0.0.1"], "bind": "127.0.0.1", "run_key": 0x5eed}
    outcome = Trial(config, [LocalGroup(worker_specs(config, workers, wire))]).run()
    assert outcome.failure is None
    summary = summarize(outcome)
    summary.update(offload.summary_extras(config, outcome, summary))
    return config, outcome, summary
