"""Host metadata recorded before and after every run: what a later reader needs to know
whether two results can be compared (kernel, CPU, NIC, sysctls, pps version)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from pps import __version__

SYSCTLS = (
    "net/core/rmem_max", "net/core/wmem_max", "net/core/rmem_default", "net/core/wmem_default",
    "net/core/netdev_max_backlog", "net/core/busy_poll", "net/core/busy_read",
    "net/core/netdev_budget", "net/core/rps_sock_flow_entries",
)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_model(root: Path) -> str | None:
    text = _read(root / "proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith(("model name", "Model", "cpu model")):
            return line.split(":", 1)[1].strip()
    return None


def git_revision() -> str | None:
    """The source tree's commit, when pps runs from a checkout."""
    top = Path(__file__).resolve().parent.parent
    if not (top / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(top), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def sysctls(root: Path) -> dict[str, str | None]:
    return {name.replace("/", "."): _read(root / "proc/sys" / name) for name in SYSCTLS}


def host(root: str = "/") -> dict[str, Any]:
    base = Path(root)
    uname = os.uname()
    return {
        "hostname": uname.nodename, "kernel": uname.release, "machine": uname.machine,
        "cpu_model": cpu_model(base), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "pps_version": __version__,
        "git_revision": git_revision(), "sysctls": sysctls(base),
    }
