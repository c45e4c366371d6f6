"""The processes a bench script started, found in /proc (shared by the bench scripts)."""

from __future__ import annotations

import os


def children(parent: int, cmdline_has: bytes | None = None) -> list[int]:
    """PIDs whose parent is `parent` (and whose command line holds `cmdline_has`, if given)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) != parent:
                    continue
            if cmdline_has is not None:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if cmdline_has not in f.read():
                        continue
            out.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return out
