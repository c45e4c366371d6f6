"""Reading the files pps is given (configs, run.json, sweep.json, Parquet tables) without
trusting them, and writing its own files without following what someone planted.

Every input is opened once, without blocking (a FIFO or a terminal would otherwise hang the
open or the read), checked with fstat to be a regular file of bounded size, then read from
that same descriptor, so what was checked is what is read. Any problem is one ConfigError
line (exit 2) naming the file: not found, not a regular file, too big, not UTF-8, not the
JSON shape expected, nested too deep, a number too long for Python to convert.

Writes go to a temporary file made with mkstemp in the target directory (created
exclusively, so a symlink planted at a fixed name is never followed or overwritten), then
renamed over the target.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pps.errors import ConfigError

KIB, MIB = 1024, 1024 * 1024
# Limits by what a file is: generous for anything pps writes itself, small enough that a
# wrong path (a disk image, /dev/zero) is refused at once instead of filling memory.
MAX_CONFIG_BYTES = 1 * MIB
MAX_JSON_BYTES = 64 * MIB
MAX_TABLE_BYTES = 1024 * MIB
RESCUE_PREFIX = "pps-rescue"

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def shown(path: Path | str) -> str:
    """A path for a one-line message: control characters (a newline in a name) escaped."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_special(path: Path | str, mode: int, what: str) -> None:
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{shown(path)}: cannot read {what}: {_kind(mode)}, not a regular file")


def _oserror(path: Path | str, what: str, exc: OSError) -> ConfigError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT:
        reason = "no such file"
    return ConfigError(f"{shown(path)}: cannot read {what}: {reason}")


def open_regular(path: Path | str, limit: int, what: str) -> tuple[int, int]:
    """Open `path` for reading without blocking and check it is a regular file of at most
    `limit` bytes. Returns (fd, size); the caller closes fd. Raises ConfigError."""
    try:
        # stat first so a device is never opened (opening some has side effects); fstat
        # after the open is what counts, since the name may change in between.
        _refuse_special(path, os.stat(path).st_mode, what)
        fd = os.open(path, _OPEN_FLAGS)
    except ConfigError:
        raise
    except ValueError:  # a NUL byte in the path
        raise ConfigError(f"{shown(path)}: cannot read {what}: the path holds a NUL byte") from None
    except OSError as exc:
        raise _oserror(path, what, exc) from None
    try:
        info = os.fstat(fd)
        _refuse_special(path, info.st_mode, what)
        if info.st_size > limit:
            raise ConfigError(f"{shown(path)}: {what} is {info.st_size:,} bytes, more than the "
                              f"{limit:,} pps reads")
        os.set_blocking(fd, True)  # a regular file: the flag only mattered for the open
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def read_bytes(path: Path | str, limit: int, what: str) -> bytes:
    """The whole of a bounded regular file."""
    fd, _ = open_regular(path, limit, what)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)  # the file may have grown since fstat
    except OSError as exc:
        raise _oserror(path, what, exc) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(f"{shown(path)}: {what} is more than the {limit:,} bytes pps reads")
    return data


def read_text(path: Path | str, limit: int, what: str) -> str:
    """A bounded regular file that must be UTF-8 text."""
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown(path)}: {what} is not UTF-8 text (byte {exc.start})") from None


def parse_json(text: str, where: str) -> Any:
    """json.loads with every way untrusted text can fail turned into one ConfigError line."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ConfigError(f"{where}: not valid JSON: nested too deep") from None
    except ValueError as exc:  # JSONDecodeError, and ints past Python's 4300-digit limit
        raise ConfigError(f"{where}: not valid JSON: {_first_line(exc)}") from None


def read_json(path: Path | str, what: str, expect: type = dict,
              limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file whose top level must be `expect` (an object by default)."""
    value = parse_json(read_text(path, limit, what), shown(path))
    if not isinstance(value, expect):
        raise ConfigError(f"{shown(path)}: {what} should hold a JSON {_json_name(expect)}, "
                          f"not {_json_name(type(value))}")
    return value


def read_parquet(path: Path | str, what: str = "table",
                 limit: int = MAX_TABLE_BYTES) -> Any:
    """A Parquet table as a DataFrame, read from the descriptor that was checked."""
    import pandas as pd

    fd, _ = open_regular(path, limit, what)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            return pd.read_parquet(f)
    # A decoder of untrusted bytes can fail in many ways (ArrowInvalid, OSError from
    # thrift, KeyError on odd metadata); each means the same here: a damaged file.
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{shown(path)}: {what} is not a readable Parquet table: "
                          f"{_first_line(exc)}") from None
    finally:
        os.close(fd)


def _json_name(kind: type) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number",
            bool: "true/false", type(None): "null"}.get(kind, kind.__name__)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:200] + "..."


# ---------------------------------------------------------------------------- writing

def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through a temporary file created exclusively beside it, then rename.
    A name planted in the directory (a symlink, a file) is never opened; a failure leaves
    the old `path` as it was and removes the temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def rescue_dir(kind: str = "run") -> Path:
    """A fresh private directory under the temp dir for results that could not be written
    where asked: pps-rescue-<time>-<pid>-<random>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{RESCUE_PREFIX}-{stamp}-{os.getpid()}-{kind}-",
                                 dir=tempfile.gettempdir()))


def describe_oserror(exc: BaseException) -> str:
    """An OSError as its strerror and the file it names, in one line."""
    if isinstance(exc, OSError) and exc.strerror:
        name = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror}{name}"
    return _first_line(exc)

