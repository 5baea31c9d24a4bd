"""Process faults through the backend: kill -9 and restart, SIGSTOP and SIGCONT.

The backend knows how its service runs (pidfile, command line), so kills and pauses go through
``Backend.kill/start/pause/resume``; this module only remembers whom it hit, so a stop (or a heal
after Ctrl-C) restarts or resumes exactly those nodes.
"""

from __future__ import annotations

from typing import Any, Literal

from lockbench.protocols import Backend, Cluster, FaultAction
from nemesis.fault import FaultTarget, HealError
from nemesis.remote import NemesisActionError, NodeLocks, error_messages, on_nodes, raise_first

ProcessFault = Literal["kill", "pause", "power-loss"]

SIGNALS: dict[str, tuple[str, str]] = {
    "kill": ("KILL", "restart"),
    "pause": ("STOP", "CONT"),
    "power-loss": ("KILL", "restart"),  # nemesis.power: a kill that also drops un-fsynced data
}


class ProcessNemesis:
    """lockbench.protocols.Nemesis for ``start-kill``/``stop-kill``, and pause likewise."""

    def __init__(
        self, fault: ProcessFault, cluster: Cluster, backend: Backend, locks: NodeLocks
    ) -> None:
        self.name: str = fault
        self.cluster = cluster
        self.backend = backend
        self.locks = locks
        self.affected: set[str] = set()

    def setup(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def invoke(self, f: str, target: object) -> FaultAction:
        if f == f"start-{self.name}":
            if not isinstance(target, FaultTarget):
                raise TypeError(f"{f} needs a FaultTarget")
            return self._start(target.nodes)
        if f == f"stop-{self.name}":
            return self._stop()
        raise ValueError(f"{self.name} nemesis cannot {f!r}")

    def _hit(self, name: str) -> Any:
        """Hit one node; what it returns goes into the start's record (``_details``)."""
        node = self.cluster.node(name)
        with self.locks.lock(name):
            if self.name == "kill":
                self.backend.kill(node)
            else:
                self.backend.pause(node)

    def _undo(self, name: str) -> None:
        node = self.cluster.node(name)
        with self.locks.lock(name):
            if self.name == "kill":
                self.backend.start(node)
            else:
                self.backend.resume(node)

    def _start(self, nodes: tuple[str, ...]) -> FaultAction:
        # Whatever happens, these nodes may be down or paused now: remember them first.
        self.affected.update(nodes)
        hits = raise_first(
            on_nodes([self.cluster.node(n) for n in nodes], lambda n: self._hit(n.name))
        )
        return FaultAction(
            f"start-{self.name}",
            {"nodes": list(nodes), "signal": SIGNALS[self.name][0], **self._details(hits)},
        )

    def _details(self, hits: dict[str, Any]) -> dict[str, Any]:
        """More to record about a start, from what ``_hit`` returned per node."""
        return {}

    def _undo_all(self) -> tuple[FaultAction, list[str]]:
        nodes = sorted(self.affected)
        results = on_nodes([self.cluster.node(n) for n in nodes], lambda n: self._undo(n.name))
        self.affected = {name for name, r in results.items() if isinstance(r, Exception)}
        key = "signal" if self.name == "pause" else "action"
        action = FaultAction(f"stop-{self.name}", {"nodes": nodes, key: SIGNALS[self.name][1]})
        return action, error_messages(results)

    def _stop(self) -> FaultAction:
        action, errors = self._undo_all()
        if errors:
            raise NemesisActionError("; ".join(errors))
        return action

    def heal(self) -> FaultAction | None:
        if not self.affected:
            return None
        action, errors = self._undo_all()
        if errors:
            raise HealError(errors)
        return action

    def teardown(self) -> None:
        self.heal()
