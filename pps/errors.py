"""One error base for the package.

Library code raises these; only the CLI prints them and turns them into exit codes, each
class's from the one table in pps.exits. Each subclass is also the matching built-in
error, so callers that catch ValueError or OSError keep working.
"""

from pps.exits import EXIT_CHECK, EXIT_FAILED, EXIT_HOST, EXIT_USAGE


class PpsError(Exception):
    """Base of every error pps raises on purpose."""

    exit_code = EXIT_CHECK


class ConfigError(PpsError, ValueError):
    """Bad usage or configuration: a key, a value, a flag. Exit 2."""

    exit_code = EXIT_USAGE


class EnvironmentNotAble(PpsError, OSError):
    """The host cannot do what was asked: privileges, a device, a kernel feature. Exit 3."""

    exit_code = EXIT_HOST


class PlacementError(EnvironmentNotAble):
    """A placement policy cannot be met on this machine's topology."""


class RunFailed(PpsError, RuntimeError):
    """A run started but could not finish: a worker died or never became ready. Exit 4."""

    exit_code = EXIT_FAILED
