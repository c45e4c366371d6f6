"""Fixtures shared by the test modules in tests/unit (no privileges needed) and tests/system
(root, network namespaces, a lab or sshd).

The helper modules beside this file (support, loops, sshhost) are imported by plain name
from either directory: this directory goes on sys.path here, before any test module loads.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def private_netns():
    """A fresh, uniquely named network namespace with lo up, always deleted afterwards.
    Its counters are moved by nothing but the test."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 to make a namespace")
    name = f"pps-t-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def veth_netns(private_netns):
    """A private namespace with a veth pair va/vb up in it."""
    for cmd in (["link", "add", "va", "type", "veth", "peer", "name", "vb"],
                ["link", "set", "va", "up"], ["link", "set", "vb", "up"]):
        subprocess.run(["ip", "-n", private_netns, *cmd], check=True)
    return private_netns
