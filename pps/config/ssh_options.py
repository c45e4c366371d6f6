"""Which `ssh_options` would make ssh run code on this host, found by reading them as ssh does.

A config that names hosts is run as the user who runs pps, often root. Most ssh options only
shape the connection, but some make the ssh client itself run a local program or load a
library: those turn a shared config file into code. They are refused unless the host's table
says `allow_local_commands = true`. A user's own ~/.ssh/config is not affected: it is theirs.

Refused (ssh_config(5) keywords, case-insensitive, in any `-o` spelling; and the flags):

    ProxyCommand, LocalCommand, PermitLocalCommand, KnownHostsCommand   run a shell command
    Match (its `exec` runs a command); Include and -F FILE   read config that may run commands
    ProxyJump and -J                 ssh starts a second ssh through the shell, the jump
                                     host spliced into the command line
    PKCS11Provider (SmartcardDevice), -I, SecurityKeyProvider         load a shared library
    XAuthLocation                    the program ssh runs for X11 forwarding

`-F none` (read no config file at all) is fine. Words that are not options are refused too:
ssh takes the first one as the destination, which belongs in `ssh`, not here.
"""

from __future__ import annotations

from collections.abc import Sequence

from pps.errors import ConfigError

# ssh's getopt string (ssh.c, OpenSSH 9.x): letters followed by ':' take an argument.
SSH_GETOPT = "1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy"
TAKES_ARGUMENT = frozenset(c for c, nxt in zip(SSH_GETOPT, SSH_GETOPT[1:] + " ") if nxt == ":")

RUNS_COMMAND = "run a local command"
READS_CONFIG = "read more configuration, which may run local commands"
JUMPS = "start another ssh through the local shell, the jump host in its command line"
LOADS_LIBRARY = "load a shared library"

REFUSED_KEYWORDS = {
    "proxycommand": RUNS_COMMAND,
    "localcommand": RUNS_COMMAND,
    "permitlocalcommand": RUNS_COMMAND,
    "knownhostscommand": RUNS_COMMAND,
    "xauthlocation": RUNS_COMMAND,
    "match": "run a local command (Match exec)",
    "include": READS_CONFIG,
    "proxyjump": JUMPS,
    "pkcs11provider": LOADS_LIBRARY,
    "smartcarddevice": LOADS_LIBRARY,
    "securitykeyprovider": LOADS_LIBRARY,
}
REFUSED_FLAGS = {"F": READS_CONFIG, "J": JUMPS, "I": LOADS_LIBRARY}


def config_keyword(line: str) -> str:
    """The keyword of an ssh config line as `-o` passes it, lowercased.

    ssh strips leading blanks, allows a quoted keyword, and ends it at a blank or '='
    ("ProxyCommand=x", "ProxyCommand x", ' "ProxyCommand" = x'). Single quotes mean nothing
    to ssh, but are stripped too, so a keyword hidden in them is still seen.
    """
    text = line.strip()
    if text.startswith('"'):
        keyword = text[1:].split('"', 1)[0]
    else:
        end = next((i for i, c in enumerate(text) if c.isspace() or c == "="), len(text))
        keyword = text[:end]
    return keyword.strip("'\"").lower()


def parse_flags(options: Sequence[str]) -> list[tuple[str, str | None]]:
    """ssh_options -> [(flag letter, its argument or None)], read as ssh's getopt reads them:
    bundled flags ("-vT"), an argument attached ("-oKey=v", "-p2222") or in the next item.
    A word that is not an option is returned as ("", word)."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(options):
        item = options[i]
        i += 1
        if not item.startswith("-") or item in ("-", "--"):
            out.append(("", item))
            continue
        for pos in range(1, len(item)):
            flag = item[pos]
            if flag not in TAKES_ARGUMENT:
                out.append((flag, None))
                continue
            attached = item[pos + 1:]
            if attached:
                out.append((flag, attached))
            elif i < len(options):
                out.append((flag, options[i]))
                i += 1
            else:
                out.append((flag, None))  # ssh will say the argument is missing
            break
    return out


def local_command_risk(flag: str, argument: str | None) -> str | None:
    """Why one parsed option makes ssh run code here, or None when it does not."""
    if flag == "o" and argument is not None:
        return REFUSED_KEYWORDS.get(config_keyword(argument))
    if flag == "F" and argument is not None and argument.strip().lower() == "none":
        return None
    return REFUSED_FLAGS.get(flag)


def check_ssh_options(where: str, host: str, options: Sequence[str],
                      allow_local_commands: bool) -> None:
    """Raise ConfigError (one line: the option, why, the fix) for an option that runs code here,
    unless allowed, and for a word that is not an option at all."""
    for flag, argument in parse_flags(options):
        if not flag:
            raise ConfigError(f"{where}: {argument!r} is not an ssh option (ssh would take it as "
                              f"the destination); the destination goes in hosts.{host}.ssh")
        why = local_command_risk(flag, argument)
        if why and not allow_local_commands:
            shown = f"-{flag}" if argument is None else f"-{flag} {argument}"
            raise ConfigError(
                f"{where}: {shown!r} makes ssh {why}, as the user running pps: a config holding "
                f"it is code; put it in your own ~/.ssh/config, or set "
                f"hosts.{host}.allow_local_commands = true if you trust this config")
