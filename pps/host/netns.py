"""Enter a network namespace by its file (/run/netns/NAME), for a process or one thread.

Python 3.11 has no os.setns, so this calls libc's setns(2) directly. setns changes the
calling *thread*; a worker calls `enter` before it opens any socket, and collectors use
`call_in` to run a function on a short-lived thread that lives in the namespace, so the
orchestrator's own threads never move.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable
from typing import TypeVar

from pps.errors import EnvironmentNotAble

CLONE_NEWNET = 0x40000000  # <linux/sched.h>; fixed by the kernel ABI
NETNS_RUN_DIR = "/run/netns"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
T = TypeVar("T")


def netns_path(name_or_path: str) -> str:
    """A namespace name ("pps-lab-rx") or path -> its file path."""
    return name_or_path if "/" in name_or_path else os.path.join(NETNS_RUN_DIR, name_or_path)


def enter(name_or_path: str) -> None:
    """Move the calling thread into the network namespace. Raises EnvironmentNotAble."""
    path = netns_path(name_or_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise EnvironmentNotAble(f"network namespace {path}: {exc.strerror}") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise EnvironmentNotAble(f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in(name_or_path: str | None, func: Callable[[], T]) -> T:
    """Run func() inside the namespace on a throw-away thread; None means this namespace."""
    if name_or_path is None:
        return func()
    box: dict[str, object] = {}

    def target() -> None:
        try:
            enter(name_or_path)
            box["value"] = func()
        except BaseException as exc:  # handed back to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name="pps-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
