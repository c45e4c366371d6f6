"""Who owns a lab: the run using it now, and the run that made it.

A run holds its lab for as long as it runs: an exclusive flock on /run/pps/lab-<id>.use,
with the run's pid written inside for the message others get. The kernel drops the lock
when the process dies, however it dies, so a crashed run never leaves a lab locked.
`pps lab down` takes the same lock first and refuses a lab in use unless forced; a second
run on the same lab is refused the same way (exit 3) instead of measuring alongside.

Two people on one host must not share a lab by accident, so the default lab id is
per user: the login name (or the sudo user's), cut to the lab id's rules.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import re
from collections.abc import Iterator

from pps.errors import EnvironmentNotAble

STATE_DIR = "/run/pps"
_NOT_ID = re.compile(r"[^a-z0-9-]+")


def default_id() -> str:
    """This user's lab id: 'lab-' and up to 5 characters of the user's name ('lab-root'),
    or 'lab-u<uid>' where the name has none of a-z and 0-9. Under sudo, the invoking user's."""
    uid = int(os.environ.get("SUDO_UID", os.getuid()))
    try:
        user = os.environ.get("SUDO_USER") or pwd.getpwuid(uid).pw_name
    except KeyError:
        user = ""
    word = _NOT_ID.sub("", user.lower())[:5].strip("-") or f"u{uid}"[:5]
    return f"lab-{word}"


def use_path(lab_id: str) -> str:
    return os.path.join(STATE_DIR, f"lab-{lab_id}.use")


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return os.pread(fd, 32, 0).decode().strip() or "?"
    return "?"


@contextlib.contextmanager
def held(lab_id: str, purpose: str = "run") -> Iterator[None]:
    """Hold the lab for the block: a run while it measures, `lab down` while it removes.
    Raises EnvironmentNotAble (exit 3) naming the holder's pid when someone holds it."""
    os.makedirs(STATE_DIR, exist_ok=True)
    fd = os.open(use_path(lab_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            raise EnvironmentNotAble(
                f"lab {lab_id!r} is in use by a run (pid {pid}); wait for it, use another "
                f"lab with --set lab.id=NAME"
                + (", or `pps lab down --force` to take it away" if purpose == "down" else "")
                + ("; its settings are not changed under a measurement" if purpose == "up" else "")
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # drops the lock; the file stays, so no unlink-while-locked race


def forget(lab_id: str) -> None:
    """Remove the lab's lock file, by the one holding it, once the lab itself is gone: a host
    that ran many labs keeps no file per id. Whoever opens the name afterwards makes a new
    file and lock, which is right, since there is no lab left to share."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(use_path(lab_id))

