"""Kill -9 torture: a writer process appends to a RaftStorage and is SIGKILLed at a random
moment, again and again on the same directory. After each kill, recovery must keep every entry
the writer saw acknowledged (or that a later acknowledged write replaced), and never return a
corrupt entry. 30 trials by default, 200 with LOCKBENCH_LONG=1 (LOCKBENCH_TORTURE_TRIALS=n)."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from reference_impl.raft.types import RestoredState
from reference_impl.storage.raft_storage import RaftStorage
from tests.reference_impl.storage.storage_torture_writer import entry_data, snapshot_data

pytestmark = pytest.mark.process  # starts processes (docs/development.md)

WRITER = Path(__file__).with_name("storage_torture_writer.py")


def _trials() -> int:
    if "LOCKBENCH_TORTURE_TRIALS" in os.environ:
        return int(os.environ["LOCKBENCH_TORTURE_TRIALS"])
    return 200 if os.environ.get("LOCKBENCH_LONG") == "1" else 30


@dataclass
class Expectation:
    """The log as the writer's acknowledgements describe it: index -> term."""

    terms: dict[int, int] = field(default_factory=dict)
    snapshot_index: int = 0
    hard_state_term: int = 0
    pending: tuple[int, int, int] | None = None  # (first, term, count) not acknowledged

    def acknowledge(self, first: int, term: int, count: int) -> None:
        for index in [i for i in self.terms if i >= first]:
            del self.terms[index]
        for index in range(first, first + count):
            self.terms[index] = term
        self.pending = None

    def feed(self, lines: list[str]) -> None:
        for line in lines:
            words = line.split()
            if words[0] == "begin":
                self.pending = (int(words[1]), int(words[2]), int(words[3]))
            elif words[0] == "ack":
                self.acknowledge(int(words[1]), int(words[2]), int(words[3]))
            elif words[0] == "snap":
                self.snapshot_index = int(words[1])
                for index in [i for i in self.terms if i <= self.snapshot_index]:
                    del self.terms[index]
            elif words[0] == "hs":
                self.hard_state_term = int(words[1])


def _check(restored: RestoredState, expected: Expectation, trial: int) -> None:
    where = f"trial {trial}"
    snapshot = restored.snapshot
    base = snapshot.meta.index if snapshot else 0
    assert base >= expected.snapshot_index, f"{where}: acknowledged snapshot lost"
    if snapshot is not None:
        assert snapshot.data == snapshot_data(base, snapshot.meta.term), f"{where}: bad snapshot"
    assert restored.hard_state.term >= expected.hard_state_term, f"{where}: hard state lost"
    for offset, entry in enumerate(restored.entries):
        assert entry.index == base + offset + 1, f"{where}: log not contiguous at {entry.index}"
        assert entry.data == entry_data(entry.index, entry.term), (
            f"{where}: corrupt entry {entry.index} was returned"
        )
    recovered = {e.index: e.term for e in restored.entries}
    replaced_from = None
    if expected.pending is not None:
        first, term, _ = expected.pending
        if recovered.get(first) == term:
            replaced_from = first  # the unacknowledged batch reached the disk, at least in part
            assert all(t == term for i, t in recovered.items() if i >= first), (
                f"{where}: entries after a partly written batch are not from that batch"
            )
    for index, term in expected.terms.items():
        if index <= base or (replaced_from is not None and index >= replaced_from):
            continue
        assert recovered.get(index) == term, (
            f"{where}: acknowledged entry {index} (term {term}) lost; got {recovered.get(index)}"
        )


def test_a_writer_killed_at_random_points_never_loses_acknowledged_entries(
    tmp_path: Path,
) -> None:
    logging.disable(logging.WARNING)
    rng = random.Random(2026)
    trials = _trials()
    directories = [tmp_path / f"d{i}" for i in range(4)]
    expectations = {d: Expectation() for d in directories}
    acknowledged = 0
    try:
        for trial in range(trials):
            directory = directories[trial % len(directories)]
            expected = expectations[directory]
            writer = subprocess.Popen(
                [sys.executable, str(WRITER), str(directory), str(rng.getrandbits(32))],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert writer.stdout is not None
                assert writer.stdout.readline().strip() == "ready"
                time.sleep(rng.uniform(0.0, 0.12))
            finally:
                writer.send_signal(signal.SIGKILL)
                output, _ = writer.communicate(timeout=30)
            complete = output.split("\n")[:-1]  # a line cut by the kill is not an ack
            expected.feed(complete)
            acknowledged += sum(line.startswith("ack") for line in complete)
            restored = RaftStorage(directory).load()
            _check(restored, expected, trial)
            # The next writer continues from what recovery returned (a partly written batch
            # included), so that becomes the baseline for the next trial.
            expected.terms = {e.index: e.term for e in restored.entries}
            expected.pending = None
    finally:
        logging.disable(logging.NOTSET)
    assert acknowledged > trials, "the writer hardly wrote: the trials proved nothing"


@pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL semantics checked on Linux only")
def test_the_writer_really_writes_through_fsync(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), str(tmp_path), "1"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        line = writer.stdout.readline()
        while not line.startswith("ack"):
            line = writer.stdout.readline()
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
    restored = RaftStorage(tmp_path).load()
    assert restored.entries, "an acknowledged batch is on disk after kill -9"
