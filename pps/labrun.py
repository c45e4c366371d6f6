"""The lab for the length of one run: use a lab that is up, or make one and remove it after."""

from __future__ import annotations

from typing import Any

from .config import Config


class LabSession:
    """Context manager yielding the Lab (or None when the config runs without a lab)."""

    def __init__(self, config: Config) -> None:
        self.options = config.lab
        self.lab: Any | None = None
        self.created = False

    def __enter__(self):
        if not self.options.enabled:
            return None
        from . import lab

        spec = lab.LabSpec(
            id=self.options.id, queues=self.options.queues, rps_cpus=self.options.rps_cpus,
            gro=self.options.gro, backlog=self.options.backlog, rmem_max=self.options.rmem_max,
            qdisc=self.options.qdisc)
        self.lab, self.created = lab.lab_up(spec)
        return _Described(self.lab, self.created)

    def __exit__(self, *exc: object) -> None:
        if self.lab is not None and self.created:
            from . import lab

            lab.lab_down(self.lab.id)


class _Described:
    """The Lab plus whether this run made it, for run.json."""

    def __init__(self, lab: Any, created: bool) -> None:
        self._lab = lab
        self.created = created

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lab, name)

    def describe(self) -> dict[str, Any]:
        lab = self._lab
        return {"id": lab.id, "sender_ns": lab.sender_ns, "receiver_ns": lab.receiver_ns,
                "sender_dev": lab.sender_dev, "receiver_dev": lab.receiver_dev,
                "sender_addr": lab.sender_addr, "receiver_addr": lab.receiver_addr,
                "queues": lab.queues, "created_by_run": self.created}
