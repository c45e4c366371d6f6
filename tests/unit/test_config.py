"""Each kind of config mistake: one line naming the file (or --set) and the key, saying what
is allowed; from the CLI, exit 2 and no traceback."""

from __future__ import annotations

import os

import pytest
from support import pps

from pps.config.model import build_config, load_config, parse_set
from pps.errors import ConfigError

# (TOML text, words the one-line message must hold besides the file name)
CASES = {
    "unknown key": ('[senders]\nbach = 32\n', ["senders.bach", "did you mean 'senders.batch'"]),
    "unknown table": ('[sendrs]\nbatch = 32\n', ["[sendrs]", "did you mean 'senders'"]),
    "wrong type": ('[senders]\nbatch = "lots"\n', ["senders.batch", "expected a number"]),
    "not whole": ('[senders]\nbatch = 2.5\n', ["senders.batch", "whole number"]),
    "bool expected": ('[receivers]\ngro = 1\n', ["receivers.gro", "true or false"]),
    "out of range": ('[senders]\nbatch = 2000\n', ["senders.batch", "out of range 1..1024"]),
    "payload over UDP": ('[senders]\npayload = 70000\n', ["senders.payload", "out of range 0..65507"]),
    "duration too short": ('[run]\nduration = 0.001\n', ["run.duration", "out of range"]),
    "bad choice": ('[receivers]\nplacement = "locl"\n', ["receivers.placement", "did you mean 'local'"]),
    "bad CPU list": ('[senders]\ncpus = "3-1"\n', ["senders.cpus", "3-1"]),
    "CPU list garbage": ('[receivers]\ncpus = "zero"\n', ["receivers.cpus", "zero"]),
    "bad address": ('[target]\naddress = "1.2.3"\n', ["target.address", "not an IPv4 or IPv6"]),
    "payload below header": ('[senders]\npayload = 8\n', ["senders.payload", "24", "senders.raw"]),
    "cpus with remote placement": ('[receivers]\ncpus = "1"\nplacement = "remote"\n',
                                   ["receivers.cpus", "contradict"]),
    "explicit without cpus": ('[receivers]\nplacement = "explicit"\n',
                              ["receivers.placement", "needs receivers.cpus"]),
    "gso too big": ('[senders]\npayload = 1400\ngso_segments = 64\n', ["senders.gso_segments", "64 KB"]),
    "spin with busy-poll": ('[receivers]\nmode = "busy-poll"\nspin_us = 50\n',
                            ["receivers.spin_us", "block mode"]),
    "burst below batch": ('[senders]\nrate = 1000.0\nburst = 8\nbatch = 64\n', ["senders.burst"]),
    "lab with an address": ('[lab]\nenabled = true\n[target]\naddress = "10.0.0.1"\n',
                            ["target.address", "lab"]),
    "table not a table": ('senders = 3\n', ["[senders] must be a table"]),
    "sweep unknown key": ('[sweep]\n"senders.bach" = [1, 2]\n', ["[sweep]", "did you mean 'senders.batch'"]),
    "sweep not a list": ('[sweep]\n"senders.batch" = 8\n', ["[sweep]", "senders.batch", "non-empty list"]),
    "sweep empty list": ('[sweep]\n"senders.batch" = []\n', ["[sweep]", "non-empty list"]),
    "sweep bad value": ('[sweep]\n"senders.batch" = [8, 0]\n', ["[sweep]", "senders.batch", "out of range"]),
    "sweep point contradicts": ('[sweep]\n"senders.payload" = [64, 8]\n', ["senders.payload", "24"]),
    "not TOML": ('[senders\nbatch = 1\n', ["not valid TOML"]),
    "bad timestamps": ('[run]\ntimestamps = "kernal"\n', ["run.timestamps", "did you mean 'kernel'"]),
    "kernel stamps without latency": ('[run]\nlatency = false\ntimestamps = "kernel"\n',
                                      ["run.timestamps", "run.latency = false"]),
    "kernel stamps of raw packets": ('[senders]\nraw = true\npayload = 8\n[run]\ntimestamps = "kernel"\n',
                                     ["run.timestamps", "senders.raw"]),
    "CPU past the machine": ('[senders]\ncpus = "0-4294967295"\n',
                             ["senders.cpus", "4294967295", "highest CPU number"]),
    "CPU numbers in a list": ('[senders]\ncpus = [1, 99999]\n', ["senders.cpus", "99999"]),
    "CPU digits not ASCII": ('[senders]\ncpus = "\u00b2"\n', ["senders.cpus", "bad CPU list item"]),
    "sweep too many points": ('[sweep]\n' + "".join(
        f'"{k}" = [{", ".join(map(str, range(1, 101)))}]\n'
        for k in ("senders.batch", "receivers.batch", "senders.flows", "senders.count")),
        ["[sweep]", "100 x 100 x 100 x 100 = 100,000,000 points", "10,000"]),
    "sweep too many trials": ('[run]\nrepetitions = 1000\n[sweep]\n"senders.batch" = ['
                              + ", ".join(map(str, range(1, 201))) + "]\n",
                              ["[sweep]", "200,000 trials", "100,000"]),
    "integer too long": ("[senders]\nbatch = " + "7" * 5000 + "\n", ["not valid TOML", "4300"]),
    "nested too deep": ("a = " + "[" * 5000 + "]" * 5000 + "\n", ["not valid TOML", "nested too deep"]),
    "not UTF-8": ("", ["not UTF-8"]),  # the bytes are written by the test
}


