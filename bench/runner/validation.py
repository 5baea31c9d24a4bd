"""``lockbench validate``: the bench checks itself against lockd's known bugs.

For each ``--unsafe-*`` switch of the reference server (reference_impl/server/config.py) a case
names the workload and the faults that should expose it. Each case runs with the switch (it must
be ``invalid`` on every seed) and without it (the control: ``valid`` on every seed, so the bench
has no false positive there). A switch that no shipped fault can expose is listed as pending
with the reason, never as passing; a switch with no case at all is a configuration error, so a
new bug switch cannot be forgotten here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.runner.config import load_test_config
from bench.runner.run_series import Cell, RunRecord
from lockbench.errors import ConfigError
from reference_impl.server.config import UNSAFE_SWITCHES

# Long enough for three or four fault windows, short enough for 30 runs in about 25 minutes.
DEFAULT_TIME_LIMIT_S = 24.0
DEFAULT_SEEDS: tuple[int, ...] = (1, 2, 3)
# What every case shares: the README test's tuned lockd (100 ms tick on a busy 2-core machine).
BASE: Mapping[str, Any] = {
    "backend": "reference",
    "backend_options": {"tick_ms": 100},
    "concurrency": 8,
    "op_timeout": 5,
    "ttl": 3,
    "quiet_period": 2,
    "recovery_bound": 15,
}
# When every node goes down at once, how long the service is away is the time five servers take
# to be killed, restarted from their logs and elect, which on a loaded machine was 11 s for a 3 s
# kill window: liveness (a lock passes on within ttl + failover + margin) is not what these cases
# test, and it flagged "lock not granted" in control runs. They check safety and availability.
WHOLE_CLUSTER_CHECKERS = ("linearizable", "mutual-exclusion", "fencing", "availability")
MUTEX = {"workload": "mutex", "workload_options": {"locks": 3, "hold": 0.05, "think": 0.05}}
FOLLOWER_READ = {"workload": "follower-read", "workload_options": {"locks": 2}}


@dataclass(frozen=True, slots=True)
class Case:
    """A bug switch, the test that should expose it, and what the table says about it."""

    switch: str
    fault: str  # the table's words for the faults
    test: Mapping[str, Any]  # test-file keys on top of BASE (workload, nemesis, ...)
    pending: str | None = None  # why this case cannot run yet
    expected_checkers: tuple[str, ...] = field(default_factory=tuple)

    @property
    def workload(self) -> str:
        return str(self.test.get("workload", "mutex"))

    @property
    def control_key(self) -> tuple[str, str]:
        """Cases with the same workload and faults share their control runs."""
        return (self.workload, self.fault)


def _every(fault: Mapping[str, Any], interval: float, duration: float) -> dict[str, Any]:
    return {**fault, "schedule": {"interval": interval, "duration": duration}}


ISOLATE_LEADER = [_every({"fault": "partition", "shape": "isolate-leader"}, 8, 5)]
# Three bugs share one test (and so one control): follower reads from every node while half the
# processes lock and unlock, and the leader is cut off from the others now and then.
CASES: tuple[Case, ...] = (
    Case(
        "grant-before-commit",
        "partition: leader isolated",
        {**FOLLOWER_READ, "nemesis": ISOLATE_LEADER},
        expected_checkers=("linearizable", "mutual-exclusion"),
    ),
    Case(
        "stale-follower-reads",
        "partition: leader isolated",
        {**FOLLOWER_READ, "nemesis": ISOLATE_LEADER},
        expected_checkers=("linearizable",),
    ),
    Case(
        "no-check-quorum",
        "partition: leader isolated",
        {**FOLLOWER_READ, "nemesis": ISOLATE_LEADER},
        expected_checkers=("linearizable",),
    ),
    # A restarted node must lead for the in-memory token counter to show: kill -9 every node
    # and restart them all (whoever wins the next election has restarted).
    Case(
        "reuse-tokens",
        "kill -9 and restart of every node",
        {
            **MUTEX,
            "nemesis": [_every({"fault": "kill", "target": "all"}, 10, 3)],
            "checkers": list(WHOLE_CLUSTER_CHECKERS),
        },
        expected_checkers=("fencing",),
    ),
    # The leader's wall clock jumps 20 s ahead (libfaketime): with the switch it expires healthy
    # sessions on that clock. A leader kill alone did not expose it in 24 s runs (0 of 2 seeds):
    # holders whose keepalives went unanswered through the failover record lease-lost
    # themselves, so the expiries it causes are ones the checkers must allow.
    Case(
        "wallclock-expiry",
        "clock jump +20 s on the leader",
        {
            **MUTEX,
            "nemesis": [
                _every(
                    {"fault": "clock", "mode": "bump", "offset_ms": 20000, "target": "leader"}, 8, 4
                )
            ],
        },
        expected_checkers=("linearizable", "mutual-exclusion"),
    ),
    # A kill -9 keeps the page cache; losing power drops what was never fsynced (h17b's
    # power-loss fault): every node at once, early, and the rest of the run acquires again.
    Case(
        "no-fsync",
        "power loss of every node",
        {
            **MUTEX,
            "nemesis": [{"fault": "power-loss", "target": "all", "schedule": {"at": [[6, 7]]}}],
            "checkers": list(WHOLE_CLUSTER_CHECKERS),
        },
        expected_checkers=("fencing",),
    ),
)


def check_cases(cases: Sequence[Case] = CASES) -> None:
    """Every lockd switch has a case and every case names a real switch (no silent gap)."""
    named = {case.switch for case in cases}
    missing = sorted(set(UNSAFE_SWITCHES) - named)
    unknown = sorted(named - set(UNSAFE_SWITCHES))
    if missing or unknown:
        raise ConfigError(
            f"validation cases out of step with lockd: no case for {missing or 'none'}, "
            f"cases for unknown switches {unknown or 'none'}"
        )


def select_cases(only: Sequence[str] | None) -> list[Case]:
    check_cases()
    if not only:
        return list(CASES)
    unknown = sorted(set(only) - {case.switch for case in CASES})
    if unknown:
        raise ConfigError(
            f"--only: unknown switch(es) {', '.join(unknown)}; known: "
            f"{', '.join(case.switch for case in CASES)}"
        )
    return [case for case in CASES if case.switch in only]


def build_cells(
    cases: Sequence[Case],
    seeds: Sequence[int],
    *,
    time_limit: float,
    settings: Mapping[str, Any],
) -> list[Cell]:
    """The runs: each case with its switch, and each distinct control once, per seed.

    ``settings`` are test-file keys for where to run (runtime, inventory, netns prefix, ...).
    """
    cells: list[Cell] = []
    controls_done: set[tuple[str, str]] = set()
    for case in cases:
        if case.pending is not None:
            continue
        runs: list[tuple[list[str], str]] = [([case.switch], "invalid")]
        if case.control_key not in controls_done:
            controls_done.add(case.control_key)
            runs.append(([], "valid"))
        for unsafe, expected in runs:
            for seed in seeds:
                name = f"validate-{case.switch if unsafe else 'control'}-{case.workload}"
                if not unsafe:
                    name += "-" + _slug(case.fault)
                data = {
                    **BASE,
                    **case.test,
                    **settings,
                    "name": name,
                    "seed": seed,
                    "time_limit": time_limit,
                    "backend_options": {**BASE["backend_options"], "unsafe": unsafe},
                }
                config = load_test_config(None, _top_level(data))
                cells.append(
                    Cell(
                        config,
                        backend="reference" + (f" --unsafe-{case.switch}" if unsafe else ""),
                        workload=case.workload,
                        fault=case.fault,
                        seed=seed,
                        expected=expected,  # type: ignore[arg-type]
                        labels={"bug": case.switch if unsafe else "none (control)"},
                    )
                )
    return cells


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def _top_level(data: Mapping[str, Any]) -> dict[str, Any]:
    """Test-file keys as overrides of the default test (whole values, never merged)."""
    return {key: value for key, value in data.items()}


@dataclass(frozen=True, slots=True)
class TableRow:
    bug: str
    workload: str
    fault: str
    expected: str
    verdicts: tuple[str, ...]
    caught_by: str
    first_anomaly: str
    ok: bool | None  # None: pending


def table_rows(cases: Sequence[Case], records: Sequence[RunRecord]) -> list[TableRow]:
    """One row per bug case and per control, in case order; pending cases say why."""
    rows: list[TableRow] = []
    by_bug: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in records:
        key = (record.cell.labels.get("bug", ""), record.cell.workload, record.cell.fault)
        by_bug.setdefault(key, []).append(record)
    for case in cases:
        if case.pending is not None:
            rows.append(
                TableRow(case.switch, case.workload, case.fault, "invalid", (), "", "", None)
            )
            continue
        for bug in (case.switch, "none (control)"):
            found = by_bug.pop((bug, case.workload, case.fault), None)
            if found is None:
                continue
            expected = "invalid" if bug == case.switch else "valid"
            verdicts = tuple(_verdict_text(r) for r in found)
            caught = sorted({name for r in found for name in r.caught_by})
            firsts = [r.first_anomaly_s for r in found if r.first_anomaly_s is not None]
            first = ", ".join(f"{t:.1f} s" for t in firsts) if firsts else ""
            ok = all(r.verdict == expected for r in found)
            rows.append(
                TableRow(
                    bug, case.workload, case.fault, expected, verdicts, ", ".join(caught), first, ok
                )
            )
    return rows


def _verdict_text(record: RunRecord) -> str:
    if record.skipped:
        return "skipped"
    if record.verdict is None:
        return "error"
    return record.verdict


def format_table(rows: Sequence[TableRow], cases: Sequence[Case]) -> str:
    """The table as Markdown (what the docs quote), pending rows with their reason below."""
    header = (
        "| bug | workload | fault | expected | verdict per seed | caught by | first anomaly | |\n"
        "|-----|----------|-------|----------|------------------|-----------|---------------|--|"
    )
    lines = [header]
    for row in rows:
        mark = "pending" if row.ok is None else ("ok" if row.ok else "**NOT AS EXPECTED**")
        verdicts = " / ".join(row.verdicts) if row.verdicts else "not run"
        lines.append(
            f"| `{row.bug}` | {row.workload} | {row.fault} | {row.expected} | {verdicts} | "
            f"{row.caught_by or '-'} | {row.first_anomaly or '-'} | {mark} |"
        )
    for case in cases:
        if case.pending is not None:
            lines.append(f"\n`{case.switch}` is pending: {case.pending}.")
    return "\n".join(lines)


def all_as_expected(rows: Sequence[TableRow]) -> bool:
    """True when every row that ran is as expected (pending rows are reported, not passed)."""
    return all(row.ok is not False for row in rows) and any(row.ok for row in rows)
