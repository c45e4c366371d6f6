"""SIGTERM and SIGHUP stop pps the way Ctrl-C does.

`timeout`, a cancelled CI job and systemd send SIGTERM; a closed terminal or a dropped SSH
session sends SIGHUP. Left to their default, both end the process at once: the results of a
run are lost and a lab's namespaces and host sysctls stay behind. With `install()`, each of
SIGINT, SIGTERM and SIGHUP raises `Stopped` (a KeyboardInterrupt, so every place that already
stops cleanly on Ctrl-C handles all three), and the process exits with 128 + the signal's
number, as a shell expects.

Only the first signal raises. Cleanup (stopping workers, writing results, removing a lab)
must not be cut short by an impatient second Ctrl-C or a CI runner that repeats its SIGTERM,
and code that must finish runs inside `deferred()`, where a signal is only recorded. SIGKILL
is still the way to end pps at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_received: int | None = None
_deferring = 0


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum: int, _frame: object) -> None:
    global _received
    first = _received is None
    _received = _received or signum
    if first and not _deferring:
        raise Stopped(signum)


def install() -> None:
    """Route the stop signals through `_on_signal` (main thread only, as Python requires)."""
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, _on_signal)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run a block that must finish: a stop signal during it is recorded, not raised.
    Without `install()` (pps used as a library) Ctrl-C is ignored for the block's length."""
    global _deferring
    ours = signal.getsignal(signal.SIGINT) is _on_signal
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main and not ours else None
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def received() -> int | None:
    """The first stop signal this process got, or None."""
    return _received


def name(signum: int | None) -> str | None:
    return signal.Signals(signum).name if signum else None


def exit_code() -> int:
    """128 + the signal that stopped us: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (_received or signal.SIGINT)

