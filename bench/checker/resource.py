"""The protected resource as the history shows it: accepted accesses and critical sections.

Shared by the mutual-exclusion, fencing and lost-updates checkers (docs/history.md, "The protected
resource"). Times here are the resource's own clock (``resource_time``), not the bench's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lockbench.history import Call, Process

RESOURCE_OPS = frozenset({"res-enter", "res-read", "res-write", "res-exit"})


@dataclass(frozen=True, slots=True)
class Access:
    """One access the resource accepted (or refused, ``accepted`` False)."""

    call: Call
    key: str | None
    process: Process
    token: int | None
    resource_time: int
    accepted: bool

    @property
    def index(self) -> int:
        assert self.call.completion is not None
        return self.call.completion.index


@dataclass(slots=True)
class Section:
    """A critical section: the accepted accesses of one process between res-enter and res-exit."""

    key: str | None
    process: Process
    accesses: list[Access] = field(default_factory=list)

    @property
    def start(self) -> int:
        return self.accesses[0].resource_time

    @property
    def end(self) -> int:
        return self.accesses[-1].resource_time


def _token(value: object) -> int | None:
    if isinstance(value, dict):
        token = value.get("token")
        if isinstance(token, int) and not isinstance(token, bool):
            return token
    return None


def accesses(calls: Sequence[Call]) -> list[Access]:
    """Every completed resource access (ok = accepted, fail = refused), in history order."""
    out: list[Access] = []
    for call in calls:
        if call.invoke.f not in RESOURCE_OPS or call.completion is None:
            continue
        result = call.completion.value
        if call.outcome not in ("ok", "fail") or not isinstance(result, dict):
            continue
        rtime = result.get("resource_time")
        if not isinstance(rtime, int):
            continue
        accepted = call.outcome == "ok" and result.get("accepted", True) is not False
        out.append(
            Access(call, call.invoke.key, call.process, _token(call.invoke.value), rtime, accepted)
        )
    return out


def sections(all_accesses: Sequence[Access]) -> list[Section]:
    """Group accepted accesses into critical sections per (process, key), in history order.

    An accepted access with no open section (its res-enter was info or refused) opens one, so a
    crashed holder's accesses still count; res-exit closes the section.
    """
    open_sections: dict[tuple[Process, str | None], Section] = {}
    done: list[Section] = []
    for access in all_accesses:
        if not access.accepted:
            continue
        slot = (access.process, access.key)
        f = access.call.invoke.f
        if f == "res-enter" and slot in open_sections:
            done.append(open_sections.pop(slot))
        section = open_sections.setdefault(slot, Section(access.key, access.process))
        section.accesses.append(access)
        if f == "res-exit":
            done.append(open_sections.pop(slot))
    done.extend(open_sections.values())
    return done