RAW_BYTES = {"not UTF-8": b'[run]\nlabel = "\xe9t\xe9"\n'}


@pytest.mark.parametrize("name", CASES)
def test_each_config_error_names_file_and_key(name, tmp_path):
    text, words = CASES[name]
    path = tmp_path / "exp.toml"
    path.write_bytes(RAW_BYTES.get(name) or text.encode())
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("item, words", [
    ("senders.bach=3", ["--set", "senders.bach", "did you mean"]),
    ("senders.batch=0", ["--set", "senders.batch", "out of range"]),
    ("receivers.placement=nowhere", ["--set", "receivers.placement", "not one of"]),
    ("nokey", ["--set", "KEY=VALUE"]),
    ("=3", ["--set", "KEY=VALUE"]),
    ("senders.batch=32\nsenders.count=4", ["--set", "control character", "'\\n'"]),
    ("run.label=a\rb", ["--set", "control character"]),
    ("target.device=eth\x000", ["--set", "control character"]),
    ("senders.batch=" + "1" * 5000, ["--set senders.batch", "4300"]),
    ("senders.batch=" + "[" * 3000, ["--set senders.batch", "nested too deep"]),
    ("run.require_checks=" + "x" * 70000, ["--set", "65,536 characters"]),
    ("senders.cpus=0-4294967295", ["--set", "senders.cpus", "highest CPU number"]),
])
def test_set_errors(item, words):
    with pytest.raises(ConfigError) as info:
        load_config(None, [item])
    for word in words:
        assert word in str(info.value)


def test_set_values_are_read_as_toml():
    assert parse_set("senders.batch=32") == ("senders.batch", 32)
    assert parse_set("receivers.placement=local") == ("receivers.placement", "local")
    assert load_config(None, ["senders.cpus=0", "run.duration=0.5"]).senders.cpus == (0,)


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/exp.toml")


def test_special_files_are_refused_without_reading_them(tmp_path):
    """A FIFO with no writer would block an open; /dev/zero would fill memory."""
    fifo = tmp_path / "exp.fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate(2 * 1024 * 1024)
    for path, words in ((fifo, "a FIFO, not a regular file"),
                        ("/dev/zero", "a character device, not a regular file"),
                        (tmp_path, "a directory, not a regular file"),
                        (big, "2,097,152 bytes, more than the 1,048,576")):
        with pytest.raises(ConfigError, match=words):
            load_config(path)


def test_good_sweep_expands():
    config = build_config({"sweep": {"senders.batch": [8, 64], "receivers.mode": ["block", "busy-poll"]}})
    assert len(config.sweep) == 2


@pytest.mark.parametrize("name", ["unknown key", "sweep bad value", "not TOML", "cpus with remote placement",
                                  "bad timestamps"])
def test_cli_exit_2_one_line(name, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(CASES[name][0])
    for command in (["run", str(path)], ["sweep", str(path), "--out", str(tmp_path / "o")]):
        done = pps(*command)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert str(path) in done.stderr
        assert not (tmp_path / "o").exists()  # nothing started
