"""Exit codes, the same for every command: the one table of them (README "Exit codes").

Beside pps.errors at the bottom of the package, importing nothing of pps: pps.errors gives
each error class its code from here, and the CLI (pps.cli) returns them.
"""

from __future__ import annotations

import signal

EXIT_OK = 0
# The run worked but a check failed: run.max_loss, a regression in `compare`, the newest
# point of `history`, a search that found no rate.
EXIT_CHECK = 1
EXIT_USAGE = 2  # bad usage, config or input file (a key, a value, --out); nothing was sent
EXIT_HOST = 3  # the host cannot: privileges, a device, a kernel feature, a port or lab in use
EXIT_FAILED = 4  # the run failed: a worker or host died or stalled; what was measured is saved
EXIT_SIGNAL_BASE = 128  # 128 + N: stopped by signal N; what was measured is saved


def stopped_by(signum: int) -> int:
    """The exit code of a command stopped by signal `signum`: 130 SIGINT, 143 SIGTERM,
    129 SIGHUP."""
    return EXIT_SIGNAL_BASE + signum


# A command that was stopped returns this; main() makes it 128 + the signal that stopped it.
EXIT_INTERRUPTED = stopped_by(signal.SIGINT)
EXIT_BROKEN_PIPE = stopped_by(signal.SIGPIPE)  # 141: `pps topo | head` closed our stdout
