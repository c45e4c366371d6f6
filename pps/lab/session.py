"""The lab for the length of one run.

The run holds the lab (pps.lab.owner) from before it looks at it until after it has removed
what it made, so no second run measures alongside and `pps lab down` refuses to pull it away.
A lab someone brought up with `pps lab up` is used as it is when its settings are this
config's, and refused (exit 3) when they are not: a run never measures on settings it did
not ask for. A lab a run made for itself is removed, and its host sysctls restored, when the
run ends on any path Python sees (return, exception, Ctrl-C, SIGTERM, SIGHUP); what a
SIGKILLed run left is found by the next run, which removes it before making its own.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from typing import Any

from pps.config.model import Config
from pps.errors import EnvironmentNotAble


class LabSession:
    """Context manager yielding a RunLab (or None when the config runs without a lab)."""

    def __init__(self, config: Config) -> None:
        self.options = config.lab
        self.lab: Any | None = None
        self.created = False
        self._hold = contextlib.ExitStack()

    def __enter__(self) -> RunLab | None:
        if not self.options.enabled:
            return None
        from pps.lab import bed as lab
        from pps.lab import owner as lab_owner

        o = self.options
        wanted = lab.LabSpec(id=o.id, queues=o.queues, rps_cpus=o.rps_cpus, gro=o.gro,
                             backlog=o.backlog, rmem_max=o.rmem_max, qdisc=o.qdisc)
        lab.require_net_admin()
        self._hold.enter_context(lab_owner.held(o.id))  # exit 3 if another run has it
        try:
            warnings = self._clear_leftovers(lab, o.id)
            existing = lab.find_lab(o.id)
            if existing is not None:
                _refuse_unlike(existing.spec, wanted)
                self.lab = existing
            else:
                self.lab, self.created = lab.lab_up(wanted, made_by_run=True)
        except BaseException:
            self._hold.close()
            raise
        return RunLab(self.lab, self.created, warnings)

    @staticmethod
    def _clear_leftovers(lab: Any, lab_id: str) -> list[str]:
        """A lab made by a run that is gone (we hold the lab, so its maker does not) is
        leftovers: remove it and put back the host sysctls it changed."""
        dead_run = lab.left_by_run(lab_id)
        if dead_run is None:
            return []
        undone = lab.lab_down(lab_id, force=True)  # we hold the lab ourselves
        return [f"lab {lab_id!r} was left behind by run pid {dead_run}, which did not finish: "
                f"removed it first ({'; '.join(undone) or 'nothing was left'})"]

    def __exit__(self, *exc: object) -> None:
        try:
            if self.lab is not None and self.created:
                from pps.lab import bed as lab
                from pps.lab import owner as lab_owner

                lab.lab_down(self.lab.id, force=True)  # ours: we hold it
                lab_owner.forget(self.lab.id)
        finally:
            self._hold.close()


# Settings whose difference changes what a run measures; rmem_default is derived.
COMPARED = ("queues", "rps_cpus", "xps", "gro", "backlog", "rmem_max", "qdisc")


def _refuse_unlike(have: Any, want: Any) -> None:
    """A lab that is up with settings unlike the config's is not measured on (exit 3). A
    setting the config leaves unset (None) asks for nothing, so any value passes."""
    a, b = asdict(have), asdict(want)
    differs = [f"{k} {a.get(k)!r} (config: {b[k]!r})" for k in COMPARED
               if b[k] is not None and a.get(k) != b[k]]
    if differs:
        raise EnvironmentNotAble(
            f"lab {have.id!r} is already up with settings unlike this config's: "
            f"{', '.join(differs)}; remove it with `pps lab down --id {have.id}` (the run "
            f"then makes its own), or run with the lab's settings")


class RunLab:
    """The Lab, whether this run made it, and what the run should warn about."""

    def __init__(self, lab: Any, created: bool, warnings: list[str]) -> None:
        self._lab = lab
        self.created = created
        self.warnings = warnings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lab, name)

    def describe(self) -> dict[str, Any]:
        lab = self._lab
        spec = asdict(lab.spec)
        return {"id": lab.id, "sender_ns": lab.sender_ns, "receiver_ns": lab.receiver_ns,
                "sender_dev": lab.sender_dev, "receiver_dev": lab.receiver_dev,
                "sender_addr": lab.sender_addr, "receiver_addr": lab.receiver_addr,
                "queues": lab.queues, "spec": spec, "created_by_run": self.created}
