"""The `[hosts.NAME]` tables: other machines a run drives over SSH.

    [hosts.b]
    ssh = "root@b.example"        # anything the ssh client accepts (~/.ssh/config aliases too)
    python = "/opt/pps/bin/python3"   # the interpreter that has pps installed there
    netns = "bench"               # optional: run pps's workers in this namespace there
    ssh_options = ["-p", "2222"]  # optional extra ssh client arguments
    allow_local_commands = false  # optional: let ssh_options run commands here (see below)

Every value later becomes one argv item of the ssh command, never part of a shell string
built here, so the checks below are about what ssh and the remote shell would misread
(a destination that looks like an option, a newline, shell characters that a user's own
ProxyCommand %h would splice into a command), not about quoting.

A config with hosts is trusted input, but not code: ssh options that make the ssh client run
a local command or load a library are refused unless `allow_local_commands = true`
(pps.config.ssh_options says which and why).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pps.config.ssh_options import check_ssh_options
from pps.errors import ConfigError

LOCAL = "local"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")  # used with fullmatch: "$" allows a "\n"
# user@host, an alias, [v6 literal], ssh://user@host:port: nothing a shell would act on when
# a user's own ProxyCommand splices it in through %h or %r (CVE-2023-51385).
DESTINATION = re.compile(r"(ssh://)?[A-Za-z0-9_.@:%+\[\]-]+")
HOST_KEYS = {
    "ssh": "ssh destination: user@host or an ~/.ssh/config alias (required)",
    "python": "python interpreter with pps installed on that host (default python3)",
    "netns": "network namespace on that host to run the workers in",
    "ssh_options": "extra ssh client arguments, a list (e.g. [\"-p\", \"2222\"])",
    "allow_local_commands": "let ssh_options run commands or load libraries on this host, "
                            "e.g. ProxyCommand (default false: a config is not code)",
}


def worker_label(host: str, role: str, index: int) -> str:
    """How a worker is named in tables and text: receiver-0 here, b/receiver-0 on host b."""
    name = f"{role}-{index}"
    return name if host == LOCAL else f"{host}/{name}"


def roles_by_host(config: Any) -> dict[str, tuple[str, ...]]:
    """Host name -> the roles (receiver, sender) a config runs there, receivers' hosts first."""
    out: dict[str, tuple[str, ...]] = {}
    for role, hosts in (("receiver", config.receivers.hosts), ("sender", config.senders.hosts)):
        for host in hosts:
            out[host] = out.get(host, ()) + (role,)
    return out


@dataclass(frozen=True)
class HostSpec:
    name: str
    ssh: str
    python: str = "python3"
    netns: str | None = None
    ssh_options: tuple[str, ...] = ()
    allow_local_commands: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"ssh": self.ssh, "python": self.python, "netns": self.netns,
                "ssh_options": list(self.ssh_options),
                "allow_local_commands": self.allow_local_commands}


