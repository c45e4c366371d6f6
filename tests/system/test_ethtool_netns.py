"""pps.host.ethtool's live ioctls on a 4-queue veth pair in a namespace of its own: driver,
channels and settings read there, and the device not seen from here. Needs root for the
namespace; the decoders and lo are in tests/unit/test_ethtool.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from pps.errors import EnvironmentNotAble
from pps.host import ethtool


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def veth_ns():
    """A namespace with a 4-queue veth pair inside it; always deleted afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")
    ns = f"pps-t-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "add", "va", "numtxqueues", "4", "numrxqueues", "4", "type", "veth",
            "peer", "name", "vb", "numtxqueues", "4", "numrxqueues", "4")
        _ip("-n", ns, "link", "set", "va", "up")
        _ip("-n", ns, "link", "set", "vb", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_veth_in_a_namespace(veth_ns):
    info = ethtool.driver_info("va", veth_ns)
    assert info is not None and info["driver"] == "veth"
    ch = ethtool.channels("va", veth_ns)
    assert ch is not None and ch["rx"] == 4 and ch["tx"] == 4
    out = ethtool.device_settings("vb", veth_ns)
    assert out["driver_info"]["driver"] == "veth"
    assert out["rss_udp4"] is None  # veth has no RSS
    # The device is only in the namespace, not here.
    with pytest.raises(EnvironmentNotAble, match="no device 'va'"):
        ethtool.driver_info("va")
