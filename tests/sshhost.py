"""A second "host" for tests: a network namespace joined to this one by a veth pair, with
its own sshd on a throw-away host key, reached at a 198.19.0.0/16 address (inside the
benchmarking range 198.18.0.0/15). Everything is made with unique names and removed after.

The agent over there runs this checkout's pps, whatever is installed: its python is a small
script that puts the checkout first on PYTHONPATH (ssh carries no environment).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
CHECKOUT = Path(__file__).resolve().parent.parent


@dataclass
class SshHost:
    netns: str
    local_addr: str   # this host's end of the veth
    remote_addr: str  # the namespace's end, where sshd listens
    ssh_config: Path
    sshd_pid: int
    python: Path      # runs sys.executable with this checkout first on PYTHONPATH

    def sets(self, name: str = "b", python: str | None = None) -> list[str]:
        """`--set` items declaring this host as [hosts.NAME]."""
        return [f"hosts.{name}.ssh=root@{self.remote_addr}",
                f"hosts.{name}.python={python or self.python}",
                f"hosts.{name}.ssh_options={json.dumps(self.plain_options())}"]

    def plain_options(self) -> list[str]:
        """The fixture's ssh settings as plain options (no -F, which a shared config may not
        hold unless it allows local commands)."""
        d = self.ssh_config.parent
        return ["-i", str(d / "id"), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={d / 'known_hosts'}", "-o", "StrictHostKeyChecking=no",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]

    def processes(self, needle: str = "pps") -> list[int]:
        """PIDs of processes in the namespace whose command line holds `needle` (not sshd)."""
        inode = os.stat(f"/run/netns/{self.netns}").st_ino
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino != inode:
                    continue
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if needle in cmdline and "sshd" not in cmdline:
                found.append(int(entry))
        return found


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _wait_listening(address: str, port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {address}:{port}")


def start(tmp: Path) -> SshHost:
    tag = secrets.token_hex(3)
    netns, here, there = f"pps-ssh-{tag}", f"pss{tag}a", f"pss{tag}b"
    third, fourth = secrets.randbelow(256), secrets.randbelow(64) * 4
    local_addr, remote_addr = f"198.19.{third}.{fourth + 1}", f"198.19.{third}.{fourth + 2}"
    _run("ip", "netns", "add", netns)
    try:
        _run("ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", netns)
        _run("ip", "addr", "add", f"{local_addr}/30", "dev", here)
        _run("ip", "link", "set", here, "up")
        _run("ip", "-n", netns, "addr", "add", f"{remote_addr}/30", "dev", there)
        _run("ip", "-n", netns, "link", "set", there, "up")
        _run("ip", "-n", netns, "link", "set", "lo", "up")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "host_key"))
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "id"))
        (tmp / "authorized_keys").write_text((tmp / "id.pub").read_text())
        (tmp / "sshd_config").write_text(
            f"ListenAddress {remote_addr}\nPort 22\nHostKey {tmp / 'host_key'}\n"
            f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"StrictModes no\nPidFile {tmp / 'sshd.pid'}\nLogLevel ERROR\n")
        (tmp / "ssh_config").write_text(
            f"Host *\n  IdentityFile {tmp / 'id'}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {tmp / 'known_hosts'}\n  StrictHostKeyChecking no\n"
            "  LogLevel ERROR\n  ConnectTimeout 5\n")
        python = tmp / "python"
        python.write_text(f'#!/bin/sh\nPYTHONPATH="{CHECKOUT}${{PYTHONPATH:+:$PYTHONPATH}}" '
                          f'exec "{sys.executable}" "$@"\n')
        python.chmod(0o755)
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
        with open(tmp / "sshd.log", "wb") as log:  # the child keeps its own descriptor
            sshd = subprocess.Popen(["ip", "netns", "exec", netns, SSHD, "-D", "-e", "-f",
                                     str(tmp / "sshd_config")], stderr=log)
        _wait_listening(remote_addr, 22)
    except BaseException:
        subprocess.run(["ip", "netns", "del", netns], check=False)
        subprocess.run(["ip", "link", "del", here], check=False, capture_output=True)
        raise
    return SshHost(netns, local_addr, remote_addr, tmp / "ssh_config", sshd.pid, python)


def stop(host: SshHost) -> None:
    """Stop sshd and anything the tests left in the namespace, then remove it."""
    for pid in [host.sshd_pid, *host.processes()]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        os.waitpid(host.sshd_pid, 0)
    except ChildProcessError:
        pass
    subprocess.run(["ip", "netns", "del", host.netns], check=False)
