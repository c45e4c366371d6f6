"""The lab's ids and specs, checked before anything is made: no privileges needed. The lab
on the real kernel is in tests/system/test_lab.py."""

from __future__ import annotations

import pytest

from pps.errors import ConfigError
from pps.lab import kernel as kern
from pps.lab.bed import LabSpec, check_id, parse_qdisc


@pytest.mark.parametrize("bad", ["", "UPPER", "a_b", "-ab", "ab-", "abcdefghij", "a b", "a/b"])
def test_bad_ids_are_config_errors(bad):
    with pytest.raises(ConfigError):
        check_id(bad)
    with pytest.raises(ConfigError):
        LabSpec(id=bad)


def test_spec_validation():
    assert LabSpec(id="a-1", rps_cpus=[0, 1]).rps_cpus == (0, 1)
    for kwargs in ({"queues": 0}, {"queues": 10_000}, {"rps_cpus": (-1,)}, {"backlog": 0},
                   {"rmem_max": -5}, {"qdisc": "pfifo limit x"}, {"qdisc": "PFIFO"}):
        with pytest.raises(ConfigError):
            LabSpec(**kwargs)


def test_parse_qdisc_and_cpumask():
    assert parse_qdisc("pfifo limit 500") == ("pfifo", {"limit": 500})
    assert parse_qdisc("pfifo_fast") == ("pfifo_fast", {})
    assert kern.cpumask([0, 1]) == "3"
    assert kern.cpumask([]) == "0"
    assert kern.cpumask([33]) == "2,00000000"
    assert kern.parse_cpumask("2,00000001\n") == (0, 33)
