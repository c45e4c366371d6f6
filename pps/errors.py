"""One error base for the package.

Library code raises these; only the CLI prints them and turns them into exit codes.
Each subclass is also the matching built-in error, so callers that catch ValueError or
OSError keep working.
"""


class PpsError(Exception):
    """Base of every error pps raises on purpose."""

    exit_code = 1


class ConfigError(PpsError, ValueError):
    """Bad usage or configuration: a key, a value, a flag. Exit 2."""

    exit_code = 2


class EnvironmentNotAble(PpsError, OSError):
    """The host cannot do what was asked: privileges, a device, a kernel feature. Exit 3."""

    exit_code = 3


class PlacementError(EnvironmentNotAble):
    """A placement policy cannot be met on this machine's topology."""


class RunFailed(PpsError, RuntimeError):
    """A run started but could not finish: a worker died or never became ready. Exit 4."""

    exit_code = 4


class CheckFailed(PpsError):
    """The run worked but a check failed (regression, loss over the bound). Exit 1."""

    exit_code = 1


class Interrupted(PpsError):
    """The user interrupted the run; what was measured has been saved. Exit 130."""

    exit_code = 130
