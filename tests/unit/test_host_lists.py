"""`senders.host` and `receivers.host` take a host name or a list of them."""

from __future__ import annotations

import pytest

from pps.config.hosts import roles_by_host
from pps.config.model import load_config
from pps.errors import ConfigError
from pps.run.pipeline import seats_for

HOSTS = ["hosts.a.ssh=root@198.18.0.1", "hosts.b.ssh=root@198.18.0.2",
         "target.address=198.18.0.9"]


def test_a_list_of_sender_hosts_runs_count_senders_on_each_with_unique_indices():
    config = load_config(None, [*HOSTS, 'senders.host=["a", "b"]', "senders.count=3"])
    assert config.senders.hosts == ("a", "b") and config.receivers.hosts == ("local",)
    roles = roles_by_host(config)
    assert roles == {"local": ("receiver",), "a": ("sender",), "b": ("sender",)}
    seats = seats_for(config, roles)
    assert (seats["a"].sender_base, seats["b"].sender_base) == (0, 3)
    assert {s.n_senders for s in seats.values()} == {6}
    assert not config.one_clock


def test_a_list_of_one_is_one_host_and_to_dict_keeps_the_plain_form():
    config = load_config(None, [*HOSTS, 'senders.host=["a"]'])
    assert config.senders.host == "a" and config.to_dict()["senders"]["host"] == "a"
    listed = load_config(None, [*HOSTS, 'receivers.host=["a", "b"]'])
    assert listed.to_dict()["receivers"]["host"] == ["a", "b"]


@pytest.mark.parametrize("value, message", [
    ('["a", "a"]', "names a host twice"),
    ('["a", "c"]', "no host 'c'"),
    ("[]", "expected a host name or a list"),
    ("[1]", "expected a host name or a list"),
])
def test_bad_host_lists_are_config_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*HOSTS, f"senders.host={value}"])


def test_the_same_host_in_both_roles_runs_both_there():
    config = load_config(None, [*HOSTS, 'senders.host=["a", "b"]', 'receivers.host="a"'])
    assert roles_by_host(config) == {"a": ("receiver", "sender"), "b": ("sender",)}
