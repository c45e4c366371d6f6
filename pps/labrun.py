"""The lab for the length of one run: use a lab that is up as it is, or make one from the
config and remove it afterwards."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .config import Config
from .errors import ConfigError


class LabSession:
    """Context manager yielding a RunLab (or None when the config runs without a lab)."""

    def __init__(self, config: Config) -> None:
        self.options = config.lab
        self.lab: Any | None = None
        self.created = False

    def __enter__(self) -> RunLab | None:
        if not self.options.enabled:
            return None
        from . import lab

        o = self.options
        wanted = lab.LabSpec(id=o.id, queues=o.queues, rps_cpus=o.rps_cpus, gro=o.gro,
                             backlog=o.backlog, rmem_max=o.rmem_max, qdisc=o.qdisc)
        existing = lab.find_lab(o.id)
        warnings: list[str] = []
        if existing is not None:
            # A lab someone brought up by hand is theirs: use it as it is, never reshape it.
            # Its queue count is what a queue experiment measures, so a mismatch is an error.
            if existing.queues != o.queues:
                raise ConfigError(
                    f"lab.queues: lab {o.id!r} is up with {existing.queues} queues but this run asks "
                    f"for {o.queues}; run `pps lab down --id {o.id}` or --set lab.queues={existing.queues}")
            self.lab = existing
            differs = _differences(existing.spec, wanted)
            if differs:
                warnings.append(f"lab {o.id!r} was already up and is used as it is; its "
                                f"{', '.join(differs)} differ from this config's")
        else:
            self.lab, self.created = lab.lab_up(wanted)
        return RunLab(self.lab, self.created, warnings)

    def __exit__(self, *exc: object) -> None:
        if self.lab is not None and self.created:
            from . import lab

            lab.lab_down(self.lab.id)


def _differences(have: Any, want: Any) -> list[str]:
    a, b = asdict(have), asdict(want)
    return [k for k in b if k != "rmem_default" and a.get(k) != b[k]]


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
