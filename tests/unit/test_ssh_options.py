"""ssh_options that make the ssh client run local code are refused unless the host table says
allow_local_commands = true: through the ssh option reader, the config loader and the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from support import pps_main

from pps.config.model import load_config
from pps.config.ssh_options import config_keyword, parse_flags
from pps.errors import ConfigError
from pps.run.remote import ssh_argv

BASE = ["hosts.b.ssh=root@198.18.7.2", "receivers.host=b", "target.address=198.18.7.2"]


def load(*options: str, allow: bool | None = None):
    # JSON strings are TOML basic strings: the list reaches the loader item for item.
    items = [f"hosts.b.ssh_options={json.dumps(list(options))}"] if options else []
    if allow is not None:
        items.append(f"hosts.b.allow_local_commands={str(allow).lower()}")
    return load_config(None, [*BASE, *items])


REFUSED = [
    ["-oProxyCommand=nc %h %p"],
    ["-o", "ProxyCommand=nc %h %p"],
    ["-o", "ProxyCommand nc %h %p"],
    ["-oProxyCommand", "nc"],  # '-oProxyCommand' then a word ssh would take as the destination
    ["-o ProxyCommand=nc %h %p"],
    ["-o", "  proxycommand = nc"],
    ["-o", '"ProxyCommand" nc'],
    ["-o", "'ProxyCommand' nc"],
    ["-o", "PROXYCOMMAND\tnc"],
    ["-To", "ProxyCommand=nc"],  # bundled flags, the argument in the next item
    ["-vvoProxyCommand=nc"],
    ["-o", "LocalCommand=touch /tmp/x"],
    ["-o", "PermitLocalCommand=yes"],
    ["-o", "KnownHostsCommand=/bin/true"],
    ["-o", "Match exec true"],
    ["-o", "Include /tmp/other"],
    ["-o", "ProxyJump=jump.example"],
    ["-J", "jump.example"],
    ["-Jjump.example"],
    ["-F", "/tmp/other_config"],
    ["-F/tmp/other_config"],
    ["-p", "22", "-F", "/tmp/other_config"],
    ["-I", "/usr/lib/opensc-pkcs11.so"],
    ["-o", "PKCS11Provider=/tmp/x.so"],
    ["-o", "SmartcardDevice=/tmp/x.so"],
    ["-o", "SecurityKeyProvider=/tmp/x.so"],
    ["-o", "XAuthLocation=/tmp/xauth"],
]


@pytest.mark.parametrize("options", REFUSED, ids=lambda o: " ".join(o))
def test_options_that_run_local_code_are_refused(options):
    with pytest.raises(ConfigError) as info:
        load(*options)
    message = str(info.value)
    assert "\n" not in message
    assert "hosts.b.ssh_options" in message and "allow_local_commands" in message
    assert "~/.ssh/config" in message


@pytest.mark.parametrize("options", [o for o in REFUSED if o != ["-oProxyCommand", "nc"]],
                         ids=lambda o: " ".join(o))
def test_allow_local_commands_lets_them_through(options):
    config = load(*options, allow=True)
    host = config.host("b")
    assert host.ssh_options == tuple(options) and host.allow_local_commands is True
    assert ssh_argv(host)[-3] == "--"  # still before the destination


@pytest.mark.parametrize("options", [
    [], ["-p", "2222"], ["-p2222"], ["-4", "-C"], ["-o", "ConnectTimeout=5"],
    ["-oStrictHostKeyChecking=accept-new"], ["-i", "/root/.ssh/id_bench"],
    ["-o", "UserKnownHostsFile /tmp/kh"], ["-F", "none"], ["-Fnone"], ["-l", "bench"],
    ["-o", "ProxyUseFdpass=no"],  # only means something with a ProxyCommand, refused itself
    ["-o", "IdentityFile=/tmp/-oProxyCommand=x"],  # a keyword's value, not a keyword
])
def test_options_that_only_shape_the_connection_are_fine(options):
    assert load(*options).host("b").ssh_options == tuple(options)


@pytest.mark.parametrize("options", [["evil.example"], ["--", "evil.example"], ["-p", "22", "x"],
                                     ["-"]])
def test_words_that_are_not_options_are_refused(options):
    with pytest.raises(ConfigError, match="is not an ssh option.*hosts.b.ssh"):
        load(*options, allow=True)


def test_allow_local_commands_must_be_a_boolean():
    with pytest.raises(ConfigError, match="allow_local_commands: expected true or false"):
        load_config(None, [*BASE, 'hosts.b.allow_local_commands="yes"'])


@pytest.mark.parametrize("destination", ["root@x;id", "a$(id)", "x`id`", "x|y", "x'y", 'x"y'])
def test_destination_with_shell_characters_is_refused(destination):
    # A user's own ProxyCommand would splice the destination into a shell command (%h).
    with pytest.raises(ConfigError, match="hosts.b.ssh: .* holds"):
        load_config(None, [f"hosts.b.ssh={destination}", "receivers.host=b",
                           "target.address=198.18.7.2"])


@pytest.mark.parametrize("destination", ["root@198.18.7.2", "bench-b", "ssh://root@b.example:2222",
                                         "root@[fe80::1%eth0]", "u_1@host.example"])
def test_ordinary_destinations_pass(destination):
    config = load_config(None, [f"hosts.b.ssh={destination}", "receivers.host=b",
                                "target.address=198.18.7.2"])
    assert config.host("b").ssh == destination


def test_the_reader_follows_ssh_getopt():
    assert parse_flags(["-vTp", "22", "-oA=b", "-o", "C d", "-Fnone", "-i"]) == [
        ("v", None), ("T", None), ("p", "22"), ("o", "A=b"), ("o", "C d"), ("F", "none"),
        ("i", None)]
    assert config_keyword(' "ProxyCommand"=x') == "proxycommand"
    assert config_keyword("ProxyJump\tj") == "proxyjump"


@pytest.mark.parametrize("options, keyword", [
    (["-oProxyCommand=nc %h %p"], "proxycommand"),
    (["-o", "ProxyCommand nc %h %p"], "proxycommand"),
    (["-o ProxyCommand=nc %h %p"], "proxycommand"),
    (["-o", "  proxycommand = nc"], "proxycommand"),
    (["-o", '"ProxyCommand" nc'], "proxycommand"),
    (["-o", "PROXYCOMMAND\tnc"], "proxycommand"),
    (["-To", "ProxyCommand=nc"], "proxycommand"),
    (["-vvoProxyCommand=nc"], "proxycommand"),
    (["-o", "LocalCommand=touch /tmp/x"], "localcommand"),
    (["-o", "KnownHostsCommand=/bin/true"], "knownhostscommand"),
    (["-o", "ProxyJump=jump.example"], "proxyjump"),
    (["-Jjump.example"], "proxyjump"),
    (["-o", "SecurityKeyProvider=/tmp/x.so"], "securitykeyprovider"),
    (["-o", "XAuthLocation=/tmp/xauth"], "xauthlocation"),
])
def test_ssh_itself_reads_the_refused_forms_as_the_keyword(options, keyword):
    # `ssh -G` prints the configuration it would use: each refused spelling really sets the
    # keyword there, so the refusal guards what ssh would do, not a spelling it rejects.
    assert shutil.which("ssh"), "these tests need openssh-client (.ci/run installs it)"
    out = subprocess.run(["ssh", "-G", "-F", "none", *options, "h.example"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert any(line.split(" ", 1)[0] == keyword and not line.endswith(" none")
               for line in out.stdout.splitlines()), out.stdout
    with pytest.raises(ConfigError):
        load(*options)


def write(tmp_path, body: str):
    path = tmp_path / "hosts.toml"
    path.write_text(body)
    return str(path)


CONFIG = """
[hosts.b]
ssh = "root@198.18.7.2"
ssh_options = {options}
{extra}
[target]
address = "198.18.7.2"
[receivers]
host = "b"
"""


def test_cli_refuses_in_one_line_with_exit_2(tmp_path, capsys):
    path = write(tmp_path, CONFIG.format(options='["-o", "ProxyCommand=sh -c \\"id > /tmp/x\\""]',
                                         extra=""))
    code, out, err = pps_main(capsys, "run", path, "--dry-run")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "ProxyCommand" in lines[0] and "hosts.b.allow_local_commands = true" in lines[0]
    assert out == ""


def test_cli_refuses_a_config_file_option_case_insensitively(tmp_path, capsys):
    path = write(tmp_path, CONFIG.format(options='["-oPrOxYjUmP=jump"]', extra=""))
    code, _, err = pps_main(capsys, "run", path, "--dry-run")
    assert code == 2
    assert err.count("\n") == 1 and "PrOxYjUmP" in err


def test_config_with_allow_local_commands_loads_and_records_it(tmp_path):
    path = write(tmp_path, CONFIG.format(options='["-o", "ProxyCommand=nc %h %p"]',
                                         extra="allow_local_commands = true"))
    config = load_config(path)
    assert config.to_dict()["hosts"]["b"]["allow_local_commands"] is True
    # The recorded config loads again (results keep it; a sweep resumes from it).
    from pps.config.model import build_config

    assert build_config(config.to_dict()).host("b").allow_local_commands is True
