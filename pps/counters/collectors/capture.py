"""Snapshots taken many times a second without disturbing the run: readers opened once,
raw bytes kept at each sample, parsing left for later.

A sample runs on the orchestrator's thread while every CPU is busy with senders and
receivers, so what it costs comes straight out of their rate. Building ~500 `Reading`
objects per sample cost more than the reads themselves, and each namespace cost a
throw-away thread to enter it. So a `Capturer`:

- opens, once per namespace (on one `netns.call_in` thread), the /proc/net files, a route
  and a generic netlink socket and an ioctl socket. All of them stay bound to the namespace
  they were opened in, so later samples read them from the calling thread, with no setns;
- at each sample only reads: pread of the files, one link dump, one qstats dump, and one
  ETHTOOL_GSTATS per device (the names table is read again at full samples, or when the
  driver's count changed);
- keeps the raw bytes in a `Capture`; `parse(capture)` turns them into Readings when the
  counters table is built, after the run.

A collector that is not able (lo has no ethtool stats, no driver queue stats) is tried at
every full sample and skipped at the light ones in between: its answer does not change
within a run, and the Unavailable record from the full sample says why it is missing.
A reader that fails otherwise is closed and opened again at the next sample.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from pps.counters.collectors import interrupts, link, nic, snmp, sockets, softnet
from pps.counters.collectors.base import SOURCES, Reading, Scope, Unavailable
from pps.errors import EnvironmentNotAble
from pps.host import netns as _netns

GLOBAL_FILES = {"softnet": "/proc/net/softnet_stat", "interrupts": "/proc/interrupts",
                "softirqs": "/proc/softirqs"}
SOCKET_FILES = ("udp", "udp6")
CHUNK = 1 << 16

# One raw piece of a capture: (netns, source, device or file, data).
Raw = tuple[str | None, str, str | None, Any]


@dataclass
class Capture:
    raw: list[Raw] = field(default_factory=list)
    missing: list[Unavailable] = field(default_factory=list)


def _pread_all(fd: int) -> bytes:
    """The whole file from offset 0: a seq_file regenerates its text on a read at 0."""
    chunks, offset = [], 0
    while True:
        data = os.pread(fd, CHUNK, offset)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        offset += len(data)


def _not_able(reason: str) -> Any:
    raise EnvironmentNotAble(reason)


def merge_scopes(scopes: Sequence[Scope]) -> list[Scope]:
    """Scopes naming the same namespace become one (union of devices and ports, in order)."""
    merged: dict[str | None, Scope] = {}
    for s in scopes:
        old = merged.get(s.netns, Scope(s.netns))
        merged[s.netns] = Scope(s.netns, tuple(dict.fromkeys(old.devices + s.devices)),
                                tuple(dict.fromkeys(old.ports + s.ports)))
    return list(merged.values())


class _Readers:
    """Everything one namespace is read through; constructed inside that namespace."""

    def __init__(self, scope: Scope, sources: Collection[str]) -> None:
        self.files: dict[str, int] = {}
        self.route: link.Netlink | None = None
        self.genl: link.Netlink | None = None
        self.ioctl: socket.socket | None = None
        self.broken: dict[str, str] = {}  # reader key -> why it could not be opened
        for source, filename in snmp.FILES.items():
            if source in sources:
                self._open(source, lambda f=filename: self._file(f))
        if "socket" in sources and scope.ports:
            for proto in SOCKET_FILES:
                self._open(proto, lambda p=proto: self._file(p, optional=p == "udp6"))
        if "link" in sources or "qstats" in sources:
            self.route = self._open("link", lambda: link.Netlink(socket.NETLINK_ROUTE))
        if "qstats" in sources:
            self.genl = self._open("qstats", lambda: link.Netlink(link.NETLINK_GENERIC))
        if "ethtool" in sources and scope.devices:
            self.ioctl = self._open("ethtool", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))

    def _open(self, key: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except OSError as exc:
            self.broken[key] = f"cannot open: {exc.strerror or exc}"
            return None

    def _file(self, name: str, optional: bool = False) -> None:
        try:
            self.files[name] = os.open(f"/proc/thread-self/net/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not optional:  # udp6 is absent when IPv6 is off; that is no failure
                raise

    def close(self) -> None:
        for fd in self.files.values():
            with contextlib.suppress(OSError):  # a reader gone bad may fail to close too
                os.close(fd)
        self.files.clear()
        for closable in (self.route, self.genl, self.ioctl):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self.route = self.genl = self.ioctl = None


class Capturer:
    """Repeated snapshots of `scopes` (the sources in `sources`) plus the host-wide files."""

    def __init__(self, scopes: Sequence[Scope], sources: Collection[str] = SOURCES) -> None:
        self.scopes = merge_scopes(scopes)
        self.sources = frozenset(sources)
        self._readers: dict[str | None, _Readers] = {}
        self._global: dict[str, int] = {}
        self._family: int | None = None
        self._names: dict[tuple[str | None, str], tuple[int, bytes]] = {}  # ethtool names tables
        self._not_able: set[tuple[str | None, str, str | None]] = set()

    def __enter__(self) -> Capturer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for r in self._readers.values():
            r.close()
        self._readers.clear()
        for fd in self._global.values():
            os.close(fd)
        self._global.clear()

    # ---------------------------------------------------------------- taking
    def take(self, full: bool = True) -> Capture:
        """Read everything now. `full` also retries collectors found not able and re-reads
        the ethtool names; light samples (full=False) skip both. Never raises for one
        collector's failure: it becomes an Unavailable in the capture."""
        cap = Capture()
        if full:
            self._not_able.clear()
        for scope in self.scopes:
            self._take_scope(scope, full, cap)
        for source, path in GLOBAL_FILES.items():
            if source in self.sources:
                self._guard(cap, None, source, None, lambda s=source, p=path: self._read_global(s, p))
        return cap

    def _guard(self, cap: Capture, ns: str | None, source: str, device: str | None,
               fn: Callable[[], Any], on_error: Callable[[], None] | None = None,
               tag: str | None = None) -> None:
        """Run one reader into the capture; `tag` (default: device) travels with its data."""
        key = (ns, source, device)
        if key in self._not_able:
            return
        try:
            cap.raw.append((ns, source, tag or device, fn()))
        except Exception as exc:  # any reader failure must not stop the run; the reason is kept
            if isinstance(exc, EnvironmentNotAble):
                self._not_able.add(key)
            elif on_error is not None:
                on_error()
            cap.missing.append(Unavailable(source, device, str(exc) or type(exc).__name__, ns))

    def _take_scope(self, scope: Scope, full: bool, cap: Capture) -> None:
        ns = scope.netns
        readers = self._readers.get(ns)
        if readers is None:
            if (ns, "netns", None) in self._not_able:
                return
            try:
                readers = _netns.call_in(ns, lambda: _Readers(scope, self.sources))
            except Exception as exc:  # the namespace itself is gone or not enterable
                if isinstance(exc, EnvironmentNotAble):
                    self._not_able.add((ns, "netns", None))
                cap.missing.append(Unavailable("netns", None, str(exc) or type(exc).__name__, ns))
                return
            self._readers[ns] = readers

        def reopen() -> None:  # a reader in an unknown state: start afresh next sample
            readers.close()
            self._readers.pop(ns, None)

        for key, reason in readers.broken.items():
            source = "socket" if key in SOCKET_FILES else key
            self._guard(cap, ns, source, None, lambda r=reason: _not_able(r))
        for key, fd in list(readers.files.items()):
            source = "socket" if key in SOCKET_FILES else key
            self._guard(cap, ns, source, None, lambda fd=fd: _pread_all(fd), reopen,
                        tag=key)
        if readers.route is not None:
            self._guard(cap, ns, "link", None, lambda: readers.route.request(
                link.RTM_GETLINK, link.NLM_F_DUMP, link.LINK_DUMP), reopen)
        if readers.genl is not None:
            self._guard(cap, ns, "qstats", None, lambda: self._qstats(readers.genl), reopen)
        if readers.ioctl is not None:
            for dev in scope.devices:
                self._guard(cap, ns, "ethtool", dev,
                            lambda d=dev: self._ethtool(readers.ioctl, ns, d, full))

    def _read_global(self, source: str, path: str) -> bytes:
        fd = self._global.get(source)
        if fd is None:
            fd = self._global[source] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return _pread_all(fd)

    def _qstats(self, nl: link.Netlink) -> list[bytes]:
        if self._family is None:
            self._family = link.netdev_family(nl)
        replies = link.request_qstats(nl, self._family)
        if not replies:
            raise EnvironmentNotAble("no per-queue stats from any device "
                                     "(driver does not implement netdev queue stats)")
        return replies

    def _ethtool(self, sock: socket.socket, ns: str | None, dev: str, full: bool) -> tuple[bytes, bytes]:
        cached = self._names.get((ns, dev))
        if not full and cached is not None:
            n, strings = cached
            stats = nic.read_stats(sock, dev, n)
            if stats is not None:
                return strings, stats
        strings, stats = nic.read_binary(sock, dev)
        self._names[(ns, dev)] = (len(stats) // 8, strings)
        return strings, stats

    # ---------------------------------------------------------------- parsing
    def parse(self, cap: Capture) -> tuple[list[tuple[str | None, Reading]], list[Unavailable]]:
        """The Readings of a capture (tagged with their netns) and every Unavailable."""
        readings: list[tuple[str | None, Reading]] = []
        missing = list(cap.missing)
        scopes = {s.netns: s for s in self.scopes}
        names: dict[str | None, dict[int, str]] = {}

        def add(ns: str | None, source: str, device: str | None,
                fn: Callable[[], list[Reading]]) -> None:
            try:
                readings.extend((ns, r) for r in fn())
            except Exception as exc:  # a malformed capture loses that collector, not the run
                missing.append(Unavailable(source, device, str(exc) or type(exc).__name__, ns))

        for ns, source, device, data in cap.raw:  # link comes before qstats in every scope
            scope = scopes.get(ns, Scope(ns))
            if source in snmp.FILES:
                add(ns, source, None, lambda d=data, s=source: snmp.parse(d.decode(), s))
            elif source == "socket":
                add(ns, source, None, lambda d=data, p=device, sc=scope: sockets.parse(d.decode(), p, sc.ports))
            elif source == "link":
                add(ns, source, None, lambda d=data, sc=scope: self._parse_link(d, sc, names))
            elif source == "qstats":
                add(ns, source, None, lambda d=data, sc=scope: self._parse_qstats(d, sc, names))
            elif source == "ethtool":
                add(ns, source, device, lambda d=data, dev=device: nic.parse_binary(*d, dev))
            elif source == "softnet":
                add(None, source, None, lambda d=data: softnet.parse(d.decode()))
            elif source == "interrupts":
                add(None, source, None, lambda d=data: interrupts.parse_interrupts(d.decode()))
            elif source == "softirqs":
                add(None, source, None, lambda d=data: interrupts.parse_softirqs(d.decode()))
        return readings, missing

    def _parse_link(self, payloads: list[bytes], scope: Scope,
                    names: dict[str | None, dict[int, str]]) -> list[Reading]:
        got, index = link.parse(payloads, scope.devices)
        names[scope.netns] = index
        link.check_devices(index, scope.devices)
        return got if "link" in self.sources else []

    def _parse_qstats(self, payloads: list[bytes], scope: Scope,
                      names: dict[str | None, dict[int, str]]) -> list[Reading]:
        index = names.get(scope.netns)
        if not index:
            raise EnvironmentNotAble("no link dump to name the devices")
        wanted = {i: n for i, n in index.items() if not scope.devices or n in scope.devices}
        return link.check_qstats(link.parse_qstats(payloads, wanted), wanted)


def snapshot(scopes: Sequence[Scope], sources: Collection[str] = SOURCES
             ) -> tuple[list[tuple[str | None, Reading]], list[Unavailable]]:
    """One snapshot, parsed at once (readers opened and closed around it)."""
    with Capturer(scopes, sources) as c:
        return c.parse(c.take())
