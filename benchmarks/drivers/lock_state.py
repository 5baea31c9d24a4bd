"""A lock service state of a chosen size, built by applying real commands (no shortcuts)."""

from __future__ import annotations

from reference_impl.service.commands import Acquire, OpenSession, encode_command
from reference_impl.service.state_machine import LockStateMachine

LOCKS_PER_SESSION = 10


def loaded_machine(sessions: int, locks_per_session: int = LOCKS_PER_SESSION) -> LockStateMachine:
    """The scale run's state: ``sessions`` sessions holding ``locks_per_session`` locks each."""
    machine = LockStateMachine()
    index = 0
    for i in range(sessions):
        index += 1
        machine.apply(index, encode_command(OpenSession(f"c{i}", 1, 3600.0, 0.0)))
        session = f"s{index}"
        for j in range(locks_per_session):
            index += 1
            machine.apply(
                index,
                encode_command(Acquire(f"c{i}", 2 + j, session, f"scale/{i}/{j}", False, False)),
            )
    return machine