def _text(where: str, value: Any, *, option_like_ok: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    if any(c in value for c in "\n\r\0"):
        raise ConfigError(f"{where}: {value!r} holds a newline or NUL")
    if not option_like_ok and value.startswith("-"):
        raise ConfigError(f"{where}: {value!r} starts with '-' and would be read as an ssh option")
    return value


def _host(source: str, name: str, body: Any) -> HostSpec:
    where = f"{source}: hosts.{name}"
    if not NAME.fullmatch(name) or name == LOCAL:
        raise ConfigError(f"{where}: host names are letters, digits, '.', '_' and '-', and not 'local'")
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where}: must be a table with at least ssh = \"user@host\"")
    for key in body:
        if key not in HOST_KEYS:
            import difflib

            close = difflib.get_close_matches(key, list(HOST_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; keys are {', '.join(HOST_KEYS)}")
    if "ssh" not in body:
        raise ConfigError(f"{where}: ssh is required ({HOST_KEYS['ssh']})")
    ssh = _destination(f"{where}.ssh", body["ssh"])
    python = _text(f"{where}.python", body.get("python", "python3"))
    netns = body.get("netns")
    if netns is not None:
        netns = _text(f"{where}.netns", netns)
        if not is_netns_name(netns):
            raise ConfigError(f"{where}.netns: {netns!r} is not a namespace name")
    allow = body.get("allow_local_commands", False)
    if not isinstance(allow, bool):
        raise ConfigError(f"{where}.allow_local_commands: expected true or false, got {allow!r}")
    options = body.get("ssh_options", [])
    if isinstance(options, str):
        options = [options]
    if not isinstance(options, list):
        raise ConfigError(f"{where}.ssh_options: expected a list of strings, got {options!r}")
    options = tuple(_text(f"{where}.ssh_options", o, option_like_ok=True) for o in options)
    check_ssh_options(f"{where}.ssh_options", name, options, allow)
    return HostSpec(name, ssh, python, netns, options, allow)


def _destination(where: str, value: Any) -> str:
    ssh = _text(where, value)
    if any(c.isspace() for c in ssh):
        raise ConfigError(f"{where}: {ssh!r} holds whitespace; put options in ssh_options")
    if not DESTINATION.fullmatch(ssh):
        bad = next(c for c in ssh if not DESTINATION.fullmatch(f"x{c}"))
        raise ConfigError(f"{where}: {ssh!r} holds {bad!r}; a destination is user@host, "
                          "an ~/.ssh/config alias or ssh://user@host:port")
    return ssh


def is_netns_name(name: Any) -> bool:
    """A plain namespace name (a file under /run/netns): no '/', no '..', no NUL, short.

    The config checks it here and the agent checks it again, since pps.host.netns.enter takes
    anything with a '/' as a path to any namespace file."""
    return isinstance(name, str) and NAME.fullmatch(name) is not None and ".." not in name


def parse_hosts(source: str, body: Any, overrides: Iterable[tuple[str, Any]]) -> tuple[HostSpec, ...]:
    """The [hosts] table plus `--set hosts.NAME.KEY=VALUE` items -> validated HostSpecs."""
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise ConfigError(f"{source}: [hosts] must hold tables like [hosts.b]")
    merged: dict[str, dict[str, Any]] = {n: dict(b) if isinstance(b, Mapping) else b
                                         for n, b in body.items()}
    for dotted, value in overrides:
        parts = dotted.split(".")
        if len(parts) != 3:
            raise ConfigError(f"--set {dotted}: host keys are hosts.NAME.KEY, e.g. hosts.b.ssh")
        merged.setdefault(parts[1], {})[parts[2]] = value
    return tuple(_host(source if name in body else "--set", name, b) for name, b in merged.items())


def check_roles(source: str, hosts: tuple[HostSpec, ...],
                placed: Mapping[str, str | tuple[str, ...]], explicit_target: bool, target: str,
                lab: bool) -> None:
    """senders.host and receivers.host name known hosts; a run across hosts names its target."""
    names = {h.name for h in hosts}
    placed = {key: (v,) if isinstance(v, str) else tuple(v) for key, v in placed.items()}
    for key, name in ((k, n) for k, v in placed.items() for n in v):
        if name != LOCAL and name not in names:
            import difflib

            close = difflib.get_close_matches(name, sorted(names), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(["local", *sorted(names)])
            raise ConfigError(f"{source}: {key}: no host {name!r}{hint}; hosts are {known}")
    everywhere = {n for v in placed.values() for n in v}
    if everywhere == {LOCAL}:
        return
    if lab:
        raise ConfigError(f"{source}: lab.enabled: the lab lives on this host; a run across hosts "
                          "cannot use it")
    if not explicit_target:
        raise ConfigError(f"{source}: target.address: a run on another host must name the receivers' "
                          "address explicitly (it is a real load on a real network)")
    import ipaddress

    if ipaddress.ip_address(target).is_loopback and len(everywhere) > 1:
        raise ConfigError(f"{source}: target.address: {target} is loopback, which another host "
                          "cannot reach; name the receivers' address on the network")
