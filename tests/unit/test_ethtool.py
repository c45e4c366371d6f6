"""pps.host.ethtool: pure decoders on packed buffers, then live ioctls on lo. The ioctls on a
veth in a namespace are in tests/system/test_ethtool_netns.py."""

from __future__ import annotations

import pytest

from pps.errors import EnvironmentNotAble
from pps.host import ethtool


def _pad(buf: bytes, size: int) -> bytes:
    return buf.ljust(size, b"\0")


def test_decode_drvinfo():
    buf = ethtool.DRVINFO.pack(ethtool.ETHTOOL_GDRVINFO, b"mlx5_core", b"24.10-1.1.4",
                               b"28.39.1002 (MT_0000000013)", b"0000:81:00.0", b"", b"",
                               0, 421, 0, 0, 0)
    assert ethtool.DRVINFO.size == 196  # sizeof(struct ethtool_drvinfo)
    assert ethtool.decode_drvinfo(buf) == {"driver": "mlx5_core", "version": "24.10-1.1.4",
                                           "firmware": "28.39.1002 (MT_0000000013)",
                                           "bus": "0000:81:00.0", "n_stats": 421}


def test_decode_rings_and_channels():
    rings = ethtool.RINGPARAM.pack(ethtool.ETHTOOL_GRINGPARAM, 8192, 0, 0, 8192, 1024, 0, 0, 1024)
    assert ethtool.decode_rings(rings) == {"rx": 1024, "rx_mini": 0, "rx_jumbo": 0, "tx": 1024,
                                           "rx_max": 8192, "rx_mini_max": 0, "rx_jumbo_max": 0,
                                           "tx_max": 8192}
    ch = ethtool.CHANNELS.pack(ethtool.ETHTOOL_GCHANNELS, 0, 0, 0, 63, 0, 0, 0, 8)
    assert ethtool.decode_channels(ch) == {"rx": 0, "tx": 0, "other": 0, "combined": 8, "max_rx": 0,
                                           "max_tx": 0, "max_other": 0, "max_combined": 63}


@pytest.mark.parametrize("bits,letters,fields", [
    (0x30, "sd", ["IP SA", "IP DA"]),  # i40e/mlx5 default for udp4: addresses only
    (0xF0, "sdfn", ["IP SA", "IP DA", "L4 bytes 0 & 1 [TCP/UDP src port]",
                    "L4 bytes 2 & 3 [TCP/UDP dst port]"]),
    (0, "", []),
])
def test_decode_rss_hash_fields(bits, letters, fields):
    head = ethtool.RXNFC_HEAD.pack(ethtool.ETHTOOL_GRXFH, ethtool.UDP_V4_FLOW, bits)
    buf = _pad(head, ethtool.RXNFC_SIZE)
    out = ethtool.decode_rxfh(buf)
    got = (out["letters"], out["fields"], out["bits"], out["discard"])
    assert got == (letters, fields, bits, False)


def test_decode_rss_discard():
    assert ethtool.decode_hash_fields(1 << 31)["discard"] is True


def test_lo_is_a_clean_none_or_dict():
    out = ethtool.device_settings("lo")
    assert set(out) == {"driver_info", "channels", "rings", "rss_udp4"}
    for value in out.values():
        assert value is None or isinstance(value, dict)


def test_missing_device_raises_environment_error():
    with pytest.raises(EnvironmentNotAble, match="no device 'pps-nope0'"):
        ethtool.driver_info("pps-nope0")
    with pytest.raises(EnvironmentNotAble, match="bad interface name"):
        ethtool.channels("x" * 20)
