"""Randomised whole-cluster simulation: thousands of seeds, each a different mix of loss,
duplication, reordering, partitions, crashes (losing un-fsynced writes) and leadership transfers.

A failure prints its seed and the command that replays it:
    LOCKBENCH_SEED=<seed> pytest tests/reference_impl/raft/test_raft_simulation.py -k replay
More seeds: LOCKBENCH_LONG=1 (20,000) or LOCKBENCH_SIM_SEEDS=<n>; LOCKBENCH_SIM_FIRST_SEED=<s>.
"""

from __future__ import annotations

import logging
import os

import pytest

from tests.reference_impl.raft.raft_sim import SimOptions, Simulation

DEFAULT_SEEDS = 2_000
LONG_SEEDS = 20_000
CHUNKS = 20


def _seed_count() -> int:
    if "LOCKBENCH_SIM_SEEDS" in os.environ:
        return int(os.environ["LOCKBENCH_SIM_SEEDS"])
    return LONG_SEEDS if os.environ.get("LOCKBENCH_LONG") == "1" else DEFAULT_SEEDS


@pytest.fixture(autouse=True)
def _quiet_raft_logs() -> object:
    """Dropped invalid/duplicate messages are logged by design; thousands of lines help nobody."""
    logging.disable(logging.WARNING)
    yield None
    logging.disable(logging.NOTSET)


@pytest.mark.slow  # 2,000 seeds: about a minute of CPU, so the process lane runs it
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_random_faults_never_break_raft_safety_and_the_cluster_converges(chunk: int) -> None:
    first = int(os.environ.get("LOCKBENCH_SIM_FIRST_SEED", "0"))
    total = _seed_count()
    per_chunk = -(-total // CHUNKS)
    acknowledged = 0
    for seed in range(first + chunk * per_chunk, first + min(total, (chunk + 1) * per_chunk)):
        simulation = Simulation(seed).run()
        acknowledged += len(simulation.acked)
    assert per_chunk == 0 or acknowledged > 0, "no proposal was ever acknowledged: no progress"


def test_replay() -> None:
    """Replays one seed verbosely: LOCKBENCH_SEED=<seed> pytest ... -k replay."""
    seed_text = os.environ.get("LOCKBENCH_SEED")
    if seed_text is None:
        pytest.skip("set LOCKBENCH_SEED=<seed> to replay one simulation seed")
    seed = int(seed_text)
    logging.disable(logging.NOTSET)
    print(f"seed {seed}: {SimOptions.from_seed(seed)}")
    simulation = Simulation(seed).run()
    print(
        f"acknowledged {len(simulation.acked)} writes, answered {simulation.reads_answered} "
        f"reads, {len(simulation.leaders)} terms with a leader"
    )


def test_a_simulation_makes_progress_under_a_fault_free_network() -> None:
    simulation = Simulation(
        7, SimOptions(nodes=5, partitions=False, crashes=False, transfers=False)
    ).run()
    assert len(simulation.acked) > 30
    assert simulation.reads_answered > 5
    assert len(simulation.leaders) == 1


def test_the_same_seed_gives_an_identical_run() -> None:
    first = Simulation(1234).run()
    second = Simulation(1234).run()
    assert first.acked == second.acked
    assert first.leaders == second.leaders
    assert list(first.trace) == list(second.trace)
