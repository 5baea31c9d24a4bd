"""Runs a schedule with every fault on against a cluster until SIGINT, then heals like the runner.

Used by the SIGINT test as a separate process, so the interrupt hits a real asyncio program in
the middle of its schedule. Prints ``{"heal_errors": [...]}`` last and exits 130 when interrupted.

Usage: python3 nemesis_sigint_harness.py INVENTORY RECORDS_JSONL
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from pathlib import Path
from typing import Any

from bench.cluster import load_inventory, open_cluster
from nemesis.schedule import NemesisRunner
from tests.nemesis.nemesis_probe_backend import ProbeBackend

LONG = {"at": [[0.1, 600]]}
SPECS: list[dict[str, Any]] = [
    {"fault": "partition", "shape": "grudge", "grudge": {"n3": ["n4"]}, "schedule": LONG},
    {"fault": "kill", "target": ["n1"], "schedule": LONG},
    {"fault": "pause", "target": ["n2"], "schedule": LONG},
    {"fault": "clock", "mode": "strobe", "offset_ms": 400, "target": ["n4"], "schedule": LONG},
    {"fault": "clock", "mode": "drift", "rate": 1.5, "target": ["n5"], "schedule": LONG},
    {"fault": "netem", "delay_ms": 40, "jitter_ms": 5, "target": ["n5"], "schedule": LONG},
]


def main(inventory: Path, records: Path) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    lock = threading.Lock()
    with records.open("a", encoding="utf-8") as out, open_cluster(load_inventory(inventory)) as c:

        def record(type_: str, f: str, value: Any) -> None:
            with lock:
                out.write(json.dumps({"type": type_, "f": f, "value": value}) + "\n")
                out.flush()

        runner = NemesisRunner(SPECS, c, ProbeBackend(), seed=3, record=record)
        runner.validate()
        code = 0
        try:
            asyncio.run(runner.run(asyncio.Event()))
        except KeyboardInterrupt:
            code = 130
        finally:
            errors = runner.heal_all()
            print(json.dumps({"heal_errors": errors}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
